"""The progress display: epochs when training, none when scoring, full when stopped early."""

from __future__ import annotations

import io

from rich.console import Console

from federation.progress import Progress


def _render(epochs: int, events: list[dict[str, object]]) -> str:
    out = io.StringIO()
    progress = Progress(epochs, console=Console(file=out, width=120, force_terminal=False))
    with progress:
        for event in events:
            progress.on_event(event)
    return out.getvalue()


def test_scoring_ends_at_done_without_an_epoch_count() -> None:
    text = _render(0, [{"event": "stage", "stage": "align"},
                       {"event": "aligned", "intersection_size": 40},
                       {"event": "stage", "stage": "done"}])
    assert "stage: done" in text and "0/5" not in text and "/" not in text.split("done")[-1]


def test_training_counts_epochs() -> None:
    text = _render(2, [{"event": "epoch", "epoch": 1, "loss": 0.6},
                       {"event": "epoch", "epoch": 2, "loss": 0.5},
                       {"event": "stage", "stage": "done"}])
    assert "2/2" in text and "stage: done" in text


def test_bar_is_full_when_training_converges_before_the_limit() -> None:
    progress = Progress(100, enabled=False)
    progress.on_event({"event": "epoch", "epoch": 25, "epochs": 100, "loss": 0.4, "stop": False})
    task = progress._bar.tasks[0]
    assert (task.completed, task.total) == (25, 100)
    progress.on_event({"event": "epoch", "epoch": 26, "epochs": 100, "loss": 0.4, "stop": True})
    assert (task.completed, task.total) == (26, 26) and task.finished
