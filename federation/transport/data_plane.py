"""Which channel carries a job's party messages, and the data plane's settings.

A node serves the TLS data plane (``tls_plane``) unless ``GRIDCREDIT_DATA_PLANE=grpc``. The
connecting party asks its peer's gRPC server for the data port (``Party.DataPlane``, under
gRPC's mutual TLS and role check): a port means the TLS data plane (read on the party's own
thread when the listener is direct: ``tls_direct``), 0 or an older peer without the question
means the gRPC stream (``stream``).
"""

from __future__ import annotations

import logging
import os

import grpc

from federation.proto import vfl_pb2, vfl_pb2_grpc
from federation.protocol.errors import ConfigError
from federation.protocol.messages import Role
from federation.transport.audit import AuditLog
from federation.transport.certs import NodeCerts
from federation.transport.channel import Inbox, PeerStream
from federation.transport.grpc_client import call, secure_channel
from federation.transport.stream import GrpcChannel
from federation.transport.tls_direct import DirectReader
from federation.transport.tls_plane import DataListener, TlsChannel

log = logging.getLogger(__name__)


def data_port(address: str, certs: NodeCerts, peer: Role, job_id: str, deadline: float) -> int:
    """Ask the peer's gRPC server for its data-plane port (0: it has none).

    A peer of a version from before the data plane has no ``Party.DataPlane``: its server
    answers UNIMPLEMENTED, which means 0 here (said in one INFO line), not a failure. Every
    other answer is ``call``'s: UNAVAILABLE retried, a refusal (role, job) fails the job.
    """
    channel = secure_channel(address, certs, peer)
    stub = vfl_pb2_grpc.PartyStub(channel)  # type: ignore[no-untyped-call]

    def ask() -> int:
        try:
            reply = stub.DataPlane(vfl_pb2.DataPlaneRequest(job_id=job_id), timeout=deadline)
        except grpc.RpcError as exc:
            if exc.code() is not grpc.StatusCode.UNIMPLEMENTED:
                raise
            log.info("%s at %s has no data plane (an older version: Party.DataPlane is "
                     "UNIMPLEMENTED); party messages go on the gRPC stream", peer, address)
            return 0
        return int(reply.port)

    try:
        return call(f"sending to {peer} at {address}", ask, retry_for=deadline)
    finally:
        channel.close()


DATA_PLANE_ENV = "GRIDCREDIT_DATA_PLANE"  # "grpc": party messages on the gRPC stream instead


def tls_plane_wanted() -> bool:
    """Whether this node serves and uses the TLS data plane (the default)."""
    return os.environ.get(DATA_PLANE_ENV, "tls") != "grpc"


# The port this node names in its ``Party.DataPlane`` answer, if not its listening one: a
# forwarder's in front of the data plane (the peer dials it at the host of this node's
# advertised gRPC address), e.g. the chaos harness's fault proxy (bench/chaos_proxy.py).
DATA_PLANE_ADVERTISE_ENV = "GRIDCREDIT_DATA_PLANE_ADVERTISE"


def advertised_port(listening: int) -> int:
    """The data-plane port the peer is told: ``listening`` unless the setting names one."""
    text = os.environ.get(DATA_PLANE_ADVERTISE_ENV)
    if text is None:
        return listening
    digits = text.strip()
    if not (digits.isascii() and digits.isdecimal()) or not 0 < int(digits) < 65536:
        raise ConfigError(f"{DATA_PLANE_ADVERTISE_ENV}={text!r}: not a port (1-65535; the "
                          "port of a forwarder in front of this node's data plane)")
    return int(text)


def open_channel(role: Role, peer_address: str, certs: NodeCerts, inbox: Inbox,
                 audit: AuditLog, deadline: float,
                 plane: DataListener | None) -> PeerStream:
    """The channel to the peer: the TLS data plane if both ends serve one, else the gRPC
    stream (``federation.transport.stream``)."""
    port = data_port(peer_address, certs, inbox.peer, inbox.job_id, deadline) \
        if plane is not None else 0
    if port == 0 or plane is None:
        return GrpcChannel(role, peer_address, certs, inbox, audit, deadline)
    reader = DirectReader(plane, inbox, plane.later, deadline) if plane.direct else None
    try:
        return TlsChannel(role, peer_address, port, certs, inbox, plane.later, deadline, reader)
    except BaseException:
        if reader is not None:
            reader.close()
        raise
