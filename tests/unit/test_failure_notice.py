"""What a failing node tells the others: the kind of failure, never its message (issue 9,
item 6): an input error's line names the file, row, column and the cell's value."""

from __future__ import annotations

import pytest

from federation.protocol.errors import (
    ConfigError,
    InputDataError,
    PeerUnavailable,
    ProtocolAbort,
    StageError,
    TrainingDiverged,
    VflError,
    failure_notice,
)

DETAIL = "/home/ops/grid.csv: row 101, column 'g2': non-numeric value 'ACME-secret-42'"


@pytest.mark.parametrize(("error", "kind"), [
    (InputDataError, "input data invalid"),
    (ConfigError, "configuration invalid"),
    (TrainingDiverged, "training diverged (try a smaller learning rate)"),
    (StageError, "protocol step out of order"),
    (ProtocolAbort, "protocol check failed"),
    (PeerUnavailable, "a peer or the coordinator did not answer"),
    (VflError, "failed"),
])
def test_the_notice_holds_the_kind_and_the_node_not_the_message(error: type[VflError],
                                                                 kind: str) -> None:
    notice = failure_notice("grid", error(DETAIL))
    assert notice == f"{kind} (details in the grid's console and node.log)"
    assert "ACME" not in notice and "/home" not in notice and "101" not in notice


def test_a_silent_node_is_named() -> None:
    exc = PeerUnavailable("grid at 127.0.0.1:4711 did not answer within 5 s (bank, round 3)")
    assert failure_notice("bank", exc).startswith("grid did not answer (details in the bank's")
