"""Univariate statistics of one binned indicator against a 0/1 label, from per-bin counts.

What it does: given, per bin, the row count and the bad count (label 1), computes the weight
of evidence (WOE) of each bin, the information value (IV), the KS and AUC of the binned
indicator, the missing rate, whether the bad rate is monotone over the ordered bins, and an
optional monotone merge of adjacent bins (pool-adjacent-violators on the bad rate).

What it assumes: bins come in the order of the indicator's values (lowest first), with the
missing bin, if any, last and flagged by ``missing_bin=True``; counts are exact integers
(the bank receives them from the secure bin product or counts its own bins). Nothing here
needs the bin edges, so the bank can compute all of it for the grid's anonymous bins.

Conventions (README, "Screening indicators"):
- WOE_i = ln(bad share_i / good share_i), positive where the bin is riskier than average;
  shares are smoothed by adding ``SMOOTHING`` = 0.5 to the bad and the good count of every
  non-empty bin: share_i = (c_i + 0.5) / (C + 0.5 k) over the k non-empty bins.
- IV = sum_i (bad share_i - good share_i) * WOE_i with the same smoothed shares (>= 0).
- KS and AUC rank the bins by their bad rate (the WOE transform of the indicator): rows in
  one bin are ties (half a pair each for the AUC); so AUC >= 0.5 and the missing bin takes
  part like any other bin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Counts = npt.NDArray[np.int64]
Float = npt.NDArray[np.float64]
SMOOTHING = 0.5


@dataclass(frozen=True, slots=True)
class BinStats:
    """Everything :func:`bin_stats` computes for one indicator."""

    count: Counts
    bad: Counts
    woe: Float  # NaN for empty bins
    iv: float
    ks: float
    auc: float
    missing_rate: float
    trend: str  # "increasing", "decreasing", "constant" or "none" (non-missing bins)

    @property
    def monotone(self) -> bool:
        return self.trend != "none"


def check_counts(count: npt.ArrayLike, bad: npt.ArrayLike) -> tuple[Counts, Counts]:
    """Integer arrays with 0 <= bad <= count, or ValueError naming the first bad bin."""
    n = np.asarray(count)
    b = np.asarray(bad)
    if n.shape != b.shape or n.ndim != 1 or n.size == 0:
        raise ValueError(f"count and bad must be equal-length 1-D arrays, got {n.shape}, "
                         f"{b.shape}")
    if n.dtype.kind not in "iu" or b.dtype.kind not in "iu":
        raise ValueError(f"counts must be integers, got {n.dtype} and {b.dtype}")
    wrong = np.flatnonzero((b < 0) | (b > n))
    if wrong.size:
        i = int(wrong[0])
        raise ValueError(f"bin {i}: bad count {int(b[i])} outside [0, {int(n[i])}]")
    return n.astype(np.int64), b.astype(np.int64)


def woe_iv(count: npt.ArrayLike, bad: npt.ArrayLike) -> tuple[Float, float]:
    """WOE per bin (NaN for empty bins) and the IV, with the smoothing of the module doc.

    Raises
    ------
    ValueError
        For inconsistent counts, or when all rows are bad or all good (WOE undefined).
    """
    n, b = check_counts(count, bad)
    g = n - b
    if b.sum() == 0 or g.sum() == 0:
        raise ValueError("WOE needs both classes; the counts hold only one")
    used = n > 0
    k = int(used.sum())
    bad_share = (b[used] + SMOOTHING) / (b.sum() + SMOOTHING * k)
    good_share = (g[used] + SMOOTHING) / (g.sum() + SMOOTHING * k)
    woe = np.full(n.shape, np.nan)
    woe[used] = np.log(bad_share / good_share)
    iv = float(np.sum((bad_share - good_share) * woe[used]))
    return woe, iv


def ks_auc(count: npt.ArrayLike, bad: npt.ArrayLike) -> tuple[float, float]:
    """KS and AUC of the indicator's WOE transform (bins ranked by bad rate, ties pooled)."""
    n, b = check_counts(count, bad)
    g = n - b
    n_bad, n_good = int(b.sum()), int(g.sum())
    if n_bad == 0 or n_good == 0:
        raise ValueError("KS and AUC need both classes; the counts hold only one")
    used = n > 0
    # Bins with equal bad rates are one score level. b/n are ratios of integers below 2^53,
    # so two bins have the same float rate exactly when their rates are equal.
    rate = b[used] / n[used]
    levels, where = np.unique(rate, return_inverse=True)
    lb = np.bincount(where, weights=b[used], minlength=len(levels))
    lg = np.bincount(where, weights=g[used], minlength=len(levels))
    goods_below = np.concatenate(([0.0], np.cumsum(lg)[:-1]))
    auc = float(np.sum(lb * (goods_below + lg / 2.0)) / (n_bad * n_good))
    ks = float(np.max(np.abs(np.cumsum(lb) / n_bad - np.cumsum(lg) / n_good)))
    return ks, auc


