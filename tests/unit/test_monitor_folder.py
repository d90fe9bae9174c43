"""federation.monitor_folder: the monitor's --out is marked, user folders are refused
untouched, and one node per role holds it at a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from federation.monitor_folder import MonitorFolder, is_monitor_folder
from federation.protocol.errors import ConfigError
from federation.run_folder import MARKER


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_new_or_empty_folder_is_marked_and_reopened(tmp_path: Path) -> None:
    for path in (tmp_path / "new" / "monitor", tmp_path / "empty"):
        if path.name == "empty":
            path.mkdir()
        folder = MonitorFolder(path, "bank")
        folder.close()
        assert is_monitor_folder(path)
        (path / "alerts.jsonl").write_text("{}\n")  # the monitor's own state
        MonitorFolder(path, "bank").close()  # resumed, not refused
        assert (path / "alerts.jsonl").read_text() == "{}\n"


@pytest.mark.parametrize("marker", [None, {"program": "gridcredit", "command": "simulate",
                                           "status": "done", "files": []}])
def test_a_foreign_non_empty_folder_is_refused_untouched(tmp_path: Path,
                                                         marker: dict[str, object] | None
                                                         ) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "alerts.jsonl").write_text('{"mine": true}\n')
    (mine / "notes.txt").write_text("keep\n")
    if marker is not None:
        (mine / MARKER).write_text(json.dumps(marker))
    before = _snapshot(mine)
    with pytest.raises(ConfigError, match=r"--out .*mine: .*not a gridcredit monitor folder"):
        MonitorFolder(mine, "bank")
    assert _snapshot(mine) == before


def test_a_file_as_out_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        MonitorFolder(path, "bank")


def test_one_node_per_role_holds_the_folder(tmp_path: Path) -> None:
    first = MonitorFolder(tmp_path / "m", "bank")
    try:
        with pytest.raises(ConfigError, match="another bank monitor is running"):
            MonitorFolder(tmp_path / "m", "bank")
        MonitorFolder(tmp_path / "m", "grid").close()  # grid and bank may share --out
    finally:
        first.close()
    MonitorFolder(tmp_path / "m", "bank").close()  # released with its holder


def test_a_monitor_folder_from_before_the_marker_is_resumed_and_marked(tmp_path: Path) -> None:
    old = tmp_path / "old"
    (old / "periods" / "2022-07").mkdir(parents=True)
    (old / "alerts.jsonl").write_text("{}\n")
    (old / "bank_monitor_audit.jsonl").write_text("")
    MonitorFolder(old, "bank").close()
    assert is_monitor_folder(old) and (old / "alerts.jsonl").read_text() == "{}\n"
    mixed = tmp_path / "mixed"  # the monitor's names and the user's own file: refused
    (mixed / "periods").mkdir(parents=True)
    (mixed / "alerts.jsonl").write_text("{}\n")
    (mixed / "notes.txt").write_text("mine\n")
    with pytest.raises(ConfigError, match="not a gridcredit monitor folder"):
        MonitorFolder(mixed, "bank")
    assert sorted(p.name for p in mixed.iterdir()) == ["alerts.jsonl", "notes.txt", "periods"]
