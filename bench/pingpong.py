"""Party-to-party exchange latency: the TLS data plane (read on the party's thread, as nodes
do, or by a reader thread) against the gRPC stream.

Not a test. Two party processes (grid, bank) on loopback, each with its gRPC server, audit
log (signed) and inbox as in a job; per round both send a message of two 1024-element uint64
tensors (16 kB, an iteration's F and L at batch 1024) and wait for the peer's, as an
iteration of mode shared does with no arithmetic. Prints, per party and plane, the median
and mean milliseconds per exchange and the party's CPU milliseconds per exchange.

Usage (from the repository root)::

    python bench/pingpong.py --rounds 2000 --plane direct,tls,grpc
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from federation.nodes import PARTY_HOLD  # noqa: E402
from federation.protocol.messages import Envelope, Role, Tag, peer_of  # noqa: E402
from federation.transport.audit import AuditLog  # noqa: E402
from federation.transport.certs import NodeCerts, write_federation  # noqa: E402
from federation.transport.channel import Inbox  # noqa: E402
from federation.transport.grpc_server import add_party, start_server  # noqa: E402
from federation.transport.stream import GrpcChannel  # noqa: E402
from federation.transport.tls_direct import DirectReader  # noqa: E402
from federation.transport.tls_plane import DataListener, TlsChannel  # noqa: E402

JOB = "pingpong"
WARMUP = 50


def party(fed: Path, role: Role, plane: str, rounds: int, out: Path) -> None:
    """One party: serve, learn the peer's ports from stdin, exchange, print one line."""
    certs, peer = NodeCerts.in_dir(fed, role), peer_of(role)
    audit = AuditLog(out / f"{role.value}.jsonl", role.value, certs.key.read_bytes(), job=JOB,
                     hold=PARTY_HOLD)  # as a party node's
    inbox = Inbox(JOB, peer, 0)
    listener = DataListener(certs, "127.0.0.1", inbox, audit, direct=plane == "direct") \
        if plane in ("tls", "direct") else None
    server, port = start_server(certs, "127.0.0.1:0",
                                add_party(inbox, audit, listener.port if listener else 0))
    print(port, listener.port if listener else 0, flush=True)
    peer_port, peer_data = sys.stdin.readline().split()
    address = f"127.0.0.1:{peer_port}"
    channel: TlsChannel | GrpcChannel
    if listener is not None:
        reader = DirectReader(listener, inbox, listener.later, 30.0) if listener.direct else None
        channel = TlsChannel(role, address, int(peer_data), certs, inbox, listener.later, 30.0,
                             reader)
    else:
        channel = GrpcChannel(role, address, certs, inbox, audit, 30.0)
    tensors: dict[str, np.ndarray] = {"F": np.arange(1024, dtype=np.uint64),
                                      "L": np.arange(1024, dtype=np.uint64)}
    times: list[float] = []
    cpu = 0.0
    for i in range(1, rounds + WARMUP + 1):
        if i == WARMUP + 1:
            cpu = time.process_time()
        t0 = time.perf_counter()
        channel.send(Envelope(JOB, Tag(i, "fit"), role, tensors))
        channel.recv(Tag(i, "fit"), 30.0)
        times.append(time.perf_counter() - t0)
    cpu = time.process_time() - cpu
    w = times[WARMUP:]
    print(f"{plane:5s} {role.value:5s} median {statistics.median(w) * 1e3:.3f} ms  mean "
          f"{statistics.mean(w) * 1e3:.3f} ms  cpu {cpu / rounds * 1e3:.3f} ms per exchange",
          flush=True)
    channel.close(5.0)
    server.stop(0)
    if listener is not None:
        listener.close()
    audit.close()


def run(plane: str, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fed = Path(tmp)
        write_federation(fed)
        procs = [subprocess.Popen([sys.executable, __file__, "--party", role, "--plane", plane,
                                   "--rounds", str(rounds), "--fed", tmp],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                 for role in ("grid", "bank")]
        ports = [p.stdout.readline().strip() for p in procs]  # type: ignore[union-attr]
        for proc, other in zip(procs, reversed(ports), strict=True):
            proc.stdin.write(other + "\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
        for proc in procs:
            print(proc.stdout.read().strip())  # type: ignore[union-attr]
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2000)
    ap.add_argument("--plane", default="direct,tls,grpc",
                    help="comma-separated: direct (the TLS data plane read on the party's "
                         "thread, as party nodes do), tls (read by a reader thread), grpc")
    ap.add_argument("--party", choices=("grid", "bank"), help=argparse.SUPPRESS)
    ap.add_argument("--fed", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.party:
        party(Path(args.fed), Role(args.party), args.plane, args.rounds, Path(args.fed))
        return
    with open("/proc/loadavg") as f:
        print(f"load average before: {f.read().split()[0]}")
    for plane in args.plane.split(","):
        run(plane, args.rounds)


if __name__ == "__main__":
    main()
