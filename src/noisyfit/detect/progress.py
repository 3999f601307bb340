"""A progress bar for long passes (rich, on stderr, gone when done); a no-op when disabled."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class _Bar:
    def __init__(self, progress, task):
        self._progress, self._task = progress, task

    def advance(self, amount: float = 1.0, info: str | None = None) -> None:
        if self._progress is not None:
            kwargs = {"info": info} if info is not None else {}
            self._progress.update(self._task, advance=amount, **kwargs)


@contextmanager
def progress_bar(total: float, description: str, enabled: bool = True) -> Iterator[_Bar]:
    """``with progress_bar(n, "scan") as bar: ... bar.advance()``."""
    if not enabled:
        yield _Bar(None, None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as progress:
        yield _Bar(progress, progress.add_task(description, total=total, info=""))
