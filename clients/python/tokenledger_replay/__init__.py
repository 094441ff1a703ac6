"""``ledger replay``: drives a real LLM usage trace through the HTTP API.

Modules: :mod:`.trace` reads traces, :mod:`.accounts` assigns rows to accounts
and computes funding, :mod:`.runner` posts them, :mod:`.report` summarizes.
"""

from tokenledger_replay.report import ReplaySummary
from tokenledger_replay.runner import replay, run_replay

__all__ = ["ReplaySummary", "replay", "run_replay"]
