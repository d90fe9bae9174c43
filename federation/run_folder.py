"""Run folders (``simulate``, ``score``, ``screen``, ``stages``, ``synth``): refuse to clobber,
never delete what is not ours.

A run folder carries a marker file, ``.gridcredit-run.json``, listing every file the run
created (its status: ``running``, ``done`` or ``failed``). Opening a folder for a new run:

- a missing or empty folder is created and used;
- a folder with the marker is an earlier run folder: the files the marker lists are removed
  (with ``resume``, kept), everything else in it (a user's ``plots/mychart.png``) stays;
  never those the new run reads; a run of another command (``score`` into a ``simulate``
  folder) is refused, even with ``force`` (its CA, logs and report would be written over);
- any other non-empty folder is refused, unless ``force``; then nothing in it is deleted
  (files of the same names are overwritten);
- a path that is a file is refused with one line.

When the run ends, :meth:`RunFolder.failed` removes every output the run created (models,
predictions, statistics, report, plots) and keeps what helps to diagnose: node logs, audit
logs, the coordinator's ``job.json``, configs, certificates, input data and checkpoints; it
writes ``FAILED`` with the reason. :meth:`RunFolder.done` records the created files. A run
killed before either (SIGKILL) leaves the marker at ``running``; the next run treats the
files of the program's own layout, not present before that run, as the killed run's.
"""

from __future__ import annotations

import fnmatch
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from federation.protocol.errors import ConfigError, VflError
from federation.protocol.files import write_atomic

T = TypeVar("T")
MARKER = ".gridcredit-run.json"
FAILED = "FAILED"
NODES = ("coordinator", "grid", "bank")
# Kept after a failure, for diagnosis (and --resume): logs, configs, certificates, inputs.
KEEP_ON_FAILURE = ("*/node.log", "*/audit.jsonl", "coordinator/job.json", "*/checkpoint.json",
                   "configs/*", "certs/*", "data/*")
# What the program writes, for a run that was killed before it could list its files.
OWN_LAYOUT = ("report.json", "summary.md", FAILED, "plots/*.png", "configs/*.toml",
              "certs/*.pem", "certs/*.key", "data/*_features.csv", "lr/*",
              *(f"{node}/*" for node in NODES),
              "stages.json", "pre/*", "in/*", "post/*",  # stages
              "bank/*", "truth/*", "manifest.json")  # synth


