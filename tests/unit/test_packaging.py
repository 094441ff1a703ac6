"""The Dockerfile, compose.yaml and pyproject.toml, checked by reading them
(there is no Docker engine here)."""

from __future__ import annotations

import json
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    return document


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def exec_form(args: str) -> list[str]:
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def test_compose_shows_migrate_api_projector_postgres_and_redis_with_health_checks(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert set(services) == {"migrate", "api", "projector", "postgres", "redis"}
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    for name in ("postgres", "redis", "api", "projector"):
        assert services[name]["healthcheck"]["test"], name
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "ping" in services["redis"]["healthcheck"]["test"]
    assert "/healthz" in " ".join(services["api"]["healthcheck"]["test"])


def test_migrate_runs_once_before_the_api_replicas_and_the_projector(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == ["ledger", "migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "projector"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name
    assert services["api"]["deploy"]["replicas"] == 2
    assert services["api"]["command"][:2] == ["ledger", "serve"]
    assert services["api"]["environment"]["LEDGER_RUN_PROJECTION"] == "false"
    assert services["projector"]["command"] == ["ledger", "project"]


def test_every_ledger_service_points_at_the_compose_stores_without_a_default_secret(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    pg = services["postgres"]["environment"]
    for name in ("migrate", "api", "projector"):
        env = services[name]["environment"]
        assert services[name]["build"] == "."
        assert env["LEDGER_DATABASE_URL"] == (
            f"postgresql://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}"
            f"@postgres:5432/{pg['POSTGRES_DB']}"
        )
        assert env["LEDGER_REDIS_URL"].startswith("redis://redis:6379/")
        for secret in ("LEDGER_ADMIN_API_KEY", "LEDGER_SECRET_KEY", "LEDGER_WEBHOOK_SECRETS_KEY"):
            assert env[secret].startswith("${" + secret + ":?"), (name, secret)


def test_dockerfile_runs_ledger_serve_as_a_non_root_user_on_slim(
    dockerfile: list[tuple[str, str]],
) -> None:
    instructions = [i for i, _ in dockerfile]
    froms = [a for i, a in dockerfile if i == "FROM"]
    assert froms and all(a.split()[0] == "python:3.11-slim" for a in froms)
    last_from = max(n for n, i in enumerate(instructions) if i == "FROM")
    final_stage = dockerfile[last_from:]
    users = [a for i, a in final_stage if i == "USER"]
    assert users and users[-1] not in ("root", "0")
    cmd_index = max(n for n, (i, _) in enumerate(dockerfile) if i == "CMD")
    user_index = max(n for n, (i, _) in enumerate(dockerfile) if i == "USER")
    assert user_index < cmd_index
    cmd = exec_form(dockerfile[cmd_index][1])
    assert cmd[:2] == ["ledger", "serve"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    healthcheck = " ".join(a for i, a in dockerfile if i == "HEALTHCHECK")
    assert "urllib" in healthcheck and "/healthz" in healthcheck
    installs = " ".join(a for i, a in dockerfile if i == "RUN")
    assert "pip install ." in installs and "[test]" not in installs


def test_exposed_port_is_the_published_and_served_port(
    dockerfile: list[tuple[str, str]], compose: dict[str, Any]
) -> None:
    exposed = {a.split("/")[0] for i, a in dockerfile if i == "EXPOSE"}
    cmd = exec_form([a for i, a in dockerfile if i == "CMD"][-1])
    served = cmd[cmd.index("--port") + 1]
    api = compose["services"]["api"]
    published = {str(p).split(":")[-1] for p in api["ports"]}
    api_port = api["command"][api["command"].index("--port") + 1]
    assert exposed == {served} == published == {api_port} == {"8000"}


def test_pyproject_declares_the_ledger_script_and_pins_eventsourcing() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["scripts"]["ledger"] == "service.cli:app"
    pins = [d for d in project["dependencies"] if d.replace(" ", "").startswith("eventsourcing")]
    assert pins and all("==9.5.*" in d.replace(" ", "") for d in pins)
    assert any(d.startswith("PyYAML") for d in project["optional-dependencies"]["test"])


def test_ci_script_is_the_one_strict_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert script.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in script
    assert "pytest" in script and "pg_isready" in script and "redis-cli" in script


def test_readme_starts_with_the_two_fresh_machine_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    install = readme.find(".venv/bin/pip install . && .venv/bin/ledger serve")
    tests = readme.find("bash .ci/run")
    assert 0 <= install < tests
