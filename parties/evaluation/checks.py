"""Input checks and shared helpers of the evaluation metrics (arrays in, arrays out).

``y`` is the label (1 = bad, 0 = good), ``p`` the predicted probability that ``y = 1``; both
1-D, of equal length, ``p`` finite and in [0, 1]. Bad input raises ``ValueError`` naming what.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


EPS = 1e-15
"""Clipping bound for ``p`` in log terms (the value scikit-learn used before version 1.5)."""


@dataclass(frozen=True, slots=True)
class SortedScores:
    """Labels and probabilities sorted by increasing ``p``, with tie blocks located."""

    y: FloatArray
    p: FloatArray
    starts: npt.NDArray[np.intp]  # first index of each block of equal p
    n_pos: int
    n_neg: int


def check_labels(y: npt.ArrayLike) -> FloatArray:
    """Validate binary labels and return them as a float64 vector.

    Parameters
    ----------
    y : array_like
        1-D, non-empty, every value exactly 0 or 1 (bool, int or float).

    Returns
    -------
    FloatArray
        A float64 copy of ``y``.

    Raises
    ------
    ValueError
        If ``y`` is not 1-D, is empty, or holds a value other than 0 and 1.
    """
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("labels are empty")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"labels must be numeric 0/1, got dtype {arr.dtype}")
    out = arr.astype(np.float64)
    bad = (out != 0.0) & (out != 1.0)
    if bad.any():
        found = np.unique(out[bad])[:5]
        raise ValueError(f"labels must be 0 or 1, found {found.tolist()}")
    return out


def check_probabilities(p: npt.ArrayLike, n: int) -> FloatArray:
    """Validate predicted probabilities against ``n`` labels and return them as float64.

    Parameters
    ----------
    p : array_like
        1-D, length ``n``, finite, in [0, 1].
    n : int
        Number of labels ``p`` must match.

    Returns
    -------
    FloatArray
        A float64 copy of ``p``.

    Raises
    ------
    ValueError
        On a shape or length mismatch, a nan or infinite value, or a value outside [0, 1].
    """
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"probabilities must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"length mismatch: {n} labels but {arr.shape[0]} probabilities")
    if not np.isfinite(arr).all():
        raise ValueError(f"probabilities must be finite, {int((~np.isfinite(arr)).sum())} are not")
    if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
        raise ValueError(
            f"probabilities must be in [0, 1], got range [{arr.min():.6g}, {arr.max():.6g}]"
        )
    return arr


def checked(y: npt.ArrayLike, p: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    labels = check_labels(y)
    return labels, check_probabilities(p, labels.shape[0])


def require_both_classes(y: FloatArray, metric: str) -> None:
    positives = int(y.sum())
    if positives == 0 or positives == y.shape[0]:
        raise ValueError(
            f"{metric} needs both classes in y, got {positives} positives out of {y.shape[0]}"
        )


def sort_scores(y: FloatArray, p: FloatArray) -> SortedScores:
    # A stable sort makes every result independent of the platform's quicksort choices.
    order = np.argsort(p, kind="stable")
    p_s = p[order]
    y_s = y[order]
    change = np.flatnonzero(np.diff(p_s)) + 1
    starts = np.concatenate(([0], change)).astype(np.intp)
    n_pos = int(y_s.sum())
    return SortedScores(y=y_s, p=p_s, starts=starts, n_pos=n_pos, n_neg=y_s.shape[0] - n_pos)
