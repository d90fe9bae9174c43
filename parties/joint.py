"""A joint forward pass over a model whose weights stay shared (``--reveal-weights none``).

Each party holds a share of both weight blocks. For its own rows X_own (clipped,
f_x-bit features) the logit is u = X_G theta_G + X_B theta_B, computed as shares by the
one secure product without transposition:

1. Each party sends E = X_own - M (dealer mask for these rows) and F = (its share of the
   peer's block) - m, in one message.
2. Owner side: z_P = M F_peer + c_0; holder side: z_Q = E_peer (share of peer block) + c_1.
3. <u> = X_own (share of own block) + z_P + z_Q, truncated by f_x bits (SecureML).
4. The grid sends its share of u to the bank, which opens u (not u_G: it does not know
   theta_B either) and takes the exact logistic function of it.
Assumes: semi-honest parties, a non-colluding dealer, an authenticated channel.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from crypto import correlated
from crypto.beaver import mask_matrix, mask_vector
from crypto.ring import Ring, decode, encode, matvec, truncate_share
from federation.protocol.errors import ProtocolAbort
from federation.protocol.messages import DealRequest, Envelope, Role, Tag, peer_of
from federation.transport.channel import Channel, CoordinatorLink

STEP_JOINT = "joint-forward"
STEP_OPEN = "joint-open"
JOINT_EPOCH = 0  # a DealRequest for epoch 0 asks for the joint forward pass's corrections


def joint_logits(role: Role, job_id: str, x: npt.NDArray[np.float64], shares: dict[str, Ring],
                 seed: bytes, channel: Channel, coordinator: CoordinatorLink, *,
                 frac_bits: int, feature_frac_bits: int, clip: float, purpose: str,
                 round_: int, timeout: float) -> npt.NDArray[np.float64] | None:
    """The bank gets u for each of its rows (in the aligned order); the grid gets None."""
    peer, n = peer_of(role), x.shape[0]
    x_ring = encode(np.clip(x, -clip, clip), feature_frac_bits)
    own, theirs = shares[role.value], shares[peer.value]
    m_mat = correlated.joint_matrix_mask(seed, role.value, purpose, x_ring.shape)
    m_vec = correlated.joint_vector_mask(seed, peer.value, purpose, theirs.shape[0])
    c_0 = correlated.joint_c0(seed, role.value, purpose, n)
    c_1 = coordinator.deal(DealRequest(job_id, role, JOINT_EPOCH)).corrections.get(purpose)
    if c_1 is None or c_1.shape != (n,):
        raise ProtocolAbort(f"the dealer sent no joint corrections of shape ({n},)")
    tag = Tag(round_, STEP_JOINT)
    channel.send(Envelope(job_id, tag, role, {"E": mask_matrix(x_ring, m_mat),
                                              "F": mask_vector(theirs, m_vec)}))
    got = channel.recv(tag, timeout).tensors
    e_peer, f_peer = got.get("E"), got.get("F")
    if (e_peer is None or f_peer is None or e_peer.dtype != np.uint64
            or f_peer.dtype != np.uint64 or e_peer.shape != (n, theirs.shape[0])
            or f_peer.shape != own.shape):
        raise ProtocolAbort(f"{peer} sent a malformed joint forward message")
    z_p = matvec(m_mat, np.asarray(f_peer, dtype=np.uint64)) + c_0
    z_q = matvec(np.asarray(e_peer, dtype=np.uint64), theirs) + c_1
    # SecureML: local truncation, needs |u| << 2^63 (f + f_x bits before the shift).
    u_share = truncate_share(0 if role is Role.GRID else 1, matvec(x_ring, own) + z_p + z_q,
                             feature_frac_bits)
    tag = Tag(round_ + 1, STEP_OPEN)
    if role is Role.GRID:
        channel.send(Envelope(job_id, tag, role, {"u": u_share}))
        return None
    grid_share = channel.recv(tag, timeout).tensors.get("u")
    if grid_share is None or grid_share.dtype != np.uint64 or grid_share.shape != (n,):
        raise ProtocolAbort(f"{peer} sent a malformed share of u")
    return decode(u_share + np.asarray(grid_share, dtype=np.uint64), frac_bits)


def partial_logits_of(env: Envelope, n: int) -> npt.NDArray[np.float64]:
    """The grid's partial logits u_G of ``n`` rows from its message, checked."""
    u = env.tensors.get("u")
    if u is None or u.dtype != np.float64 or u.shape != (n,):
        what = "nothing" if u is None else f"{u.dtype} {u.shape}"
        raise ProtocolAbort(f"grid sent {what} at {env.tag.step!r}; expected float64 ({n},)")
    return np.asarray(u, dtype=np.float64)
