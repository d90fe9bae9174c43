"""Stopping cleanly: SIGTERM as Ctrl-C; nodes stop when their parent or coordinator is gone.

- :func:`terminate_as_interrupt` makes SIGTERM raise :class:`Terminated` (a
  ``KeyboardInterrupt``) in the main thread, so every ``finally`` runs: ``simulate`` stops its
  child nodes and marks its run folder failed; a node tells its peer and removes what it
  wrote. Exit code 143 (128 + SIGTERM), as a shell reports a process killed by SIGTERM.
  Only the first SIGINT or SIGTERM raises: the cleanup it starts is not interrupted by a
  second one (a quick double Ctrl-C used to leave a run folder ``running`` with half its
  outputs). A third Ctrl-C is the user insisting: the process exits at once, without cleanup.
- :func:`watch_parent` stops a node whose parent process (``simulate``, which sets
  ``GRIDCREDIT_PARENT_PID``) is gone: a node is never left orphaned.
- :func:`stop_self` is how a watcher thread stops its node: it records why and sends the
  node SIGTERM; if the main thread does not get out within ``HARD_STOP_SECONDS`` (stuck in C
  code), the process exits anyway.

Assumes: called from the main thread of a CLI process (signal handlers live there).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from types import FrameType

log = logging.getLogger(__name__)
PARENT_ENV = "GRIDCREDIT_PARENT_PID"
EXIT_TERMINATED = 128 + signal.SIGTERM
HARD_STOP_SECONDS = 10.0
EXIT_INTERRUPTED = 128 + signal.SIGINT
FORCE_AFTER = 3  # the third Ctrl-C ends the process without cleanup
_why: list[str] = []
_seen: list[int] = []  # the stop signals received since terminate_as_interrupt


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (or a watcher stopped this node); the message says why."""


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    """The first SIGINT or SIGTERM raises; later ones do not interrupt the cleanup."""
    _seen.append(signum)
    if len(_seen) == 1:
        if signum == signal.SIGTERM:
            raise Terminated(_why[-1] if _why else "stopped by SIGTERM")
        raise KeyboardInterrupt
    if signum == signal.SIGINT and _seen.count(signal.SIGINT) >= FORCE_AFTER:
        print("error: interrupted again; stopped without cleanup", file=sys.stderr, flush=True)
        os._exit(EXIT_INTERRUPTED)
    log.info("still cleaning up after %s; %s ignored", signal.Signals(_seen[0]).name,
                signal.Signals(signum).name)


def terminate_as_interrupt() -> None:
    """From now on the first SIGTERM raises :class:`Terminated` and the first SIGINT
    ``KeyboardInterrupt`` in the main thread; a second does not interrupt the cleanup."""
    _seen.clear()
    signal.signal(signal.SIGTERM, _on_stop_signal)
    signal.signal(signal.SIGINT, _on_stop_signal)


def stopping() -> bool:
    """Whether a stop signal arrived since :func:`terminate_as_interrupt` (cleanup is on)."""
    return bool(_seen)


def stop_self(reason: str, code: int = EXIT_TERMINATED) -> None:
    """Stop this process from a watcher thread: SIGTERM to itself, a hard exit as fallback."""
    _why.append(reason)
    log.warning("stopping: %s", reason)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(HARD_STOP_SECONDS)
    print(f"error: {reason} (stopped without cleanup)", file=sys.stderr, flush=True)
    os._exit(code)


def _parent_watch(parent: int, every: float) -> None:
    while os.getppid() == parent:
        time.sleep(every)
    stop_self(f"parent process {parent} is gone")


def watch_parent(every: float = 0.5) -> threading.Thread | None:
    """Stop this process when the parent named by ``GRIDCREDIT_PARENT_PID`` is gone."""
    text = os.environ.get(PARENT_ENV, "")
    if not text.isdigit():
        return None
    parent = int(text)
    if os.getppid() != parent:  # already orphaned before we started watching
        stop_self(f"parent process {parent} is gone")
    thread = threading.Thread(target=_parent_watch, args=(parent, every), name="watch-parent",
                              daemon=True)
    thread.start()
    return thread
