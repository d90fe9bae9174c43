"""The PSI of one party in a job (the protocols around ``crypto.psi``).

``align`` runs the protocol the job's settings name (``--psi``); both give the same set,
and each lists it in one order on both sides (the node then puts it in canonical order).

Server-aided (the default; ``crypto.psi.server_aided``):

1. Send a fresh X25519 public key to the peer (party to party), receive the peer's;
   derive the job key K. The coordinator never sees either key.
2. Tag own IDs under K, shuffle, send the tags to the coordinator (``TagMatcher.match``);
   it answers with the positions of the matched tags, ascending by tag.
3. Check the positions, map them to own rows, and compare a digest of the matched tags
   with the peer's: a coordinator that answered the two parties differently is caught.

ECDH (``--psi ecdh``; ``crypto.psi.ecdh``), party to party only:

1. Blind own IDs with a fresh key, shuffle, send.
2. Receive the peer's points, check and re-blind them, send them back in order.
3. Receive own points re-blinded by the peer, unshuffle, intersect.

What each learns: both parties learn the intersection; with server-aided PSI the
coordinator learns both list sizes and the intersection size, with ECDH only the size the
parties report at the "aligned" barrier (README "What each party learns"). Assumes an
authenticated channel and semi-honest parties and coordinator, not colluding.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import Protocol

import numpy as np
import numpy.typing as npt

from crypto import psi
from crypto.psi import server_aided as sa
from federation.protocol.errors import ProtocolAbort
from federation.protocol.messages import (
    Envelope,
    MatchReply,
    MatchRequest,
    PsiProtocol,
    Role,
    Tag,
    peer_of,
)
from federation.transport.channel import Channel
from parties.psi_pool import blind_parallel, reblind_parallel

log = logging.getLogger(__name__)
STEP_BLINDED = "psi/blinded"
STEP_DOUBLE = "psi/double"
STEP_KEY = "psi/key"
STEP_CONFIRM = "psi/confirm"
# Generous per-ID allowance for the peer's curve work when waiting for its answer.
SECONDS_PER_ID = 0.0006
# ... and for its tags (hash and AES, ~2 us per ID) when waiting for its digest.
SECONDS_PER_TAG = 0.00002
Rows = npt.NDArray[np.intp]


class TagMatcher(Protocol):
    """The coordinator's side of server-aided PSI (gRPC link or the ``Coordinator``)."""

    def match(self, req: MatchRequest) -> MatchReply: ...


def _points(env: Envelope, peer: Role, expected: int | None) -> psi.Points:
    pts = env.tensors.get("points")
    if pts is None or pts.dtype != np.uint8 or pts.ndim != 2 or pts.shape[1] != psi.POINT_BYTES:
        what = "nothing" if pts is None else f"{pts.dtype} {pts.shape}"
        raise ProtocolAbort(f"{peer} sent {what} at {env.tag.step!r}; expected uint8 (n, 32)")
    if expected is not None and pts.shape[0] != expected:
        raise ProtocolAbort(f"{peer} returned {pts.shape[0]} points at {env.tag.step!r}; "
                            f"expected {expected}")
    return np.asarray(pts)


def _bytes32(env: Envelope, name: str, peer: Role) -> bytes:
    a = env.tensors.get(name)
    if a is None or a.dtype != np.uint8 or a.shape != (32,):
        what = "nothing" if a is None else f"{a.dtype} {a.shape}"
        raise ProtocolAbort(f"{peer} sent {what} as {name!r} at {env.tag.step!r}; "
                            "expected 32 uint8")
    return bytes(np.asarray(a).tobytes())


def _as_array(data: bytes) -> npt.NDArray[np.uint8]:
    return np.frombuffer(data, dtype=np.uint8).copy()