def ensure_folder(path: Path, flag: str = "--out") -> Path:
    """Create ``path`` as a folder; a file in the way is a ConfigError naming the flag."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path}: is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot create the folder ({exc.strerror})") from None
    return path


def listing(root: Path) -> set[str]:
    """Every file and folder under ``root``, relative, folders with a trailing ``/``."""
    found: set[str] = set()
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        found.update(f"{(rel / d).as_posix()}/" for d in dirs)
        found.update((rel / f).as_posix() for f in files)
    found.discard(MARKER)
    return found


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name.rstrip("/"), p) for p in patterns)


def _remove(root: Path, names: set[str]) -> None:
    """Remove the listed files, then the listed folders that are left empty (deepest first)."""
    for name in sorted(n for n in names if not n.endswith("/")):
        path = root / name
        if path.is_file() or path.is_symlink():
            path.unlink()
    for name in sorted((n for n in names if n.endswith("/")), key=len, reverse=True):
        try:
            (root / name).rmdir()
        except OSError:
            pass  # not empty: something not ours is in it, or it is gone already


def stamp(root: Path, names: tuple[str, ...]) -> dict[str, tuple[int, int] | None]:
    """(inode, mtime) of each named file in ``root``, None where there is none."""
    stamps: dict[str, tuple[int, int] | None] = {}
    for name in names:
        try:
            st = (root / name).stat()
            stamps[name] = (st.st_ino, st.st_mtime_ns)
        except OSError:
            stamps[name] = None
    return stamps


def remove_written(root: Path, before: dict[str, tuple[int, int] | None]) -> None:
    """Remove each named file written since ``before`` (a :func:`stamp`): new or replaced.

    A node's outputs are written atomically (a new inode), so a file this run wrote differs
    from its stamp; one it did not touch keeps it and stays.
    """
    for name, old in before.items():
        now = stamp(root, (name,))[name]
        if now is not None and now != old:
            (root / name).unlink(missing_ok=True)


def _read_marker(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("program") == "gridcredit" else None


def _ours(root: Path, marker: dict[str, Any]) -> set[str]:
    """The files an earlier run created (from its list, or its layout if it was killed)."""
    if marker.get("status") in ("done", "failed"):
        return {str(n) for n in marker.get("files", [])}
    before = {str(n) for n in marker.get("before", [])}
    return {n for n in listing(root) - before if _matches(n, OWN_LAYOUT)}


def _refuse_removing_inputs(root: Path, names: set[str], reads: tuple[Path, ...]) -> None:
    """A ConfigError when removing ``names`` from ``root`` would touch something in ``reads``."""
    wanted = [p.resolve() for p in reads]
    for name in sorted(names):
        target = (root / name).resolve()
        for read in wanted:
            if target == read or read in target.parents or target in read.parents:
                raise ConfigError(
                    f"--out {root}: it holds {read}, which this run reads, and clearing the "
                    "earlier run there would remove it; choose another --out folder")


@dataclass
class RunFolder:
    """One run's folder: opened (checked, cleared of the earlier run), then done or failed."""

    path: Path
    command: str
    before: set[str] = field(default_factory=set)
    inherited: set[str] = field(default_factory=set)

    @classmethod
    def open(cls, path: Path, command: str, *, force: bool = False, resume: bool = False,
             reads: tuple[Path, ...] = ()) -> RunFolder:
        """Check ``path`` and make it ready for a new run (see the module docstring).

        ``reads`` are the files and folders the new run reads (its input data, the run it
        scores): an earlier run's file among them, or holding or inside one, is never removed.

        Raises
        ------
        ConfigError
            ``path`` is a file, cannot be created, is a non-empty folder that is not an
            earlier run folder of the same command (and ``force`` is not given), or clearing
            it would remove something in ``reads``.
        """
        if path.exists() and not path.is_dir():
            raise ConfigError(f"--out {path}: is a file, not a folder")
        inherited: set[str] = set()
        if path.is_dir():
            marker = _read_marker(path / MARKER)
            if marker is not None:
                ours = _ours(path, marker)
                other = str(marker.get("command", command))
                if resume:
                    inherited = ours - {FAILED}
                    _remove(path, {FAILED} & ours)
                else:
                    _refuse_removing_inputs(path, ours, reads)
                    if other != command:  # never cleared nor written over, --force or not:
                        raise ConfigError(  # a score would replace the run's CA and logs
                            f"--out {path}: holds a gridcredit {other} run; choose another "
                            f"folder for this {command}")
                    _remove(path, ours)
            elif any(path.iterdir()) and not force:
                raise ConfigError(
                    f"--out {path}: the folder exists and is not a gridcredit run folder; "
                    "choose a new or empty folder, or pass --force to write into it (nothing "
                    "in it is deleted)")
        ensure_folder(path)
        folder = cls(path, command, listing(path) - inherited, inherited)
        folder._mark("running")
        return folder

    def created(self) -> set[str]:
        """Files and folders this run (and an earlier run it resumed) created."""
        return (listing(self.path) - self.before) | (self.inherited & listing(self.path))

    def _mark(self, status: str, files: set[str] | None = None, reason: str = "") -> None:
        record: dict[str, Any] = {
            "program": "gridcredit", "command": self.command, "status": status,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "before": sorted(self.before),
            "files": sorted(files or set())}
        if reason:
            record["reason"] = reason
        write_atomic(self.path / MARKER, json.dumps(record, indent=1) + "\n")

    def done(self) -> None:
        """Record the files this run created; the folder is an earlier run folder from now."""
        self._mark("done", self.created())

    def failed(self, reason: str) -> None:
        """Remove the outputs this run created, keep logs, write ``FAILED`` with ``reason``."""
        created = self.created()
        outputs = {n for n in created if not _matches(n, KEEP_ON_FAILURE)}
        _remove(self.path, outputs)
        nodes = any(_matches(n, ("*/node.log",)) for n in created)
        write_atomic(self.path / FAILED, f"{self.command} failed: {reason}\n" + (
            "Each node's log is <node>/node.log, its audit log <node>/audit.jsonl; no model, "
            "prediction or report was kept.\n" if nodes else "None of its outputs was kept.\n"))
        self._mark("failed", self.created(), reason)


def in_run_folder(folder: RunFolder, job: Callable[[], T]) -> T:
    """Run ``job``; on any failure or interruption mark ``folder`` failed, then re-raise."""
    try:
        result = job()
        folder.done()  # inside: an interrupt while marking done fails the run, never leaves
    except BaseException as exc:  # it 'running' with its outputs
        folder.failed(_why(exc))
        raise
    return result


def _why(exc: BaseException) -> str:
    if isinstance(exc, (VflError, KeyboardInterrupt)) and str(exc):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"{type(exc).__name__}: {exc}"


def run_in(path: Path, command: str, force: bool, job: Callable[[], T]) -> T:
    """Open ``path`` for ``command`` (see :meth:`RunFolder.open`) and run ``job`` in it."""
    return in_run_folder(RunFolder.open(path, command, force=force), job)
