"""Peers whose certificate comes from another CA, has expired or names another role are refused.

Both directions are covered: a real party process refusing a coordinator that presents a
bad certificate (the client checks the chain, the validity and the role as TLS target
name), and a real coordinator process refusing callers with bad certificates (the TLS
layer checks chain and validity, ``require_role`` the common name). A node started with
a bad certificate of its own stops at start-up with one ``ConfigError`` line; the bypass
tests call the gRPC layer from this process to show the peer refuses it regardless.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from federation.coordinator import Coordinator
from federation.processes import NodeProcess
from federation.proto import vfl_pb2, vfl_pb2_grpc
from federation.protocol.errors import PeerUnavailable, ProtocolAbort
from federation.protocol.messages import JoinRequest, Role, TrainSettings
from federation.transport.audit import AuditLog
from federation.transport.certs import NodeCerts, write_client
from federation.transport.grpc_client import GrpcCoordinatorLink, secure_channel
from federation.transport.grpc_server import add_coordinator, start_server
from tests.conftest import REPO
from tests.e2e import nodes_helper as nh

pytestmark = pytest.mark.e2e
JOB = "tls-job"
CLIENT = "desk"  # a scoring client's certificate (gridcredit certs --client desk)
PARTY_DEADLINE = 2.0


@dataclass(frozen=True)
class Material:
    """The federation and its bad variants (one folder each, laid out like ``certs``)."""

    fed: Path
    another_ca: Path  # the federation's CA file, node certificates issued by another CA
    expired: Path  # the federation's CA, node certificates expired 10 days ago
    data: Path  # a small grid CSV
    config: Path  # [job] deadline = PARTY_DEADLINE


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    root = tmp_path_factory.mktemp("tls")
    fed = nh.federation(root / "fed")
    write_client(fed, CLIENT)
    rogue = nh.federation(root / "rogue")
    roles = ("coordinator", "grid", "bank")
    grid, _ = nh.write_party_csvs(root / "data", n=60)
    return Material(fed, nh.foreign_signed_copy(fed, rogue, root / "another_ca", roles),
                    nh.expired_copy(fed, root / "expired", roles), grid,
                    nh.job_toml(root / "party.toml", PARTY_DEADLINE))


@pytest.fixture(scope="module")
def coordinator(material: Material, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[NodeProcess]:
    """A real coordinator process with a valid certificate, waiting for parties to join."""
    node = nh.coordinator(tmp_path_factory.mktemp("coordinator"), material.fed, JOB)
    try:
        node.start()
        node.wait_listening(nh.START_TIMEOUT)
        yield node
    finally:
        node.stop()


def _assert_nobody_joined(coordinator: NodeProcess) -> None:
    events = []
    while not coordinator.events.empty():
        events.append(coordinator.events.get_nowait())
    assert not [e for e in events if e.get("event") == "joined"], events
    assert coordinator.returncode() is None, nh.tails([coordinator])


def _run_party(args: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "federation.cli", "party", *args],
                          check=False, capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else ""


# -- a party refuses a coordinator presenting a bad certificate --------------------------------
@contextmanager
def _fake_coordinator(folder: Path, presents: str, tmp_path: Path
                      ) -> Iterator[tuple[Coordinator, str]]:
    """An in-process coordinator server presenting ``folder``'s ``presents`` certificate."""
    certs = NodeCerts(folder / "ca.pem", folder / f"{presents}.pem", folder / f"{presents}.key")
    audit = AuditLog(tmp_path / "fake-coordinator" / "audit.jsonl", "coordinator")
    fake = Coordinator(JOB, TrainSettings(), barrier_timeout=5.0)
    server, port = start_server(certs, "127.0.0.1:0", add_coordinator(fake, audit))
    try:
        yield fake, f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None).wait(5)
        audit.close()


BAD_SERVER = [("another_ca", "coordinator", "certificate signature failure"),
              ("expired", "coordinator", "certificate has expired"),
              ("fed", "bank", "Hostname Verification Check failed")]
BAD_SERVER_IDS = ["another_ca", "expired", "names_another_role"]


@pytest.mark.parametrize("variant,presents,reason", BAD_SERVER, ids=BAD_SERVER_IDS)
def test_party_refuses_a_coordinator_whose_certificate_is_bad(
        material: Material, tmp_path: Path, variant: str, presents: str, reason: str) -> None:
    with _fake_coordinator(getattr(material, variant), presents, tmp_path) as (fake, address):
        result = _run_party(["--role", "grid", "--config", str(material.config),
                             "--job-id", JOB, "--coordinator", address,
                             "--out", str(tmp_path / "grid"), "--tls-dir", str(material.fed),
                             "--data", str(material.data)])
    line = _last_line(result)
    assert result.returncode != 0, result.stderr[-2000:]
    # The error names the peer (role and address) and carries the TLS layer's reason.
    assert line.startswith(f"error: join at the coordinator ({address}): "), line
    assert reason in line, line
    assert fake.stage.value == "register" and not (tmp_path / "grid" / "model.json").exists()