def align_ecdh(ids: list[str], channel: Channel, role: Role, job_id: str, deadline: float,
               workers: int | None = None) -> Rows:
    """Indices into ``ids`` of the common IDs, by two-party ECDH PSI."""
    peer = peer_of(role)
    key = psi.new_key()
    domain = f"gridcredit/psi/v2/{job_id}".encode()
    shuffled, perm = psi.shuffle(blind_parallel(ids, key, domain, workers))
    tag = Tag(0, STEP_BLINDED)
    channel.send(Envelope(job_id, tag, role, {"points": shuffled}))
    wait = deadline + SECONDS_PER_ID * len(ids)
    peer_points = _points(channel.recv(tag, wait), peer, None)
    try:
        peer_double = reblind_parallel(peer_points, key, workers)
    except psi.PsiError as exc:
        raise ProtocolAbort(f"{peer} sent an invalid PSI point: {exc}") from exc
    tag = Tag(0, STEP_DOUBLE)
    channel.send(Envelope(job_id, tag, role, {"points": peer_double}))
    back = _points(channel.recv(tag, wait + SECONDS_PER_ID * len(peer_points)), peer, len(ids))
    own_index, _ = psi.intersect(psi.unshuffle(back, perm), peer_double)
    log.info("PSI (ecdh, X25519 in %s): %d own IDs, %d peer IDs, %d common",
             psi.x25519.BACKEND, len(ids), len(peer_points),
             len(own_index))
    return own_index


def server_aided_domain(job_id: str) -> bytes:
    """The domain of a job's server-aided PSI (its key and its tags)."""
    return f"gridcredit/psi/server-aided/v1/{job_id}".encode()


def align_server_aided(ids: list[str], channel: Channel, role: Role, job_id: str,
                       deadline: float, coordinator: TagMatcher) -> Rows:
    """Indices into ``ids`` of the common IDs, by server-aided PSI, ascending by tag."""
    peer = peer_of(role)
    domain = server_aided_domain(job_id)
    private = secrets.token_bytes(32)
    tag = Tag(0, STEP_KEY)
    channel.send(Envelope(job_id, tag, role, {"public": _as_array(sa.public_key(private))}))
    try:
        key = sa.agree_key(private, _bytes32(channel.recv(tag, deadline), "public", peer),
                           domain)
    except psi.PsiError as exc:
        raise ProtocolAbort(f"{peer} sent an invalid PSI key: {exc}") from exc
    sent, perm = psi.shuffle(sa.tags(ids, key, domain))
    reply = coordinator.match(MatchRequest(job_id, role, sent))
    try:
        rows, digest = sa.accept_match(reply.positions, sent, perm)
    except psi.PsiError as exc:
        raise ProtocolAbort(f"the coordinator's PSI answer is invalid: {exc}") from exc
    tag = Tag(0, STEP_CONFIRM)
    channel.send(Envelope(job_id, tag, role, {"digest": _as_array(digest)}))
    wait = deadline + SECONDS_PER_TAG * len(ids)
    if _bytes32(channel.recv(tag, wait), "digest", peer) != digest:
        raise ProtocolAbort(f"{peer} and {role} were given different PSI matches by the "
                            "coordinator")
    log.info("PSI (server-aided): %d own IDs, %d common", len(ids), len(rows))
    return rows


def align(ids: list[str], channel: Channel, role: Role, job_id: str, deadline: float,
          workers: int | None = None, *, protocol: PsiProtocol,
          coordinator: TagMatcher | None = None) -> Rows:
    """Indices into ``ids`` of the common IDs, in an order both parties share.

    Raises
    ------
    ProtocolAbort
        The peer or the coordinator sent something invalid, or server-aided PSI was asked
        for without a coordinator link.
    """
    if protocol is PsiProtocol.ECDH:
        return align_ecdh(ids, channel, role, job_id, deadline, workers)
    if coordinator is None:
        raise ProtocolAbort("server-aided PSI needs the coordinator link")
    return align_server_aided(ids, channel, role, job_id, deadline, coordinator)


def canonical_order(rows: npt.NDArray[np.intp], ids: list[str], seed: int) -> npt.NDArray[np.intp]:
    """Reorder the aligned rows by SHA-256(seed, ID).

    PSI orders the intersection by doubly blinded points or tags, which change with every
    job's fresh keys; both parties know the IDs of the common rows, so sorting them by a
    seeded hash gives both the same order in every job with the same seed, and with it a
    reproducible train/validation split and batch partition.
    """
    keys = [hashlib.sha256(f"{seed}:{ids[r]}".encode()).digest() for r in rows]
    return rows[np.argsort(np.array(keys, dtype="S32"), kind="stable")]
