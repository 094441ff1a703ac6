"""The ``ledger`` command: ``serve``, ``project``, ``deliver``, ``migrate``, ``replay``.

Configuration comes from the environment (``LEDGER_*``, see
:class:`service.config.Settings`); the options here are only what differs per run.
"""

from __future__ import annotations

import contextlib
import enum
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.console import Console

from service.cli_audit import audit, export
from service.config import Settings

app = typer.Typer(
    name="ledger",
    help="Event-sourced token ledger: HTTP API, balance projection and trace replay.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(soft_wrap=True)


class Column(enum.StrEnum):
    """Which token count of a trace row is the consumption amount."""

    total_tokens = "total_tokens"
    input_tokens = "input_tokens"
    output_tokens = "output_tokens"


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for printing)."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def parse_funding(value: str) -> int | None:
    """``"auto"`` → ``None``; a positive integer string → that many tokens per account.

    Raises:
        typer.BadParameter: anything else.
    """
    if value.strip().lower() == "auto":
        return None
    try:
        tokens = int(value)
    except ValueError:
        tokens = 0
    if tokens < 1:
        msg = f"expected 'auto' or a positive integer, got {value!r}"
        raise typer.BadParameter(msg)
    return tokens


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="HTTP worker processes (PostgreSQL; default: the number of CPUs "
            "minus the one the projection process takes, at least 1). SQLite: 1.",
        ),
    ] = None,
) -> None:
    """Run the HTTP API with the projection, Redis bridge and expiry sweeper.

    On PostgreSQL the projection and the sweeper run in a process of their own
    beside the HTTP workers; exactly one process of the deployment runs them
    (a PostgreSQL advisory lock), and a worker takes over within seconds when
    that process dies. One process per CPU in all. Set
    LEDGER_RUN_PROJECTION=false to run the projection elsewhere (``ledger project``).
    """
    import uvicorn

    from service.startup import prepare_deployment

    settings = Settings()
    count = workers or max((os.cpu_count() or 1) - 1, 1)
    if settings.backend == "sqlite":
        if workers is not None and workers > 1:
            console.print("[yellow]SQLite serves from one process: --workers ignored[/]")
        count = 1
    admin_key = prepare_deployment(settings)
    if admin_key is not None:
        print(f"Created the first admin API key (shown once, store it now): {admin_key}")
    console.print(
        f"ledger serving on http://{host}:{port} ({settings.backend}: "
        f"{redact(settings.database_url)}, {count} worker{'s' if count > 1 else ''})"
    )
    level = settings.log_level.lower()
    with projection_process(settings):
        uvicorn.run(
            "service.api.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=count if count > 1 else None,
            log_level=level,
            access_log=level in ("debug", "trace"),
            proxy_headers=False,
        )


Parent = Annotated[
    int | None, typer.Option(help="Stop when this process (the one that started it) is gone.")
]
"""``--parent PID`` of the background commands (``service.lifecycle.child_command``)."""

STANDBY_SECONDS = 5.0
"""Head start of ``ledger serve``'s projection process over its HTTP workers."""


@contextlib.contextmanager
def projection_process(settings: Settings) -> Iterator[None]:
    """On PostgreSQL, runs ``ledger project`` beside the HTTP workers: the
    projection and the sweeper get a process (and a GIL) of their own, and the
    workers stand by, taking over within seconds should it die. On SQLite the
    one process does everything."""
    if settings.backend != "postgres" or not settings.run_projection:
        yield
        return
    from service.lifecycle import child_command

    with child_command("project"):
        os.environ["LEDGER_PROJECTION_STANDBY_SECONDS"] = str(STANDBY_SECONDS)
        yield


@app.command()
def project(
    parent: Parent = None,
) -> None:
    """Run the projection, bridge and expiry sweeper without HTTP, until Ctrl-C/SIGTERM.

    On PostgreSQL it starts ``ledger deliver`` beside it (LEDGER_RUN_DELIVERY).
    """
    from service.background import run_projection_forever

    settings = Settings()
    console.print(f"ledger projection on {settings.backend}: {redact(settings.database_url)}")
    run_projection_forever(settings, parent)
    # Library pools may keep non-daemon threads: the work is stopped, so leave.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@app.command()
