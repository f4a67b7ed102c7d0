"""A progress bar for one-shot runs (`ingest --once`, `archive --once`) on a terminal.

Services log one line per event to journald instead; a bar there would only add noise, so
the bar exists only when stderr is a terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def byte_progress(description: str, total_bytes: int) -> Iterator[Callable[[int], None] | None]:
    """Yield a callback that advances the bar by a number of bytes, or None off a terminal."""
    if not sys.stderr.isatty() or total_bytes <= 0:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total_bytes)
        yield lambda count: bar.advance(task, count)