def trend(count: npt.ArrayLike, bad: npt.ArrayLike) -> str:
    """Direction of the bad rate over the non-empty bins in order.

    Returns "increasing" or "decreasing" (weakly, with at least one change), "constant"
    (no change) or "none" (it goes both ways).
    """
    n, b = check_counts(count, bad)
    used = n > 0
    # Compare b_i / n_i with b_j / n_j exactly: sign(b_j n_i - b_i n_j).
    bu, nu = b[used], n[used]
    steps = np.sign(bu[1:] * nu[:-1] - bu[:-1] * nu[1:])
    up, down = bool((steps > 0).any()), bool((steps < 0).any())
    if up and down:
        return "none"
    if up:
        return "increasing"
    return "decreasing" if down else "constant"


def bin_stats(count: npt.ArrayLike, bad: npt.ArrayLike, missing_bin: bool) -> BinStats:
    """All statistics of one indicator; ``missing_bin``: the last bin holds missing values."""
    n, b = check_counts(count, bad)
    woe, iv = woe_iv(n, b)
    ks, auc = ks_auc(n, b)
    ordered = slice(0, len(n) - 1) if missing_bin else slice(0, len(n))
    missing = float(n[-1] / n.sum()) if missing_bin and n.sum() else 0.0
    return BinStats(n, b, woe, iv, ks, auc, missing, trend(n[ordered], b[ordered]))


def monotone_groups(count: npt.ArrayLike, bad: npt.ArrayLike,
                    increasing: bool) -> list[list[int]]:
    """Pool adjacent violators: the coarsest-but-necessary merge of adjacent bins that makes
    the bad rate weakly monotone in the given direction.

    Returns groups of original bin indices (consecutive, covering every bin); empty bins join
    their left neighbour (or the right one at the start).
    """
    n, b = check_counts(count, bad)
    groups: list[list[int]] = []
    sums: list[tuple[int, int]] = []  # (bad, count) of each group
    for i in range(len(n)):
        groups.append([i])
        sums.append((int(b[i]), int(n[i])))
        while len(groups) > 1:
            (b1, n1), (b2, n2) = sums[-2], sums[-1]
            # violation: rate_1 > rate_2 (increasing) or rate_1 < rate_2 (decreasing);
            # an empty group always joins its neighbour.
            cross = b1 * n2 - b2 * n1
            violated = n1 == 0 or n2 == 0 or (cross > 0 if increasing else cross < 0)
            if not violated:
                break
            groups[-2:] = [groups[-2] + groups[-1]]
            sums[-2:] = [(b1 + b2, n1 + n2)]
    return groups


def merge_counts(count: npt.ArrayLike, bad: npt.ArrayLike,
                 groups: list[list[int]]) -> tuple[Counts, Counts]:
    """Counts of the merged bins."""
    n, b = check_counts(count, bad)
    return (np.array([int(n[g].sum()) for g in groups], dtype=np.int64),
            np.array([int(b[g].sum()) for g in groups], dtype=np.int64))


def monotone_merge(count: npt.ArrayLike, bad: npt.ArrayLike,
                   missing_bin: bool) -> list[list[int]]:
    """Merge adjacent non-missing bins until the bad rate is monotone, in the direction that
    keeps the larger IV (the missing bin stays alone); groups of original bin indices."""
    n, b = check_counts(count, bad)
    last = len(n) - 1 if missing_bin else len(n)
    best: tuple[float, list[list[int]]] | None = None
    for increasing in (True, False):
        groups = monotone_groups(n[:last], b[:last], increasing)
        if missing_bin:
            groups = [*groups, [last]]
        merged_n, merged_b = merge_counts(n, b, groups)
        iv = woe_iv(merged_n, merged_b)[1]
        if best is None or iv > best[0]:
            best = (iv, groups)
    if best is None:  # pragma: no cover - the loop runs twice
        raise ValueError("no direction")
    return best[1]
