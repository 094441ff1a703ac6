"""The SQL of the webhook store (``service.adapters.webhook_store``), written
once for PostgreSQL and SQLite (``service.adapters.dialect``): ``{endpoints}``,
``{outbox}`` and ``{totals}`` name the tables of migrations 0005 to 0007.
"""

ENDPOINTS, OUTBOX = "ledger_webhook_endpoints", "ledger_webhook_outbox"
TOTALS = "ledger_webhook_totals"

INSERT_ENDPOINT = (
    "INSERT INTO {endpoints} (id, url, events, low_balance_threshold, description, secret,"
    " created_at) VALUES (:id, :url, :events, :threshold, :description, :secret, :created_at)"
)
SELECT_ENDPOINTS = (
    "SELECT id, url, events, low_balance_threshold, description, secret, created_at"
    " FROM {endpoints} WHERE deleted_at IS NULL ORDER BY created_at, id"
)
SELECT_ENDPOINT = (
    "SELECT id, url, events, low_balance_threshold, description, secret, created_at"
    " FROM {endpoints} WHERE id = :id AND deleted_at IS NULL"
)
DELETE_ENDPOINT = "UPDATE {endpoints} SET deleted_at = :now WHERE id = :id AND deleted_at IS NULL"
SELECT_SECRETS = "SELECT id, secret FROM {endpoints} ORDER BY id"  # deleted ones too
RESEAL_ENDPOINT = "UPDATE {endpoints} SET secret = :sealed WHERE id = :id AND secret = :stored"
DROP_PENDING = "DELETE FROM {outbox} WHERE endpoint_id = :id AND status = 'pending'"
SELECT_DELIVERIES = (
    "SELECT webhook_id, type, account_id, status, attempts, last_response_status,"
    " next_attempt_at FROM {outbox} WHERE endpoint_id = :id"
    " ORDER BY position DESC, ordinal DESC LIMIT :limit"
)
_MESSAGE = (
    "SELECT position, endpoint_id, ordinal, webhook_id, account_id, type, body, attempts,"
    " next_attempt_at FROM {outbox} WHERE status = 'pending'"
)
SELECT_PENDING_AFTER = (
    # Index ledger_webhook_outbox_endpoint: the order the projection appends in.
    _MESSAGE + " AND endpoint_id = :endpoint_id AND (position, ordinal) > (:position, :ordinal)"
    " ORDER BY position, ordinal LIMIT :limit"
)
SELECT_PENDING_OF = (
    # Index ledger_webhook_outbox_pending (partial: pending rows only).
    _MESSAGE + " AND endpoint_id = :endpoint_id AND account_id = :account_id"
    " AND (position, ordinal) > (:position, :ordinal)"
    " AND (position, ordinal) <= (:upto_position, :upto_ordinal)"
    " ORDER BY position, ordinal LIMIT :limit"
)
SELECT_FIRST_PENDING = (
    # Each account's first pending row, from the partial index.
    "SELECT (SELECT min(head) FROM (SELECT min(position) AS head FROM {outbox}"
    " WHERE status = 'pending' AND endpoint_id = :endpoint_id GROUP BY account_id) heads)"
    " AS first, (SELECT max(position) FROM {outbox} WHERE endpoint_id = :endpoint_id) AS last"
)
RECORD_ATTEMPTS_POSTGRES = (
    # One statement for a whole group commit: a row per element of the arrays.
    "UPDATE {outbox} o SET status = a.status, attempts = o.attempts + 1,"
    " last_response_status = a.response_status, last_error = a.error,"
    " next_attempt_at = a.next_attempt_at FROM unnest(CAST(:position AS bigint[]),"
    " CAST(:endpoint_id AS text[]), CAST(:ordinal AS integer[]), CAST(:status AS text[]),"
    " CAST(:response_status AS integer[]), CAST(:error AS text[]),"
    " CAST(:next_attempt_at AS double precision[]))"
    " AS a(position, endpoint_id, ordinal, status, response_status, error, next_attempt_at)"
    " WHERE o.position = a.position AND o.endpoint_id = a.endpoint_id AND o.ordinal = a.ordinal"
)
RECORD_ATTEMPT = (
    "UPDATE {outbox} SET status = :status, attempts = attempts + 1,"
    " last_response_status = :response_status, last_error = :error,"
    " next_attempt_at = :next_attempt_at"
    " WHERE position = :position AND endpoint_id = :endpoint_id AND ordinal = :ordinal"
)
ADD_TO_TOTALS_POSTGRES = (
    # One statement for a whole group commit's additions (one per array element).
    "INSERT INTO {totals} AS t (name, value) SELECT name, n FROM"
    " unnest(CAST(:name AS text[]), CAST(:n AS bigint[])) AS a(name, n)"
    " ON CONFLICT (name) DO UPDATE SET value = t.value + excluded.value"
)
ADD_TO_TOTAL = (  # a total appears at its first addition (the latency buckets)
    "INSERT INTO {totals} AS t (name, value) VALUES (:name, :n)"
    " ON CONFLICT (name) DO UPDATE SET value = t.value + excluded.value"
)

SELECT_LAST_POSITION = "SELECT max(position) AS last FROM {outbox}"  # primary key's right edge
SELECT_OLDEST_AFTER = (
    "SELECT created_at FROM {outbox} WHERE position > :after ORDER BY position LIMIT 1"
)
SELECT_PRUNABLE = (
    # The next ``:limit`` rows by primary key after ``:after``, whatever their
    # status: the scan never goes further. The projection appends in position
    # order, so ``created_at`` grows with it: the range to prune ends before
    # the first row created at ``:cutoff`` or later.
    "SELECT max(position) AS last, count(*) AS scanned,"
    " min(CASE WHEN created_at >= :cutoff THEN position END) AS newer"
    " FROM (SELECT position, created_at FROM {outbox} WHERE position > :after"
    " ORDER BY position LIMIT :limit) batch"
)
DELETE_ENDED = (
    # A range of the primary key (parameters, so the planner sees how short
    # it is); pending rows stay whatever their age.
    "DELETE FROM {outbox} WHERE position > :after AND position <= :upto"
    " AND status <> 'pending' AND created_at < :cutoff"
)
SELECT_TOTALS = (
    # The backlog from the partial index ledger_webhook_outbox_pending; the
    # rest from the running totals (never a count of the whole outbox).
    "SELECT 'pending' AS name, count(*) AS value FROM {outbox} WHERE status = 'pending'"
    " UNION ALL SELECT name, value FROM {totals}"
)
