"""The PSI exchange of one party (the protocol around ``crypto.psi``).

1. Blind own IDs with a fresh key, shuffle, send.
2. Receive the peer's points, validate and re-blind them, send them back in order.
3. Receive own points re-blinded by the peer, unshuffle, intersect.
Both parties learn the intersection and order it identically; the coordinator learns
only its size. Assumes an authenticated channel and semi-honest parties.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import numpy.typing as npt

from crypto import psi
from federation.protocol.errors import ProtocolAbort
from federation.protocol.messages import Envelope, Role, Tag, peer_of
from federation.transport.channel import Channel
from parties.psi_pool import blind_parallel, reblind_parallel

log = logging.getLogger(__name__)
STEP_BLINDED = "psi/blinded"
STEP_DOUBLE = "psi/double"
# Generous per-ID allowance for the peer's curve work when waiting for its answer.
SECONDS_PER_ID = 0.0006


def _points(env: Envelope, peer: Role, expected: int | None) -> psi.Points:
    pts = env.tensors.get("points")
    if pts is None or pts.dtype != np.uint8 or pts.ndim != 2 or pts.shape[1] != psi.POINT_BYTES:
        what = "nothing" if pts is None else f"{pts.dtype} {pts.shape}"
        raise ProtocolAbort(f"{peer} sent {what} at {env.tag.step!r}; expected uint8 (n, 32)")
    if expected is not None and pts.shape[0] != expected:
        raise ProtocolAbort(f"{peer} returned {pts.shape[0]} points at {env.tag.step!r}; "
                            f"expected {expected}")
    return np.asarray(pts)


def align(ids: list[str], channel: Channel, role: Role, job_id: str, deadline: float,
          workers: int | None = None) -> npt.NDArray[np.intp]:
    """Indices into ``ids`` of the common IDs, in the order both parties share."""
    peer = peer_of(role)
    key = psi.new_key()
    domain = f"gridcredit/psi/v1/{job_id}".encode()
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
    log.info("PSI: %d own IDs, %d peer IDs, %d common", len(ids), len(peer_points),
             len(own_index))
    return own_index


def canonical_order(rows: npt.NDArray[np.intp], ids: list[str], seed: int) -> npt.NDArray[np.intp]:
    """Reorder the aligned rows by SHA-256(seed, ID).

    PSI orders the intersection by the doubly blinded points, which change with every
    job's fresh keys; both parties know the IDs of the common rows, so sorting them by a
    seeded hash gives both the same order in every job with the same seed, and with it a
    reproducible train/validation split and batch partition.
    """
    keys = [hashlib.sha256(f"{seed}:{ids[r]}".encode()).digest() for r in rows]
    return rows[np.argsort(np.array(keys, dtype="S32"), kind="stable")]
