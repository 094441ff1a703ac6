"""The webhook outbox, written by the projection in its batch transaction.

For each batch: the endpoints (one query), the alert states of the batch's
accounts for those endpoints, then the batch's messages
(:func:`projections.webhook_messages.batch_messages`) inserted under
their ``(position, endpoint_id, ordinal)`` key (``ON CONFLICT DO NOTHING``: a
batch applied again adds nothing) and the new states, all with the cursor of the balances'
transaction: the messages commit exactly when the balances do.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from projections.batch import BatchPlan
from projections.webhook_messages import StateKey, Subscription, batch_messages
from service.adapters.dialect import Dialect, Query, as_arrays
from service.domain.alerts import AlertState

ENDPOINTS = "ledger_webhook_endpoints"
OUTBOX = "ledger_webhook_outbox"
STATES = "ledger_webhook_states"

SELECT_SUBSCRIPTIONS = (
    "SELECT id, events, low_balance_threshold FROM {endpoints} WHERE deleted_at IS NULL"
)
SELECT_STATES = "SELECT endpoint_id, account_id, state FROM {states} WHERE account_id = :account_id"
INSERT_MESSAGE = (
    "INSERT INTO {outbox} (position, endpoint_id, ordinal, webhook_id, account_id, type, body,"
    " status, attempts, next_attempt_at, created_at) VALUES (:position, :endpoint_id,"
    " :ordinal, :webhook_id, :account_id, :type, :body, 'pending', 0, :now, :now)"
    " ON CONFLICT (position, endpoint_id, ordinal) DO NOTHING"
)
INSERT_MESSAGES_POSTGRES = (
    # One statement for the whole batch: a row per element of the arrays.
    "INSERT INTO {outbox} (position, endpoint_id, ordinal, webhook_id, account_id, type, body,"
    " status, attempts, next_attempt_at, created_at)"
    " SELECT m.position, m.endpoint_id, m.ordinal, m.webhook_id, m.account_id, m.type, m.body,"
    " 'pending', 0, :now, :now FROM unnest(CAST(:position AS bigint[]),"
    " CAST(:endpoint_id AS text[]), CAST(:ordinal AS integer[]), CAST(:webhook_id AS text[]),"
    " CAST(:account_id AS text[]), CAST(:type AS text[]), CAST(:body AS bytea[]))"
    " AS m(position, endpoint_id, ordinal, webhook_id, account_id, type, body)"
    " ON CONFLICT (position, endpoint_id, ordinal) DO NOTHING"
)
COLUMNS = ("position", "endpoint_id", "ordinal", "webhook_id", "account_id", "type", "body")
UPSERT_STATE = (
    "INSERT INTO {states} (endpoint_id, account_id, state)"
    " VALUES (:endpoint_id, :account_id, :state)"
    " ON CONFLICT (endpoint_id, account_id) DO UPDATE SET state = excluded.state"
)


class Outbox:
    """Records a batch's webhook messages with a cursor of its transaction."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

        def q(text: str) -> Query:
            return dialect.statement(text, endpoints=ENDPOINTS, outbox=OUTBOX, states=STATES)

        # FOR SHARE: deleting an endpoint waits for this transaction, then drops
        # the pending messages it wrote (SQLite's write lock does the same).
        lock = " FOR SHARE" if dialect.name == "postgres" else ""
        self._subscriptions = q(SELECT_SUBSCRIPTIONS + lock)
        self._states = q(SELECT_STATES)
        self._insert, self._upsert_state = q(INSERT_MESSAGE), q(UPSERT_STATE)
        self._insert_all = q(INSERT_MESSAGES_POSTGRES) if dialect.name == "postgres" else None

    def record(self, curs: Any, plan: BatchPlan, balances: Sequence[list[dict[str, Any]]]) -> int:
        """Inserts the messages of ``plan`` given each changed account's
        balances after each of its entries; returns how many."""
        curs.execute(self._subscriptions, {})
        subscriptions = [
            Subscription(
                row["id"], frozenset(json.loads(row["events"])), row["low_balance_threshold"]
            )
            for row in curs.fetchall()
        ]
        if not subscriptions or not balances:
            return 0
        accounts = [(plan.rendered(states[-1]["account_id"]), states) for states in balances]
        prior: dict[StateKey, AlertState] = {}
        if any(sub.alerts for sub in subscriptions):
            keys = [{"account_id": states[-1]["account_id"]} for states in balances]
            for row in self.dialect.each(curs, self._states, keys):
                prior[(row["endpoint_id"], row["account_id"])] = row["state"]
        messages, changed = batch_messages(subscriptions, accounts, prior)
        now = time.time()
        rows = [{name: getattr(m, name) for name in COLUMNS} for m in messages]
        if rows and self._insert_all is not None:
            curs.execute(self._insert_all, {**as_arrays(rows), "now": now})
        elif rows:
            curs.executemany(self._insert, [{**row, "now": now} for row in rows])
        if changed:
            curs.executemany(
                self._upsert_state,
                [
                    {"endpoint_id": endpoint, "account_id": account, "state": state}
                    for (endpoint, account), state in sorted(changed.items())
                ],
            )
        return len(messages)
