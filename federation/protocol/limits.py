"""How large one party-to-party message may be in a job (README "What each party learns").

A receiver refuses a message larger than this bound before buffering it, so a peer (or
anything holding its certificate) cannot make a node allocate without limit. The bound
comes from the job's plan: after alignment every message is at most one row per aligned
row, and the aligned rows are at most the receiver's own rows, of at most the wider
party's columns (times the bins of a tree job's or a screening's one-hot matrix) of 8-byte
ring elements;
before it, ECDH PSI sends 32-byte points per ID of either party. Slack covers framing.
Assumes: the coordinator computes it from both parties' joins; it tells a party only the
wider column count (which the peer's masked matrix E shows anyway) and, with ECDH PSI,
the larger set size (which that protocol shows anyway).
"""

from __future__ import annotations

from federation.protocol.messages import JoinRequest, Model, PsiProtocol, Task, TrainSettings

SLACK = 1 << 20  # protobuf framing, tags, shapes and the small messages of every job
POINT_BYTES = 32  # an X25519 point of ECDH PSI
RING_BYTES = 8
SCREEN_MAX_BINS = 256  # a screening's bins are the parties' own setting, at most this


def message_bound(settings: TrainSettings, own: JoinRequest, peer: JoinRequest) -> int:
    """The largest message ``own``'s party accepts from ``peer`` in this job, in bytes.

    Parameters
    ----------
    settings : TrainSettings
        The job's settings (model, bins, PSI protocol).
    own, peer : JoinRequest
        The receiving party's join and its peer's (row and column counts).

    Returns
    -------
    int
        rows × (columns + 8) × 8 bytes plus an eighth and 1 MiB, where rows are the
        receiver's and columns the wider party's (× bins for trees, × 256 for a
        screening, whose bins the parties set); at least the ECDH
        points of the larger set when the job aligns by ECDH.
    """
    width = max(own.n_columns, peer.n_columns, 1)
    if settings.task is Task.SCREEN:  # the one-hot bin-count matrix
        width *= SCREEN_MAX_BINS
    elif settings.model is Model.GBDT:
        width *= max(settings.bins, 1)
    bound = RING_BYTES * max(own.n_rows, 1) * (width + 8)
    if settings.psi is PsiProtocol.ECDH:
        bound = max(bound, POINT_BYTES * max(own.n_rows, peer.n_rows))
    return bound + bound // 8 + SLACK
