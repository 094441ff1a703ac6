"""Wrap a (fake) LLM call in a hold: reserve the most it can cost, call the
model, and pay only what it used; if the call fails, the hold is released.

    LEDGER_URL=http://127.0.0.1:8000 LEDGER_API_KEY=... python examples/hold_llm_call.py user-42
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from tokenledger_client import InsufficientBalance, LedgerClient

MAX_OUTPUT_TOKENS = 1_000


@dataclass
class Reply:
    text: str
    total_tokens: int  # prompt + completion, as model APIs report usage


def fake_llm(prompt: str, max_tokens: int) -> Reply:
    """Stands in for a model API call."""
    text = "Each entry's hash covers the previous one, so no entry can change unseen."
    return Reply(text, total_tokens=len(prompt.split()) + len(text.split()) * 4)


def main(account: str) -> int:
    prompt = "Explain the ledger's hash chain in one sentence."
    worst_case = len(prompt.split()) + MAX_OUTPUT_TOKENS  # tokens
    url = os.environ.get("LEDGER_URL", "http://127.0.0.1:8000")
    with LedgerClient(url, os.environ["LEDGER_API_KEY"]) as ledger:
        try:
            with ledger.hold(account, worst_case, operation="chat.completion") as hold:
                reply = fake_llm(prompt, MAX_OUTPUT_TOKENS)  # an exception here releases the hold
                hold.used = reply.total_tokens  # captured when the block ends
        except InsufficientBalance as refused:
            print(f"{account}: {refused.available} tokens left, this call may need {worst_case}")
            return 1
    assert hold.settlement is not None
    print(reply.text)
    print(
        f"used {reply.total_tokens:,} of {worst_case:,} tokens held; "
        f"{hold.settlement['balance']['available']:,} left"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "user-42"))
