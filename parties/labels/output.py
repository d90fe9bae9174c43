"""Atomic writing of output files.

What it does: writes CSV, JSON and text outputs to a temporary file in the target directory
and renames it over the target with ``os.replace``, so an interrupted or failed run leaves
either the old file or none, never a half-written one.

What it assumes: the target directory is on one filesystem (``os.replace`` is atomic there).
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from collections.abc import Callable
from typing import IO, Any

import pandas as pd  # type: ignore[import-untyped, unused-ignore]


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def write_atomic(path: pathlib.Path, write: Callable[[IO[str]], object]) -> pathlib.Path:
    """Call ``write`` on a temp file beside ``path``, then rename it to ``path``.

    Parameters
    ----------
    path
        The target; its parent directory is created if missing.
    write
        Writes the whole content to the open text stream it is given.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as stream:
            write(stream)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_csv(path: pathlib.Path, frame: pd.DataFrame) -> pathlib.Path:
    """Write ``frame`` (no index) as UTF-8 CSV, atomically; floats keep full precision."""
    return write_atomic(path, lambda s: frame.to_csv(s, index=False, lineterminator="\n"))


def write_json(path: pathlib.Path, obj: Any) -> pathlib.Path:
    """Write ``obj`` as indented JSON, atomically."""
    return write_atomic(path, lambda s: s.write(json.dumps(obj, indent=2, ensure_ascii=False)))


def write_text(path: pathlib.Path, text: str) -> pathlib.Path:
    """Write ``text`` atomically."""
    return write_atomic(path, lambda s: s.write(text))
