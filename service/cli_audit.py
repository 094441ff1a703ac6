"""The audit command line (contract v1.1): ``ledger export``, ``ledger audit
verify`` and ``ledger audit rebuild``. Progress bars go to stderr, and only
when it is a terminal; exports go to stdout unless ``--output``."""

from __future__ import annotations

import contextlib
import enum
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from service.adapters.migrate import migrate
from service.config import Settings

audit = typer.Typer(help="Verify the ledger, or rebuild its projection tables from the log.")
err = Console(stderr=True, soft_wrap=True)


class Format(enum.StrEnum):
    ndjson = "ndjson"
    csv = "csv"


@contextlib.contextmanager
def position_bar(label: str, total: int) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar over log positions on a terminal's stderr (else none)."""
    if not sys.stderr.isatty() or total <= 0:
        yield None
        return
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda position: bar.update(task, completed=position)


def export(
    format: Annotated[Format, typer.Option("--format", help="ndjson or csv.")] = Format.ndjson,
    account: Annotated[str | None, typer.Option(help="Only this account's entries.")] = None,
    after_position: Annotated[
        int, typer.Option(min=0, help="Only entries after this position.")
    ] = 0,
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Every entry (API form, with position and hash) in position order."""
    from service.application.audit.database import head_position, stored_entries
    from service.application.audit.entries import collector_paused
    from service.application.audit.export import write_export

    settings = Settings()
    migrate(settings)
    entries = stored_entries(settings, after_position, account)
    with contextlib.ExitStack() as stack:
        stack.enter_context(collector_paused())
        out: Any = stack.enter_context(output.open("wb")) if output else sys.stdout.buffer
        progress = stack.enter_context(position_bar("export", head_position(settings)))
        count = write_export(entries, out, format.value, progress)
        out.flush()
    if output is not None:
        err.print(f"exported {count} entries to {output}")


@audit.command()
def verify(
    account: Annotated[str | None, typer.Option(help="Only this account.")] = None,
    from_export: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Check an NDJSON export alone."),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Versions contiguous, positions increasing, every hash, the invariants
    after every entry and the balance table equal to the fold of the log.
    Exits 0 when all holds, 1 otherwise."""
    from service.application.audit.database import head_position, verify_database, verify_export

    if from_export is not None:
        with position_bar("verify", 0) as progress:
            report = verify_export(from_export, progress)
    else:
        settings = Settings()
        migrate(settings)
        with position_bar("verify", head_position(settings)) as progress:
            report = verify_database(settings, account, progress)
    if json:
        sys.stdout.buffer.write(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2))
        sys.stdout.write("\n")
    else:
        for failure in report.failures:
            print(
                f"FAILED {failure.check}: account {failure.account_id} "
                f"version {failure.version}: {failure.detail}"
            )
        verdict = "all checks hold" if report.ok else f"{len(report.failures)} failed checks"
        print(
            f"{report.entries} entries, {report.accounts} accounts, "
            f"{report.balances_compared} balances compared: {verdict}"
        )
    raise typer.Exit(code=0 if report.ok else 1)


@audit.command()
def rebuild() -> None:
    """Recompute the projection tables from the log into new tables and swap
    them in one transaction; balance reads keep being answered meanwhile."""
    from service.application.audit.rebuild import rebuild_projection

    settings = Settings()
    migrate(settings)
    summary = rebuild_projection(settings)
    print(summary)
