"""A party's calls to the coordinator: a 'sent' entry per delivery, errors explained right.

An attempt that failed mid-call may have reached a coordinator that died before answering;
its restarted successor then logs the retry as a second delivery, and the audit cross-check
needs a 'sent' entry for each (bench/chaos.py's ``restart`` fault found the missing one).
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from federation.proto import vfl_pb2
from federation.protocol.errors import PeerUnavailable
from federation.protocol.messages import Role
from federation.transport.audit import AuditLog
from federation.transport.audit_check import read_entries
from federation.transport.certs import NodeCerts, write_federation
from federation.transport.grpc_client import GrpcCoordinatorLink, _explain

RESET = "Stream removed (Socket closed)"  # what a coordinator killed mid-call gives
REFUSED = ("failed to connect to all addresses; last error: UNAVAILABLE: "
           "ipv4:127.0.0.1:9: Connection refused")  # no coordinator listening yet


class Unavailable(grpc.RpcError):
    def __init__(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return self._details


def _link(tmp_path: Path) -> tuple[GrpcCoordinatorLink, AuditLog, Path]:
    write_federation(tmp_path / "certs")
    path = tmp_path / "grid" / "audit.jsonl"
    audit = AuditLog(path, "grid", job="job-1")
    link = GrpcCoordinatorLink(Role.GRID, "127.0.0.1:1", NodeCerts.in_dir(tmp_path / "certs",
                               Role.GRID), audit, deadline=5.0, barrier_wait=1.0)
    return link, audit, path


def _sent(path: Path) -> list[dict[str, object]]:
    return [e for _, e in read_entries(path) if e["direction"] == "sent"]


@pytest.mark.parametrize("failures,entries", [
    ([RESET], 2),  # may have arrived: the retry is a second delivery
    ([REFUSED, REFUSED], 1),  # never left: one message, one entry
    ([REFUSED, RESET, REFUSED], 2),
])
def test_each_attempt_that_may_have_arrived_has_its_sent_entry(
        tmp_path: Path, failures: list[str], entries: int) -> None:
    link, audit, path = _link(tmp_path)
    calls: list[float] = []

    def join(request: object, timeout: float) -> vfl_pb2.JoinReply:
        calls.append(timeout)
        if len(calls) <= len(failures):
            raise Unavailable(failures[len(calls) - 1])
        return vfl_pb2.JoinReply(job_id="job-1")

    request = vfl_pb2.JoinRequest(job_id="job-1", role="grid", n_rows=3)
    link._rpc("join", 0, "job-1", request, join, timeout=1.0, retry_for=30.0)
    audit.close()
    link.close()
    sent = _sent(path)
    assert len(calls) == len(failures) + 1
    assert [e["step"] for e in sent] == ["join"] * entries
    assert len({e["sha256"] for e in sent}) == 1
    assert link.bytes_sent == entries * len(request.SerializeToString(deterministic=True))


def test_a_call_that_is_not_retried_has_one_sent_entry(tmp_path: Path) -> None:
    link, audit, path = _link(tmp_path)

    def deal(request: object, timeout: float) -> vfl_pb2.JoinReply:
        raise Unavailable(RESET)

    with pytest.raises(PeerUnavailable, match="deal at the coordinator"):
        link._rpc("deal", 1, "job-1", vfl_pb2.JoinRequest(job_id="job-1"), deal,
                  timeout=1.0, retry_for=0.0)
    audit.close()
    link.close()
    assert [e["step"] for e in _sent(path)] == ["deal"]


@pytest.mark.parametrize("details,says", [
    # a coordinator killed or restarted during a call (bench/chaos.py, restart fault)
    (RESET, "closed mid-call"),
    ("Stream removed", "closed mid-call"),
    # the server refusing our certificate in a TLS 1.3 handshake
    ("Socket closed", "TLS handshake refused"),
    ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:9: "
     "Ssl handshake failed", "TLS handshake refused"),
    (REFUSED, "unreachable"),
])
def test_a_peer_lost_mid_call_is_not_blamed_on_certificates(details: str, says: str) -> None:
    assert says in _explain(grpc.StatusCode.UNAVAILABLE, details)
