"""A progress display for ``simulate`` and ``score`` (rich), fed by the coordinator's EVENT lines.

Training shows epochs done out of the epochs asked for; scoring (``epochs=0``) has no
epochs to count and shows only the stage and the time.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

Event = dict[str, object]


class Progress:
    def __init__(self, epochs: int, enabled: bool = True, console: Console | None = None) -> None:
        self._enabled = enabled
        counted = [BarColumn(), MofNCompleteColumn()] if epochs > 0 else []
        self._bar = RichProgress(
            TextColumn("{task.description}"),
            *counted,
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            disable=not enabled,
        )
        self._task = self._bar.add_task("waiting for the parties", total=epochs or None)

    def __enter__(self) -> Progress:
        self._bar.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._bar.__exit__(kind, exc, tb)

    def on_event(self, event: Event) -> None:
        kind = event.get("event")
        if kind == "stage":
            self._bar.update(self._task, description=f"stage: {event['stage']}")
        elif kind == "aligned":
            self._bar.update(
                self._task,
                description=f"aligned {event['intersection_size']} enterprises by PSI; training",
            )
        elif kind == "epoch":
            epoch = int(str(event["epoch"]))
            self._bar.update(
                self._task,
                completed=epoch,
                total=epoch if event.get("stop") else None,  # converged: the bar is full
                description=f"epoch {epoch}: loss {float(str(event['loss'])):.4f}",
            )
        elif kind == "failed":
            self._bar.update(self._task, description=f"failed: {event['reason']}")