def deliver(
    parent: Parent = None,
) -> None:
    """Deliver the webhook outbox (one process leads per deployment), until Ctrl-C/SIGTERM."""
    from service.background import run_delivery_forever

    settings = Settings()
    if settings.backend != "postgres":
        # Nothing would make it the only one: ``ledger serve`` delivers on SQLite.
        console.print("[red]ledger deliver needs PostgreSQL: on SQLite, ledger serve delivers[/]")
        raise typer.Exit(2)
    console.print(f"ledger webhook delivery on {settings.backend}: {redact(settings.database_url)}")
    run_delivery_forever(settings, parent)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@app.command()
def migrate() -> None:
    """Upgrade the database schema to the newest revision (idempotent)."""
    from service.adapters.migrate import migrate as upgrade

    settings = Settings()
    upgrade(settings)
    console.print(
        f"[green]migrated[/] {settings.backend} database {redact(settings.database_url)} "
        "to the newest revision"
    )


@app.command("reseal-webhook-secrets")
def reseal_webhook_secrets() -> None:
    """Seal every webhook endpoint's signing secret with the first key of
    LEDGER_WEBHOOK_SECRETS_KEY: after setting it, and after putting a new key
    first (before dropping the old one). Exits 1 when a secret no configured
    key opens is left as it is, 2 when no key is set."""
    from service.adapters.migrate import migrate as upgrade
    from service.adapters.webhook_store import open_webhook_store

    settings = Settings()
    if not settings.webhook_secret_keys:
        console.print("[red]set LEDGER_WEBHOOK_SECRETS_KEY first: there is no key to seal with[/]")
        raise typer.Exit(2)
    upgrade(settings)
    store = open_webhook_store(settings)
    try:
        written, unopened = store.reseal()
    finally:
        store.close()
    console.print(f"sealed {written} webhook signing secret(s) with the first key")
    if unopened:
        console.print(f"[red]no configured key opens the secret of: {', '.join(unopened)}[/]")
        raise typer.Exit(1)


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Usage trace CSV.")],
    url: Annotated[str, typer.Option(help="Base URL of the ledger.")] = "http://127.0.0.1:8000",
    key: Annotated[
        str | None,
        typer.Option(
            help="API key with purchase, consume and read (default: LEDGER_ADMIN_API_KEY)."
        ),
    ] = None,
    accounts: Annotated[int, typer.Option(min=1, help="Synthetic accounts (Zipf).")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the account draw and funding.")] = 42,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight.")] = 32,
    speedup: Annotated[
        float, typer.Option(min=0, help="0 = as fast as possible; else t_offset_s / speedup.")
    ] = 0.0,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N rows.")] = None,
    funding: Annotated[
        str, typer.Option(help="'auto' (seeded, some accounts short) or tokens per account.")
    ] = "auto",
    column: Annotated[Column, typer.Option(help="Token column used as amount.")] = (
        Column.total_tokens
    ),
    run_id: Annotated[
        str | None, typer.Option(help="Prefix of account ids and keys (default: random).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Replay a usage trace through the HTTP API and check every balance.

    Exits 0 only when every account's projected balance equals its funding minus
    its accepted consumptions and every request answered 201 or 402.
    """
    from tokenledger_replay import run_replay

    per_account = parse_funding(funding)
    if key is None:
        admin = Settings().admin_api_key
        if admin is None:
            raise typer.BadParameter(
                "no --key and LEDGER_ADMIN_API_KEY is unset", param_hint="--key"
            )
        key = admin.get_secret_value()
    summary = run_replay(
        file,
        url=url,
        key=key,
        accounts=accounts,
        seed=seed,
        concurrency=concurrency,
        speedup=speedup,
        limit=limit,
        funding=per_account,
        column=column.value,
        run_id=run_id,
        progress=progress,
        console=console,
    )
    summary.print(console)
    raise typer.Exit(code=0 if summary.ok else 1)


app.command()(export)
app.add_typer(audit, name="audit")


if __name__ == "__main__":  # pragma: no cover
    app()
