"""Terminal output shared by every command: one Rich console, one progress style.

    python -c "from psyassist.ui import track; print(sum(track(range(10**6), 'count')))"
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def progress_enabled() -> bool:
    # Progress bars go to stderr; silenced when PSYASSIST_NO_PROGRESS is set (tests, logs).
    return not os.environ.get("PSYASSIST_NO_PROGRESS") and sys.stderr.isatty()


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a Rich progress bar on stderr (a no-op when not a terminal)."""
    if not progress_enabled():
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err_console, transient=True) as prog:
        task = prog.add_task(description, total=total)
        for item in items:
            yield item
            prog.advance(task)


def warn(msg: str) -> None:
    err_console.print(f"[yellow]warning:[/] {msg}")
