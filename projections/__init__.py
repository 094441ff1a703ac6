"""Read models of the ledger (the balance projection) and the pub/sub bridge."""
