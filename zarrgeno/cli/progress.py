"""The progress bar of the commands that copy or check chunks (rechunk, recompress, verify)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from zarrgeno.render import Output

if TYPE_CHECKING:
    from zarrgeno.rewrite.executors import Progress


@contextlib.contextmanager
def task_progress(unit: str, enabled: bool | None) -> Iterator[Progress | None]:
    """A progress bar on stderr (by default when it is a terminal), or nothing.

    The library reports through :class:`zarrgeno.rewrite.executors.Progress`; it and rich's
    bar are imported only when a bar is drawn, so importing this module stays cheap.
    """
    if not (Output.err_is_terminal() if enabled is None else enabled):
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress

    from zarrgeno.rewrite.executors import Progress

    class _Bar(Progress):
        """Each phase the library starts becomes the bar's one task."""

        def __init__(self, bar: RichProgress) -> None:
            self.bar = bar
            self.task: TaskID | None = None

        def start(self, description: str, total: int) -> None:
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task(description, total=total)

        def advance(self, n: int = 1) -> None:
            if self.task is not None:
                self.bar.advance(self.task, n)

    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
    )
    with RichProgress(*columns, console=Output.err_console(), transient=True) as bar:
        yield _Bar(bar)
