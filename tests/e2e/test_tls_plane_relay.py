"""A relay in front of a party's TLS data plane (``GRIDCREDIT_DATA_PLANE_ADVERTISE``).

A party may name another port than its listening one in its ``Party.DataPlane`` answer: the
port of a forwarder in front of its data plane (the chaos harness's fault proxy,
``bench/chaos_proxy.py``). Shown with a real bank (gRPC server and data plane) behind that
proxy, ports chosen at run time: the grid reaches the bank's data plane through the proxy,
TLS end to end (the proxy relays ciphertext only); a byte flipped by the proxy fails the
bank's job at once with one line naming the grid; a bad setting is refused in one line (a
party node too, before it listens).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from bench.chaos_proxy import FaultProxy
from federation.protocol.errors import ConfigError, PeerUnavailable, VflError
from federation.protocol.messages import Envelope, Role, Tag
from federation.transport.audit import AuditLog
from federation.transport.certs import NodeCerts, write_federation
from federation.transport.channel import Inbox
from federation.transport.data_plane import (
    DATA_PLANE_ADVERTISE_ENV,
    advertised_port,
    open_channel,
)
from federation.transport.grpc_server import add_party, start_server
from federation.transport.tls_plane import DataListener, TlsChannel
from tests.conftest import REPO
from tests.e2e.stream_peer import payload

pytestmark = pytest.mark.e2e
JOB = "job-relay"
DEADLINE = 10.0


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fed")
    write_federation(directory)
    return directory


def test_the_advertised_port_is_the_listening_one_unless_set(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_PLANE_ADVERTISE_ENV, raising=False)
    assert advertised_port(43210) == 43210
    monkeypatch.setenv(DATA_PLANE_ADVERTISE_ENV, "5001")
    assert advertised_port(43210) == 5001
    for bad in ("http", "0", "70000", "-3", ""):
        monkeypatch.setenv(DATA_PLANE_ADVERTISE_ENV, bad)
        with pytest.raises(ConfigError) as info:
            advertised_port(43210)
        assert DATA_PLANE_ADVERTISE_ENV in str(info.value) and "\n" not in str(info.value)


def test_a_party_node_refuses_a_bad_setting_in_one_line(fed: Path, tmp_path: Path) -> None:
    (tmp_path / "grid.csv").write_text("id,g0\n1,0.5\n")
    env = {**os.environ, DATA_PLANE_ADVERTISE_ENV: "http"}
    result = subprocess.run(
        [sys.executable, "-m", "federation.cli", "party", "--role", "grid", "--job-id", JOB,
         "--listen", "127.0.0.1:0", "--coordinator", "127.0.0.1:1", "--out",
         str(tmp_path / "out"), "--tls-dir", str(fed), "--data", str(tmp_path / "grid.csv")],
        capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"error: {DATA_PLANE_ADVERTISE_ENV}='http': not a port (1-65535; the port of a "
        "forwarder in front of this node's data plane)"], result.stderr
    assert "LISTENING" not in result.stdout and "DATA PLANE" not in result.stdout


@contextmanager
def relayed(fed: Path, tmp_path: Path, proxy: FaultProxy,
                monkeypatch: pytest.MonkeyPatch, count: int) -> Iterator[Inbox]:
    """The bank behind ``proxy`` (both its ports); the grid sends ``count`` messages to it
    through the proxy; yields the bank's inbox, then stops everything."""
    monkeypatch.setenv(DATA_PLANE_ADVERTISE_ENV, str(proxy.data_port))
    bank_certs, grid_certs = NodeCerts.in_dir(fed, Role.BANK), NodeCerts.in_dir(fed, Role.GRID)
    inbox = Inbox(JOB, Role.GRID)
    audit = AuditLog(tmp_path / "bank" / "audit.jsonl", "bank", job=JOB)
    plane = DataListener(bank_certs, "127.0.0.1", inbox, audit)
    server, port = start_server(bank_certs, "127.0.0.1:0",
                                add_party(inbox, audit, advertised_port(plane.port)))
    proxy.forward_to(f"127.0.0.1:{port}")
    proxy.forward_data_to(f"127.0.0.1:{plane.port}")
    grid_audit = AuditLog(tmp_path / "grid" / "audit.jsonl", "grid", job=JOB)
    grid_inbox = Inbox(JOB, Role.BANK)
    grid_plane = DataListener(grid_certs, "127.0.0.1", grid_inbox, grid_audit)
    channel = None
    try:
        channel = open_channel(Role.GRID, proxy.address, grid_certs, grid_inbox, grid_audit,
                               DEADLINE, grid_plane)
        assert isinstance(channel, TlsChannel)
        try:
            for i in range(count):
                channel.send(Envelope(JOB, Tag(1, f"m{i}"), Role.GRID, payload(i)))
        except VflError:
            pass  # the proxy broke the stream: the bank's side is what the test looks at
        yield inbox
    finally:
        if channel is not None:
            channel.close(1.0)
        grid_plane.close()
        proxy.close()
        server.stop(0)
        plane.close()
        audit.close()
        grid_audit.close()


def test_the_grid_reaches_the_banks_data_plane_through_the_relay(
        fed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = FaultProxy()
    with relayed(fed, tmp_path, proxy, monkeypatch, 4) as inbox:
        for i in range(4):  # the 3 MiB one too
            got = inbox.get(Tag(1, f"m{i}"), DEADLINE)
            np.testing.assert_array_equal(got.tensors["x"], payload(i)["x"])
        assert proxy.eligible_chunks > 0  # the messages crossed the proxy
        assert proxy.counted["data plane"] == proxy.eligible_chunks


def test_a_byte_flipped_on_the_way_fails_the_receiver_in_one_line(
        fed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = FaultProxy("corrupt", fire_at=2)
    with relayed(fed, tmp_path, proxy, monkeypatch, 4) as inbox:
        with pytest.raises(PeerUnavailable) as info:  # at once, not at the deadline
            inbox.get(Tag(2, "never"), DEADLINE)
        assert proxy.fired_on == "data plane"
    message = str(info.value)
    assert "grid" in message and "broke" in message and "\n" not in message, message
    assert "within" not in message, message
