"""The long fuzzing run: ``PYTHONPATH=. .venv/bin/python -m fuzz.run --cases 5000``.

Starts the app as the CI test does (``fuzz.harness.running_ledger``: fresh
PostgreSQL and Redis databases, a key with every scope), fuzzes it until at
least ``--cases`` requests were sent, prints a summary (cases, answers by
status, 5xx count, failed checks by check, engine errors, app crashes) and
the distinct failures. Exits 1 on any failure, 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys

from fuzz.harness import fuzz, running_ledger


def main(argv: list[str] | None = None) -> int:
    """Runs the fuzzer as ``argv`` says; the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__)
    parser.add_argument("--cases", type=int, default=5000, help="fewest requests to send")
    parser.add_argument("--seed", type=int, default=0, help="first round's seed (then +1 ...)")
    parser.add_argument(
        "--examples",
        type=int,
        default=50,
        help="cases per operation and phase in the first round (streams: a fifth)",
    )
    parser.add_argument("--show", type=int, default=20, help="distinct failures to print")
    args = parser.parse_args(argv)
    with running_ledger() as target:
        report = fuzz(target, cases=args.cases, seed=args.seed, examples=args.examples)
    print(f"cases by operation:\n{report.by_operation()}")
    print(report.summary())
    if report.ok:
        print("result: no failure")
        return 0
    print(f"\n{report.details(args.show)}")
    print("result: FAILED")
    return 1


if __name__ == "__main__":
    sys.exit(main())
