"""``gridcredit monitor --out``: the monitor's persistent folder, marked and locked.

Unlike a ``simulate`` run folder (:mod:`federation.run_folder`), a monitor folder is state
kept across runs: a restarted bank skips its completed months and writes no alert twice, so
nothing in it is ever cleared. Opening it:

- a missing or empty folder is created and marked with the run folder's marker file
  (``.gridcredit-run.json``, ``"command": "monitor"``), which the grid and the bank share
  when they are given the same ``--out``;
- a folder with that marker is an earlier monitor folder and is used as it is; so is (and
  gets the marker) a folder written before the marker existed: only the monitor's own
  names in it (:data:`LAYOUT`) and a ``periods/`` or ``grid_periods/`` folder;
- any other non-empty folder (a user's own ``alerts.jsonl``, a ``simulate`` run folder) is
  refused with one line, and nothing in it is touched;
- each node then holds an exclusive lock (``fcntl.flock`` on ``.<role>_monitor.lock``) for
  its whole life: a second node of the same role on the same folder is refused instead of
  interleaving its audit log and alerts with the first's.

Assumes: a POSIX file system with ``flock`` (a lock dies with its process, so a killed node
leaves no stale lock).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import IO

from federation.protocol.errors import ConfigError
from federation.protocol.files import write_atomic
from federation.run_folder import MARKER, ensure_folder

COMMAND = "monitor"
# What a monitor writes in --out (a folder of only these, with periods/ or grid_periods/,
# is an earlier monitor's from before the marker).
LAYOUT = frozenset({"periods", "grid_periods", "alerts.jsonl", "outbox.jsonl",
                    "bank_monitor_audit.jsonl", "grid_monitor_audit.jsonl",
                    ".bank_monitor.lock", ".grid_monitor.lock"})


def _unmarked_monitor_folder(path: Path) -> bool:
    names = {p.name for p in path.iterdir()}
    return names <= LAYOUT and bool(names & {"periods", "grid_periods"}) and \
        all((path / n).is_dir() for n in names & {"periods", "grid_periods"})


def is_monitor_folder(path: Path) -> bool:
    """Whether ``path`` holds the marker of a monitor folder."""
    try:
        data = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("program") == "gridcredit" and \
        data.get("command") == COMMAND


def check_monitor_folder(path: Path) -> None:
    """Refuse ``path`` unless it is missing, an empty folder or a monitor folder (no I/O
    beyond reading it).

    Raises
    ------
    ConfigError
        ``path`` is a file, or a non-empty folder that is not a monitor folder.
    """
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path}: is a file, not a folder")
    if path.is_dir() and not is_monitor_folder(path) and any(path.iterdir()) and \
            not _unmarked_monitor_folder(path):
        raise ConfigError(f"--out {path}: the folder exists, is not empty and is not a "
                          "gridcredit monitor folder; choose a new or empty folder (nothing "
                          "in it was changed)")


class MonitorFolder:
    """An opened monitor folder: marked, and locked for one role until :meth:`close`."""

    def __init__(self, path: Path, role: str) -> None:
        check_monitor_folder(path)
        ensure_folder(path)
        if not is_monitor_folder(path):
            write_atomic(path / MARKER, json.dumps(
                {"program": "gridcredit", "command": COMMAND,
                 "note": "a monitor's state folder: completed months and alerts are kept "
                         "across runs"}, indent=1) + "\n")
        self.path = path
        self.lock_path = path / f".{role}_monitor.lock"
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        self._lock: IO[str] | None = os.fdopen(fd, "r+", encoding="utf-8")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise ConfigError(f"--out {path}: another {role} monitor is running on this "
                              f"folder (it holds {self.lock_path.name}); stop it or choose "
                              "another folder") from None
        self._lock.truncate(0)
        self._lock.write(f"{os.getpid()}\n")
        self._lock.flush()

    def close(self) -> None:
        """Release the lock (the lock file stays: removing it would race a new node)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None
