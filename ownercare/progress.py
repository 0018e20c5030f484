"""A progress bar for the long commands (``eval``, ``replay``), on stderr when it is a terminal.

When stderr is not a terminal nothing is printed at all, so CI logs and redirected output stay
clean. The bar is transient (it disappears when done) and redraws only from :meth:`Bar.update`,
at most ten times a second: no refresh thread, so the simulator child that ``eval`` forks
cannot inherit a lock held by one.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

REDRAW_S = 0.1


def enabled() -> bool:
    return sys.stderr.isatty()


class Bar:
    """``with Bar("seed 1", total=45, unit="days") as bar: bar.update(12)``."""

    def __init__(self, description: str, total: float, unit: str = "") -> None:
        self._progress: Any = None
        self._task: Any = None
        self._next_draw = 0.0
        self._completed = 0.0
        if not enabled():
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = [TextColumn("{task.description}"), BarColumn(), TaskProgressColumn()]
        if unit:
            columns.append(TextColumn("{task.completed:.0f}/{task.total:.0f} " + unit))
        self._progress = Progress(
            *columns, TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=Console(stderr=True), auto_refresh=False, transient=True,
            redirect_stdout=False, redirect_stderr=False)
        self._task = self._progress.add_task(description, total=total)

    @property
    def active(self) -> bool:
        return self._progress is not None

    def __enter__(self) -> Bar:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            if exc_type is None:  # the last position, which the throttle may have skipped
                self._progress.update(self._task, completed=self._completed, refresh=True)
            self._progress.stop()

    def update(self, completed: float, *, force: bool = False) -> None:
        """Move the bar to ``completed`` (drawn at most every 0.1 s unless ``force``)."""
        if self._progress is None:
            return
        self._completed = completed
        now = time.monotonic()
        if not force and now < self._next_draw:
            return
        self._next_draw = now + REDRAW_S
        self._progress.update(self._task, completed=completed, refresh=True)

    def restart(self, description: str, total: float) -> None:
        """The same bar for the next phase of the work."""
        if self._progress is None:
            return
        self._completed = 0.0
        self._progress.reset(self._task, total=total, description=description)
        self._progress.refresh()