# -- a node whose own certificate is bad stops at start-up -------------------------------------
@pytest.mark.parametrize("role,presents", [("grid", "bank"), ("bank", "coordinator"),
                                           ("coordinator", "grid")])
def test_node_started_with_a_certificate_naming_another_role_stops_at_start(
        material: Material, tmp_path: Path, role: str, presents: str) -> None:
    tls = nh.swapped_copy(material.fed, tmp_path / "tls", role, presents)
    if role == "coordinator":
        args = ["coordinator", "--job-id", JOB, "--out", str(tmp_path / "node"),
                "--tls-dir", str(tls)]
    else:
        args = ["party", "--role", role, "--job-id", JOB, "--coordinator", "127.0.0.1:9",
                "--out", str(tmp_path / "node"), "--tls-dir", str(tls), "--data",
                str(material.data)]
    result = subprocess.run([sys.executable, "-m", "federation.cli", *args], check=False,
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "LISTENING" not in result.stdout
    assert _last_line(result) == (f"error: TLS: certificate {tls / f'{role}.pem'} names role "
                                  f"{presents!r}, this node is {role!r}")


def test_node_started_with_an_expired_certificate_stops_at_start(
        material: Material, tmp_path: Path) -> None:
    result = _run_party(["--role", "grid", "--job-id", JOB, "--coordinator", "127.0.0.1:9",
                         "--out", str(tmp_path / "grid"), "--tls-dir", str(material.expired),
                         "--data", str(material.data)])
    assert result.returncode == 2, result.stderr[-2000:]
    assert "LISTENING" not in result.stdout
    line = _last_line(result)
    assert line.startswith(f"error: TLS: certificate {material.expired / 'grid.pem'} is not "
                           "valid now (valid "), line


def test_party_started_with_a_certificate_from_another_ca_stops_at_start(
        material: Material, coordinator: NodeProcess, tmp_path: Path) -> None:
    result = _run_party(["--role", "grid", "--config", str(material.config), "--job-id", JOB,
                         "--coordinator", coordinator.address, "--out", str(tmp_path / "grid"),
                         "--tls-dir", str(material.another_ca), "--data", str(material.data)])
    _assert_nobody_joined(coordinator)
    assert result.returncode == 2, result.stderr[-2000:]
    assert _last_line(result) == (f"error: TLS: certificate {material.another_ca / 'grid.pem'} "
                                  f"was not issued by the CA in {material.another_ca / 'ca.pem'}")


# -- the coordinator refuses callers with bad certificates (bypassing the local check) ---------
def _join_raw(address: str, certs: NodeCerts, claims: str) -> grpc.RpcError:
    channel = secure_channel(address, certs, Role.COORDINATOR)
    try:
        stub = vfl_pb2_grpc.CoordinatorStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Join(vfl_pb2.JoinRequest(job_id=JOB, role=claims, address="127.0.0.1:1",
                                          n_rows=60, n_columns=5), timeout=10)
        return info.value
    finally:
        channel.close()


def _link(address: str, certs: NodeCerts, role: Role, tmp_path: Path) -> GrpcCoordinatorLink:
    audit = AuditLog(tmp_path / f"{role.value}-audit.jsonl", role.value)
    return GrpcCoordinatorLink(role, address, certs, audit, deadline=PARTY_DEADLINE,
                               barrier_wait=10.0)


@pytest.mark.parametrize("presents,claims,details", [
    ("bank", "grid", "request claims role 'grid' but the certificate names bank"),
    ("coordinator", "grid",
     "certificate names role 'coordinator'; this service accepts grid, bank"),
    ("coordinator", "bank",
     "certificate names role 'coordinator'; this service accepts grid, bank"),
])
def test_coordinator_refuses_a_caller_whose_certificate_names_another_role(
        material: Material, coordinator: NodeProcess, tmp_path: Path, presents: str,
        claims: str, details: str) -> None:
    certs = NodeCerts.in_dir(material.fed, Role(presents))
    error = _join_raw(coordinator.address, certs, claims)
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED, error
    assert error.details() == details
    link = _link(coordinator.address, certs, Role(claims), tmp_path)
    try:
        with pytest.raises(ProtocolAbort) as info:
            link.join(JoinRequest(JOB, Role(claims), "127.0.0.1:1", 60, 5))
    finally:
        link.close()
    assert str(info.value) == f"join at the coordinator ({coordinator.address}): {details}"
    _assert_nobody_joined(coordinator)


@pytest.mark.parametrize("variant", ["another_ca", "expired"])
def test_coordinator_refuses_a_caller_whose_certificate_is_foreign_or_expired(
        material: Material, coordinator: NodeProcess, variant: str) -> None:
    certs = NodeCerts.in_dir(getattr(material, variant), Role.GRID)
    error = _join_raw(coordinator.address, certs, "grid")
    # The handshake fails: nothing reached the servicer.
    assert error.code() is grpc.StatusCode.UNAVAILABLE, error
    _assert_nobody_joined(coordinator)




@pytest.mark.parametrize("side,variant,presents", [
    ("server", "another_ca", "coordinator"),
    ("server", "expired", "coordinator"),
    pytest.param("server", "fed", "bank"),
    pytest.param("client", "another_ca", "grid"),
    pytest.param("client", "expired", "grid"),
], ids=["coordinator_another_ca", "coordinator_expired", "coordinator_names_another_role",
        "own_another_ca", "own_expired"])
def test_refused_tls_handshake_is_explained_as_such(
        material: Material, coordinator: NodeProcess, tmp_path: Path, side: str, variant: str,
        presents: str) -> None:
    """A party's error says TLS refused the handshake, whichever side's certificate is bad."""
    folder = getattr(material, variant)
    with _fake_coordinator(folder, presents, tmp_path) as (_, fake_address):
        if side == "server":
            address, certs = fake_address, NodeCerts.in_dir(material.fed, Role.GRID)
        else:
            address, certs = coordinator.address, NodeCerts.in_dir(folder, Role.GRID)
        link = GrpcCoordinatorLink(Role.GRID, address, certs,
                                   AuditLog(tmp_path / "grid-audit.jsonl", "grid"),
                                   deadline=0.5, barrier_wait=10.0)
        try:
            with pytest.raises(PeerUnavailable) as info:
                link.join(JoinRequest(JOB, Role.GRID, "127.0.0.1:1", 60, 5))
        finally:
            link.close()
    message = str(info.value)
    assert message.startswith(f"join at the coordinator ({address}): "), message
    assert "TLS handshake refused" in message, message
    _assert_nobody_joined(coordinator)


# -- a scoring client's certificate is good for the bank's Score only -------------------------
def test_coordinator_refuses_a_scoring_client_certificate(
        material: Material, coordinator: NodeProcess) -> None:
    error = _join_raw(coordinator.address, NodeCerts.for_client(material.fed, CLIENT), "grid")
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED, error
    assert error.details() == (f"certificate names role 'client:{CLIENT}'; this service "
                               "accepts grid, bank")
    _assert_nobody_joined(coordinator)


def test_party_node_refuses_a_scoring_client_certificate(
        material: Material, tmp_path: Path) -> None:
    """A real grid party (joined to its own coordinator) refuses Party.Send from a client."""
    job = "client-refusal"
    boss = nh.coordinator(tmp_path / "coordinator", material.fed, job)
    nodes = [boss]
    try:
        boss.start()
        grid = nh.party("grid", tmp_path / "grid", material.fed, job,
                        boss.wait_listening(nh.START_TIMEOUT), material.data)
        nodes.append(grid)
        grid.start()
        address = grid.wait_listening(nh.START_TIMEOUT)
        channel = secure_channel(address, NodeCerts.for_client(material.fed, CLIENT), Role.GRID)
        try:
            with pytest.raises(grpc.RpcError) as info:
                vfl_pb2_grpc.PartyStub(channel).Send(vfl_pb2.DeliverRequest(chunk=b"x"),
                                                     timeout=10)
        finally:
            channel.close()
        assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED, nh.tails(nodes)
        assert info.value.details() == (f"certificate names role 'client:{CLIENT}'; this "
                                        "service accepts bank")
    finally:
        nh.stop_all(nodes)


@pytest.mark.parametrize("verbosity", [None, "INFO"])
def test_a_wrong_ca_handshake_is_our_one_line_without_grpc_log_lines(
        material: Material, tmp_path: Path, verbosity: str | None) -> None:
    """gRPC's C core logged two ``I... Handshake failed`` lines before our error; a node now
    sets GRPC_VERBOSITY=ERROR unless the user set it (then their choice stands)."""
    env = {k: v for k, v in os.environ.items() if k not in ("GRPC_VERBOSITY", "GRPC_TRACE")}
    if verbosity is not None:
        env["GRPC_VERBOSITY"] = verbosity
    with _fake_coordinator(material.another_ca, "coordinator", tmp_path) as (_, address):
        result = subprocess.run(
            [sys.executable, "-m", "federation.cli", "party", "--role", "grid", "--config",
             str(material.config), "--job-id", JOB, "--coordinator", address, "--out",
             str(tmp_path / "grid"), "--tls-dir", str(material.fed), "--data",
             str(material.data)], capture_output=True, text=True, timeout=60, cwd=REPO, env=env)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and lines[-1].startswith("error: join at the coordinator")
    if verbosity is None:
        assert lines == lines[-1:], result.stderr
    else:  # the user's own setting is kept: gRPC's handshake lines are theirs to see
        assert any("Handshake failed" in line for line in lines[:-1]), result.stderr
