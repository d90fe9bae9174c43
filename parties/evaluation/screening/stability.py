"""Population stability of an indicator: the PSI of its bin shares between two samples.

What it does: PSI = sum_i (a_i - e_i) ln(a_i / e_i) over the bins, where e_i is bin i's share
of the expected sample (the training rows) and a_i its share of the actual sample (the
validation rows, or the same enterprises at another as-of month), both binned with the
training rows' edges.

What it assumes: counts are exact integers per bin, in the same bin order for both samples.
Shares are smoothed like the WOE (README, "Screening indicators"): 0.5 is added to each
bin's count in both samples over the bins that are non-empty in either, so a bin empty in
one sample gives a large but finite term. Usual reading: < 0.1 stable, 0.1-0.25 some
shift, > 0.25 a shift to act on (the default selection rule drops above 0.25).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from parties.evaluation.screening.binstats import SMOOTHING

Counts = npt.NDArray[np.int64]


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike) -> float:
    """Population stability index of ``actual``'s bin counts against ``expected``'s.

    Raises
    ------
    ValueError
        If the arrays differ in shape, hold negative or non-integer counts, or a sample is
        empty.
    """
    e = np.asarray(expected)
    a = np.asarray(actual)
    if e.shape != a.shape or e.ndim != 1:
        raise ValueError(f"expected and actual counts differ in shape: {e.shape}, {a.shape}")
    if e.dtype.kind not in "iu" or a.dtype.kind not in "iu":
        raise ValueError(f"counts must be integers, got {e.dtype} and {a.dtype}")
    if (e < 0).any() or (a < 0).any():
        raise ValueError("counts must not be negative")
    if e.sum() == 0 or a.sum() == 0:
        raise ValueError("PSI needs rows in both samples")
    used = (e > 0) | (a > 0)
    k = int(used.sum())
    e_share = (e[used] + SMOOTHING) / (e.sum() + SMOOTHING * k)
    a_share = (a[used] + SMOOTHING) / (a.sum() + SMOOTHING * k)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))
