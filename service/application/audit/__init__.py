"""Auditing the ledger: export the log, verify it (hash chain, invariants,
balance table) with a fold written apart from the projection, rebuild the
projection tables from it."""
