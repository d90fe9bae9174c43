"""federation.protocol.files: files are born with their final mode, never through a link
(issue 9, item 5)."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from federation.protocol import files
from federation.protocol.files import CONFIDENTIAL, SHARED, open_log, write_atomic
from federation.transport.certs import write_federation

_watched: list[Path] = []
_seen: list[str] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """Before every open, chmod and rename: is any key-bearing file readable by others?"""
    if not _watched or event not in ("open", "os.chmod", "os.rename", "os.replace"):
        return
    for path in _watched[0].iterdir():
        if "key" in path.name and path.is_file() and not path.is_symlink():
            mode = stat.S_IMODE(path.lstat().st_mode)
            if mode & 0o077:
                _seen.append(f"{path.name} was {oct(mode)} at {event}")


sys.addaudithook(_audit)


@pytest.fixture
def umask_zero() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_private_keys_are_never_readable_by_others_even_with_umask_0(
        tmp_path: Path, umask_zero: None) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    _watched.append(certs)
    try:
        write_federation(certs)
    finally:
        _watched.clear()
    assert not _seen, _seen
    for path in certs.iterdir():
        want = CONFIDENTIAL if path.suffix == ".key" else SHARED
        assert stat.S_IMODE(path.stat().st_mode) == want, path


def test_a_link_planted_at_the_old_temporary_name_is_not_followed(tmp_path: Path) -> None:
    certs, victim = tmp_path / "certs", tmp_path / "victim.txt"
    certs.mkdir()
    victim.write_text("untouched")
    os.symlink(victim, certs / "ca.key.tmp")
    write_federation(certs)
    assert victim.read_text() == "untouched"
    assert not (certs / "ca.key").is_symlink()
    assert stat.S_IMODE((certs / "ca.key").stat().st_mode) == CONFIDENTIAL


def test_a_link_at_the_temporary_path_is_skipped_not_followed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    victim, target = tmp_path / "victim.txt", tmp_path / "model.json"
    victim.write_text("untouched")
    names = iter(["aaaaaaaaaaaa", "bbbbbbbbbbbb"])
    monkeypatch.setattr(files.secrets, "token_hex", lambda n: next(names))
    os.symlink(victim, tmp_path / ".model.json.aaaaaaaaaaaa.tmp")  # the first name it tries
    write_atomic(target, '{"weights": [1.5]}')
    assert victim.read_text() == "untouched"
    assert target.read_text() == '{"weights": [1.5]}' and not target.is_symlink()
    assert stat.S_IMODE(target.stat().st_mode) == CONFIDENTIAL
    assert not (tmp_path / ".model.json.bbbbbbbbbbbb.tmp").exists()


def test_a_link_at_the_target_is_replaced_not_written_through(tmp_path: Path) -> None:
    victim, target = tmp_path / "victim.txt", tmp_path / "predictions.csv"
    victim.write_text("untouched")
    os.symlink(victim, target)
    write_atomic(target, b"id,probability\n")
    assert victim.read_text() == "untouched" and not target.is_symlink()


@pytest.mark.parametrize("mode", [CONFIDENTIAL, SHARED])
def test_an_existing_file_takes_the_new_mode(tmp_path: Path, mode: int,
                                             umask_zero: None) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")
    os.chmod(target, 0o666)
    write_atomic(target, "new", mode)
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == mode
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary left


def test_a_node_log_is_private_and_not_written_through_a_link(tmp_path: Path,
                                                              umask_zero: None) -> None:
    log = tmp_path / "node.log"
    log.write_text("old")
    os.chmod(log, 0o644)
    with open_log(log) as handle:
        handle.write("error: row 3, column 'g2': non-numeric value 'x'\n")
    assert stat.S_IMODE(log.stat().st_mode) == CONFIDENTIAL and "old" not in log.read_text()
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    os.symlink(victim, tmp_path / "linked.log")
    with pytest.raises(OSError):
        open_log(tmp_path / "linked.log")
    assert victim.read_text() == "untouched"
