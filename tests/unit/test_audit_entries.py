"""The audit's fast reading of stored events gives exactly the API's entries,
and its fold accepts the ledger's own hashes, whatever the metadata holds
(floats, integers beyond 64 bits, non-ASCII)."""

from __future__ import annotations

import uuid
from pathlib import Path

from service.adapters.log_stream import stream_log
from service.adapters.migrate import migrate
from service.application import commands, reads
from service.application.audit.entries import api_entry
from service.application.audit.fold import AuditFold
from service.application.ledger import Ledger
from service.config import Settings


def test_stored_events_read_fast_equal_the_api_entries_and_fold_cleanly(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    migrate(settings)
    ledger = Ledger(env=settings.eventsourcing_env())
    try:
        odd = {"big": 2**70, "neg": -(2**64), "f": 0.1, "e": 1e16, "s": "ü\u2028", "l": [1.5, {}]}
        ledger.execute_write(commands.purchase("a", 900, actor="t", idem=None, metadata=odd))
        ledger.execute_write(commands.set_credit_limit("a", 100, actor="t", idem=None))
        ledger.execute_write(commands.consume("a", 950, actor="t", idem=None, model="m"))
        hold = ledger.execute_write(
            commands.place_hold("a", 30, actor="t", idem=None, ttl_seconds=60)
        )
        hold_id = uuid.UUID(hold.body["entry"]["hold_id"])
        ledger.execute_write(commands.capture_hold(ledger, "a", hold_id, 10, actor="t", idem=None))
        ledger.execute_write(commands.grant("b", 5, actor="t", idem=None, reason="gift"))
        fast = [e for e in map(api_entry, stream_log(ledger.recorder)) if e is not None]
        api = [
            *reads.account_entries(ledger, "a", 0, 100)["entries"],
            *reads.account_entries(ledger, "b", 0, 100)["entries"],
        ]
        assert sorted(fast, key=lambda e: e["position"]) == sorted(api, key=lambda e: e["position"])
        assert fast[0]["metadata"]["big"] == 2**70
        fold = AuditFold()
        for entry in fast:
            fold.add(entry)
        assert fold.failures == []
        assert fold.balances["a"].available == ledger.get_account("a").available
        assert fold.balances["a"].held == 0 and fold.balances["a"].consumed == 960
    finally:
        ledger.close()
