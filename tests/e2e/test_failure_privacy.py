"""A party's failure details stay with the party (issue 9, item 6).

The grid's CSV holds a malformed cell whose text is a secret ('ACME-secret-42'). The grid
fails loading it; its own console line names the file, row, column and value, as any
input error does. What it tells the coordinator, and what the coordinator relays to the
bank, is the kind of failure and the node only: no file of the bank's or the
coordinator's folder (console log, events, job summary, audit log) and none of their
EVENT lines holds the secret or the grid's path.
"""

from __future__ import annotations

import json
import queue
import time
from pathlib import Path

import pytest

from federation.transport.certs import write_federation
from tests.e2e import nodes_helper as nh

pytestmark = pytest.mark.e2e
SECRET = "ACME-secret-42"
JOB = "leaky-cell"


def _events(node: nh.NodeProcess) -> str:
    lines = []
    while True:
        try:
            lines.append(json.dumps(node.events.get_nowait()))
        except queue.Empty:
            return "\n".join(lines)


def test_a_bad_cell_at_the_grid_reaches_neither_the_bank_nor_the_coordinator(
        tmp_path: Path) -> None:
    grid_csv, bank_csv = nh.write_party_csvs(tmp_path / "data", n=400)
    lines = grid_csv.read_text().splitlines()
    cells = lines[100].split(",")
    cells[3] = SECRET
    lines[100] = ",".join(cells)
    grid_csv.write_text("\n".join(lines) + "\n")
    certs = tmp_path / "certs"
    write_federation(certs)
    coordinator = nh.coordinator(tmp_path / "coordinator", certs, JOB, "--batch-size", "64",
                                 "--deadline", "5")
    nodes = {"coordinator": coordinator}
    try:
        coordinator.start()
        address = coordinator.wait_listening(nh.START_TIMEOUT)
        for role, data in (("bank", bank_csv), ("grid", grid_csv)):
            nodes[role] = nh.party(role, tmp_path / role, certs, JOB, address, data)
            nodes[role].start()
        exited = nh.wait_exits(nodes.values(), time.monotonic(), 90)
        context = nh.tails(nodes.values())
        assert set(exited) == set(nodes), context
        events = {name: _events(node) for name, node in nodes.items()}
    finally:
        nh.stop_all(nodes.values())
    assert all(node.returncode() not in (None, 0) for node in nodes.values()), context
    grid_line = nh.error_line(nodes["grid"])  # the grid's own console keeps the details
    assert SECRET in grid_line and str(grid_csv) in grid_line, context
    for name in ("bank", "coordinator"):
        line = nh.error_line(nodes[name])
        assert "grid" in line and "input data invalid" in line, context
        assert "details in the grid's console and node.log" in line, context
        texts = {str(p): p.read_text(encoding="utf-8", errors="replace")
                 for p in (tmp_path / name).rglob("*") if p.is_file()}
        texts["EVENT lines"] = events[name]
        assert any("input data invalid" in t for t in texts.values())
        for where, text in texts.items():
            assert SECRET not in text, (where, text[-2000:])
            assert str(grid_csv) not in text and "grid.csv" not in text, (where, text[-2000:])
