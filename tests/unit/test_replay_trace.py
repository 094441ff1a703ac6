"""Unit tests of the replay: trace reading, account assignment, funding, the
driver against an in-memory fake ledger, and the summary's percentile math."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from tokenledger_replay import run_replay
from tokenledger_replay.accounts import (
    ZipfSampler,
    account_id,
    assign_accounts,
    compute_funding,
    plan_replay,
)
from tokenledger_replay.report import ReplaySummary, percentile
from tokenledger_replay.trace import TraceFormatError, TraceRow, read_trace
from typer.testing import CliRunner

from service.cli import app, parse_funding

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
NORMALIZED = SHARED_DATA / "llm_usage_replay_normalized.csv"

HEADER = "source,seq,t_offset_s,session_id,model,input_tokens,output_tokens,total_tokens\n"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def row(seq: int, total: int, session: str | None = None, t: float = 0.0) -> TraceRow:
    return TraceRow("src", seq, t, session, None, total, 0, total)


# --- trace reading ---------------------------------------------------------


def test_normalized_rows_are_read_with_types_and_empty_fields_as_none(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "n.csv",
        HEADER + "azure2023_conv,1,0.000000,,,374,44,418\n"
        "burstgpt3_first400,2,51.5,d598-abc,GPT-4,36,29,65\n",
    )
    rows = read_trace(path)
    assert rows == [
        TraceRow("azure2023_conv", 1, 0.0, None, None, 374, 44, 418),
        TraceRow("burstgpt3_first400", 2, 51.5, "d598-abc", "GPT-4", 36, 29, 65),
    ]
    assert rows[1].tokens("input_tokens") == 36


def test_limit_reads_only_the_first_rows_in_file_order(tmp_path: Path) -> None:
    body = "".join(f"s,{i},{10 - i}.0,,,1,1,2\n" for i in range(1, 6))
    rows = read_trace(write(tmp_path, "n.csv", HEADER + body), limit=3)
    assert [r.seq for r in rows] == [1, 2, 3]


def test_raw_azure_trace_gets_offsets_from_its_first_timestamp(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "azure_llm_2023_code_trace.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:17:03.9799600,4808,10\n"
        "2023-11-16 18:17:05.4799600,3180,8\n",
    )
    first, second = read_trace(path)
    assert (first.source, first.seq, first.t_offset_s, first.total_tokens) == (
        "azure2023_code",
        1,
        0.0,
        4818,
    )
    assert second.t_offset_s == pytest.approx(1.5)


def test_raw_mooncake_and_burstgpt_traces_are_understood(tmp_path: Path) -> None:
    moon = write(
        tmp_path,
        "m.csv",
        "timestamp_ms,input_tokens,output_tokens,prefix_blocks_512\n0,6758,500,14\n3000,1,2,1\n",
    )
    assert [(r.t_offset_s, r.total_tokens) for r in read_trace(moon)] == [(0.0, 7258), (3.0, 3)]
    burst = write(
        tmp_path,
        "b.csv",
        "Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,"
        "Total tokens,Log Type\n"
        "19440110.0,1722ac82,43,GPT-4,906,446,1352,Conversation log\n"
        "19440161.0,,2,ChatGPT,36,29,65,API log\n",
    )
    rows = read_trace(burst)
    assert [(r.session_id, r.model, r.t_offset_s, r.total_tokens) for r in rows] == [
        ("1722ac82", "GPT-4", 0.0, 1352),
        (None, "ChatGPT", 51.0, 65),
    ]


def test_unknown_header_or_malformed_row_is_a_trace_format_error(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError):
        read_trace(write(tmp_path, "x.csv", "a,b\n1,2\n"))
    with pytest.raises(TraceFormatError):
        read_trace(write(tmp_path, "y.csv", HEADER + "s,one,0,,,1,1,2\n"))


def test_the_shared_normalized_trace_has_all_its_rows_and_one_zero_row() -> None:
    assert NORMALIZED.exists(), f"{NORMALIZED}: ../shared/data must be beside the repository"
    rows = read_trace(NORMALIZED)
    assert len(rows) == 40_616
    assert Counter(r.source for r in rows)["burstgpt3_first400"] == 400
    assert sum(1 for r in rows if r.total_tokens == 0) == 1


# --- accounts and funding -------------------------------------------------------


def test_zipf_draws_are_deterministic_by_seed_and_favour_low_ranks() -> None:
    import random

    first = ZipfSampler(100, 1.1, random.Random(7))
    again = ZipfSampler(100, 1.1, random.Random(7))
    draws = [first.draw() for _ in range(5000)]
    assert draws == [again.draw() for _ in range(5000)]
    assert all(1 <= d <= 100 for d in draws)
    counts = Counter(draws)
    assert counts[1] > counts[2] > counts[10] > counts[100]
    # P(1) = 1 / H(100, 1.1) ≈ 0.22
    assert 0.18 < counts[1] / len(draws) < 0.26


def test_zipf_needs_at_least_one_account() -> None:
    import random

    with pytest.raises(ValueError):
        ZipfSampler(0, 1.1, random.Random(1))


def test_session_ids_are_used_where_present_and_zipf_elsewhere() -> None:
    rows = [row(1, 5, "sess-a"), row(2, 5), row(3, 5, "sess-a"), row(4, 5, "we/ird id")]
    keys = assign_accounts(rows, n_accounts=10, seed=1)
    assert keys[0] == keys[2] == "s-sess-a"
    assert keys[1].startswith("z")
    assert keys[3] == "s-we_ird_id"


def test_assignment_is_the_same_for_a_prefix_whatever_the_limit() -> None:
    rows = [row(i, 10) for i in range(1, 201)]
    assert assign_accounts(rows[:50], 30, seed=9) == assign_accounts(rows, 30, seed=9)[:50]
    assert assign_accounts(rows, 30, seed=9) != assign_accounts(rows, 30, seed=10)


def test_account_ids_carry_the_run_id_and_fit_the_contract() -> None:
    import re

    ident = account_id("ab12cd34", "s-" + "x" * 200)
    assert ident.startswith("replay-ab12cd34-s-")
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}", ident)


def test_auto_funding_shorts_about_a_quarter_of_accounts_by_a_tenth() -> None:
    demand = {f"z{i}": 1000 + i for i in range(1, 401)}
    funding = compute_funding(demand, seed=42)
    assert funding == compute_funding(demand, seed=42)
    short = [a for a in demand if funding[a] < demand[a]]
    assert all(funding[a] == demand[a] * 9 // 10 for a in short)
    assert all(funding[a] == demand[a] for a in demand if a not in short)
    assert 60 < len(short) < 140
    assert compute_funding(demand, seed=43) != funding


def test_funding_is_at_least_one_token_and_fixed_funding_applies_to_all() -> None:
    demand = {f"z{i}": 1 for i in range(50)}
    assert min(compute_funding(demand, seed=1).values()) == 1
    assert set(compute_funding(demand, seed=1, per_account=77).values()) == {77}
    with pytest.raises(ValueError):
        compute_funding(demand, seed=1, per_account=0)


def test_plan_skips_zero_amounts_and_sums_demand_per_account() -> None:
    rows = [row(1, 10, "a"), row(2, 0, "a"), row(3, 5, "a"), row(4, 7, "b")]
    plan = plan_replay(rows, run_id="r1", n_accounts=3, seed=1, funding=100)
    assert plan.skipped == 1
    assert [r.seq for r in plan.rows] == [1, 3, 4]
    assert plan.amounts == [10, 5, 7]
    assert plan.demand == {"replay-r1-s-a": 15, "replay-r1-s-b": 7}
    assert plan.funding == {"replay-r1-s-a": 100, "replay-r1-s-b": 100}


def test_auto_funding_choice_does_not_depend_on_the_run_id() -> None:
    rows = [row(i, 100 + i) for i in range(1, 500)]
    one = plan_replay(rows, run_id="one", n_accounts=50, seed=5)
    two = plan_replay(rows, run_id="two", n_accounts=50, seed=5)
    assert sorted(one.funding.values()) == sorted(two.funding.values())


# --- percentiles and summary -----------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([5.0], 99) == 5.0
    assert percentile([], 50) == 0.0
    with pytest.raises(ValueError):
        percentile(values, 0)


def test_summary_is_ok_only_without_errors_and_mismatches() -> None:
    summary = ReplaySummary(run_id="r", rows=10, skipped=0, accounts=2, funded_tokens=5)
    summary.accepted, summary.refused, summary.consume_seconds = 6, 4, 2.0
    assert summary.ok and summary.posted == 10 and summary.throughput == 5.0
    summary.errors["500"] = 1
    assert not summary.ok and summary.posted == 11
    summary.errors.clear()
    summary.balances_mismatched = 1
    assert not summary.ok


def test_parse_funding_accepts_auto_or_a_positive_integer() -> None:
    import typer

    assert parse_funding("auto") is None
    assert parse_funding("500") == 500
    for bad in ("0", "-3", "lots"):
        with pytest.raises(typer.BadParameter):
            parse_funding(bad)


# --- the driver against an in-memory fake ledger -------------------------------


class FakeLedger:
    """Just enough of the contract: purchases, consumptions (402 when short),
    idempotency keys and positions."""

    def __init__(self, *, fail_first: int = 0) -> None:
        self.available: dict[str, int] = {}
        self.consumed: dict[str, int] = {}
        self.position = 0
        self.seen: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        self.fail_first = fail_first
        self.requests = 0
        self.idempotency_keys: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        assert request.headers["Authorization"] == "Bearer k"
        parts = request.url.path.strip("/").split("/")
        account = parts[2]
        if request.method == "GET":
            if account not in self.available:
                return httpx.Response(404, json={"code": "account-not-found"})
            assert int(request.url.params["min_position"]) >= 1
            return httpx.Response(
                200,
                json={
                    "available": self.available[account],
                    "consumed": self.consumed[account],
                    "stale": False,
                },
            )
        if self.fail_first > 0:
            self.fail_first -= 1
            return httpx.Response(503, json={"code": "unavailable"})
        key = request.headers["Idempotency-Key"]
        self.idempotency_keys.append(key)
        if (account, key) in self.seen:
            status, body = self.seen[(account, key)]
            return httpx.Response(status, json=body, headers={"Idempotent-Replayed": "true"})
        amount = json.loads(request.content)["amount"]
        assert isinstance(amount, int) and amount >= 1
        if parts[3] == "purchases":
            self.available[account] = self.available.get(account, 0) + amount
            self.consumed.setdefault(account, 0)
        elif self.available.get(account, 0) < amount:
            status, body = 402, {"code": "insufficient-balance"}
            self.seen[(account, key)] = (status, body)
            return httpx.Response(status, json=body)
        else:
            self.available[account] -= amount
            self.consumed[account] += amount
        self.position += 1
        body = {"entry": {"amount": amount, "position": self.position}}
        self.seen[(account, key)] = (201, body)
        return httpx.Response(201, json=body)


def replay_rows(fake: FakeLedger, rows: list[TraceRow], **options: Any) -> ReplaySummary:
    options.setdefault("run_id", "t1")
    return run_replay(
        rows,
        url="http://ledger.test",
        key="k",
        transport=httpx.MockTransport(fake),
        **options,
    )


def test_replay_refuses_what_short_accounts_cannot_pay_and_all_balances_check() -> None:
    rows = [row(i, 10 + i % 7, t=float(i)) for i in range(1, 301)]
    fake = FakeLedger()
    summary = replay_rows(fake, rows, accounts=20, seed=3, concurrency=8)
    assert summary.rows == 300 and summary.skipped == 0
    assert summary.accepted + summary.refused == 300
    assert summary.refused > 0
    assert summary.balances_ok == summary.accounts and summary.balances_mismatched == 0
    assert summary.ok
    assert summary.accepted_tokens == sum(fake.consumed.values())
    assert summary.latency_p99_ms >= summary.latency_p50_ms > 0


def test_replay_skips_zero_rows_and_uses_run_scoped_idempotency_keys() -> None:
    rows = [
        TraceRow("azure2023_conv", 1, 0.0, None, None, 3, 2, 5),
        TraceRow("azure2023_conv", 2, 0.1, None, None, 0, 0, 0),
    ]
    fake = FakeLedger()
    summary = replay_rows(fake, rows, accounts=1, funding=100, run_id="abc")
    assert (summary.skipped, summary.accepted, summary.refused) == (1, 1, 0)
    assert fake.idempotency_keys == ["abc-fund", "abc-azure2023_conv-1"]
    assert fake.available == {"replay-abc-z1": 95}


def test_rerunning_with_the_same_run_id_replays_idempotently() -> None:
    rows = [row(i, 50) for i in range(1, 41)]
    fake = FakeLedger()
    first = replay_rows(fake, rows, accounts=3, seed=1, run_id="same")
    again = replay_rows(fake, rows, accounts=3, seed=1, run_id="same")
    assert (again.accepted, again.refused) == (first.accepted, first.refused)
    assert again.ok


def test_a_speedup_paces_rows_by_arrival_order() -> None:
    rows = [row(1, 5, t=0.002), row(2, 5, t=0.001), row(3, 5, t=0.0)]
    fake = FakeLedger()
    summary = replay_rows(fake, rows, accounts=1, funding=100, speedup=1.0, concurrency=1)
    assert summary.accepted == 3
    assert fake.idempotency_keys == ["t1-fund", "t1-src-3", "t1-src-2", "t1-src-1"]


def test_transient_503s_are_retried_and_counted() -> None:
    fake = FakeLedger(fail_first=2)
    summary = replay_rows(fake, [row(1, 5), row(2, 5)], accounts=1, funding=10)
    assert summary.retries == 2 and summary.accepted == 2 and summary.ok


def test_a_balance_that_disagrees_is_a_mismatch_and_fails_the_replay() -> None:
    fake = FakeLedger()
    original = fake.__call__

    def tampering(request: httpx.Request) -> httpx.Response:
        response = original(request)
        if request.method == "GET":
            body = response.json()
            body["available"] += 1
            return httpx.Response(200, json=body)
        return response

    summary = run_replay(
        [row(1, 5)],
        url="http://ledger.test",
        key="k",
        accounts=1,
        funding=10,
        run_id="m",
        transport=httpx.MockTransport(tampering),
    )
    assert summary.balances_mismatched == 1 and not summary.ok
    assert summary.mismatches[0].expected_available == 5
    assert summary.mismatches[0].available == 6


def test_an_unexpected_status_counts_as_an_error() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("consumptions"):
            return httpx.Response(500, json={})
        return FakeLedger()(request)

    summary = run_replay(
        [row(1, 5)],
        url="http://ledger.test",
        key="k",
        accounts=1,
        funding=10,
        transport=httpx.MockTransport(broken),
    )
    assert summary.errors == {"500": 1} and not summary.ok


def test_cli_replay_needs_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEDGER_ADMIN_API_KEY", raising=False)
    path = write(tmp_path, "n.csv", HEADER + "s,1,0,,,1,1,2\n")
    result = CliRunner().invoke(app, ["replay", str(path)])
    assert result.exit_code != 0
    assert "LEDGER_ADMIN_API_KEY" in result.output


def test_database_urls_are_printed_without_their_password() -> None:
    from service.cli import redact

    assert redact("postgresql://u:s3cret@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redact("sqlite:///./ledger.db") == "sqlite:///./ledger.db"
