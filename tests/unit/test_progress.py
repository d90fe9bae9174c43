"""The simulate progress bar ends full when training stops before the epoch limit."""

from __future__ import annotations

from federation.progress import Progress


def test_bar_is_full_when_training_converges_before_the_limit() -> None:
    progress = Progress(100, enabled=False)
    progress.on_event({"event": "epoch", "epoch": 25, "epochs": 100, "loss": 0.4, "stop": False})
    task = progress._bar.tasks[0]
    assert (task.completed, task.total) == (25, 100)
    progress.on_event({"event": "epoch", "epoch": 26, "epochs": 100, "loss": 0.4, "stop": True})
    assert (task.completed, task.total) == (26, 26) and task.finished
