"""A grid party's transport alone, as its own process, for ``test_stream.py``.

``python -m tests.e2e.stream_peer CERTS JOB BANK_ADDRESS COUNT [tls]`` starts the grid's
party server (prints ``LISTENING host:port``), opens its stream to the bank (with ``tls``:
its connection to the bank's TLS data plane, ``federation.transport.tls_plane``), sends COUNT
messages (the third one larger than a frame), prints ``SENT`` and then waits until stdin
closes or the process is killed.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from federation.protocol.messages import Envelope, Role, Tag
from federation.transport.audit import AuditLog
from federation.transport.certs import NodeCerts
from federation.transport.channel import Inbox
from federation.transport.data_plane import data_port
from federation.transport.grpc_server import add_party, start_server
from federation.transport.stream import GrpcChannel
from federation.transport.tls_plane import LaterAudit, TlsChannel


def payload(i: int) -> dict[str, np.ndarray]:
    """Message i's tensor: 3 MiB for i == 2 (several frames), a few words otherwise."""
    n = (3 << 20) // 8 if i == 2 else 4 + i
    return {"x": np.arange(n, dtype=np.uint64) + np.uint64(i)}


def main(certs_dir: str, job: str, bank: str, count: str, plane: str = "grpc") -> None:
    certs = NodeCerts.in_dir(Path(certs_dir), Role.GRID)
    with tempfile.TemporaryDirectory() as tmp:
        audit = AuditLog(Path(tmp) / "audit.jsonl", "grid")
        inbox = Inbox(job, Role.BANK)
        server, port = start_server(certs, "127.0.0.1:0", add_party(inbox, audit))
        print(f"LISTENING 127.0.0.1:{port}", flush=True)
        channel: GrpcChannel | TlsChannel
        if plane == "tls":
            port = data_port(bank, certs, Role.BANK, job, 10.0)
            channel = TlsChannel(Role.GRID, bank, port, certs, inbox, LaterAudit(audit), 10.0)
        else:
            channel = GrpcChannel(Role.GRID, bank, certs, inbox, audit, deadline=10.0)
        for i in range(int(count)):
            channel.send(Envelope(job, Tag(1, f"m{i}"), Role.GRID, payload(i)))
        print("SENT", flush=True)
        sys.stdin.read()  # until the test closes stdin or kills this process
        channel.close(2.0)
        server.stop(0)
        audit.close()


if __name__ == "__main__":
    main(*sys.argv[1:6])
