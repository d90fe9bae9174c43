"""Writing a file atomically with a stated confidentiality: the one place that says which
files are private and which are for colleagues.

**Confidential** (``CONFIDENTIAL``, 0600: only the owner reads them): private keys, models
and their coefficient tables, predictions and scores, checkpoints, each node's statistics
and job summary, configuration files, node logs (an error line may name a file, a row and
a cell's value), monitoring alerts, stage input tables and anything in a party's own
folder. **For colleagues** (``SHARED``, 0644): reports (``report.json``, ``metrics.json``
of ``evaluate``), summaries (``summary.md``), plots, screening selections, stage summaries,
data dictionaries and certificates (public keys). When in doubt a writer uses
``CONFIDENTIAL``. The README's run-folder section states the split too. Plots are written
by matplotlib (0666 narrowed by the umask); the indicator library (``parties.labels``, which
may not import this) keeps its own atomic writer. So that neither they nor a folder (0777
narrowed by the umask) depend on the user's umask, the command line masks group and other
write for its run (:func:`mask_shared_writes`): under ``umask 000`` plots are still 0644 and
folders 0755, never writable by others.

How: the bytes go to a fresh temporary file in the same folder, created by
``os.open(O_CREAT | O_EXCL | O_NOFOLLOW)`` with its final mode (never readable by others
first, never through a link planted at its name; the umask can only narrow the mode), are
synced, then renamed over the target (``os.replace`` swaps a link at the target itself
rather than writing through it). Readers see the old file or the whole new one.
Lives in ``federation.protocol`` because it is the lowest layer the transport (keys), the
parties (models, predictions) and the command line (reports) all import.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TextIO

CONFIDENTIAL = 0o600
SHARED = 0o644
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
_TRIES = 100


def mask_shared_writes() -> int:
    """Add group and other write to the process umask (it only ever narrows modes); returns
    the previous umask for the caller to restore."""
    previous = os.umask(0o022)
    os.umask(previous | 0o022)
    return previous


def _temporary(path: Path, mode: int) -> tuple[int, Path]:
    """A new file next to ``path`` opened for writing with ``mode``; retries a taken name."""
    for _ in range(_TRIES):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, _CREATE, mode), tmp
        except FileExistsError:  # a leftover, a race or a planted link: never reuse it
            continue
    raise FileExistsError(f"no free temporary name next to {path} after {_TRIES} tries")


def write_atomic(path: Path, data: bytes | str, mode: int = CONFIDENTIAL) -> None:
    """Write ``data`` (str as UTF-8) to ``path`` atomically, the file created with ``mode``
    (``CONFIDENTIAL`` or ``SHARED``, narrowed by the umask), creating missing folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = _temporary(path, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def open_log(path: Path, append: bool = False) -> TextIO:
    """``path`` opened for writing as a confidential log (truncated unless ``append``;
    never through a link)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    keep = os.O_APPEND if append else os.O_TRUNC
    flags = os.O_WRONLY | os.O_CREAT | keep | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, CONFIDENTIAL)
    os.fchmod(fd, CONFIDENTIAL)  # an existing log keeps its old mode otherwise
    return os.fdopen(fd, "w", encoding="utf-8")
