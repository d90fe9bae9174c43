"""Redundancy between indicators: Pearson correlations and variance inflation factors.

What it does: :func:`standardize` turns a party's training columns into z-scores of the
mean-imputed values, so that every correlation, within a party in the clear or across
parties through the secure product, is the same formula rho_ab = z_a . z_b / n.
:func:`vif` computes VIF_j = [R^-1]_jj from a correlation matrix and :func:`vif_filter`
drops, one at a time, the indicator with the largest VIF above a threshold.

What it assumes: missing values (NaN) are replaced by the column's mean over its
non-missing training rows before standardizing (README, "Screening indicators"): a column
that is mostly missing correlates weakly with everything, which is what its information
allows; a constant column has z = 0 and correlation 0 with everything.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Float = npt.NDArray[np.float64]


def standardize(x: npt.ArrayLike) -> Float:
    """z-scores (n x k) of the mean-imputed columns of ``x``; constant columns give zeros."""
    a = np.array(x, dtype=np.float64, copy=True)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D matrix, got shape {a.shape}")
    present = ~np.isnan(a)
    count = present.sum(axis=0)
    mean = np.divide(np.where(present, a, 0.0).sum(axis=0), count,
                     out=np.zeros(a.shape[1]), where=count > 0)
    a = np.where(present, a, mean)
    a -= a.mean(axis=0)
    std = a.std(axis=0)
    return np.asarray(np.divide(a, std, out=np.zeros_like(a), where=std > 0), dtype=np.float64)


def correlation(za: Float, zb: Float) -> Float:
    """rho = za^T zb / n for standardized columns of the same n rows (k_a x k_b)."""
    if za.shape[0] != zb.shape[0] or za.shape[0] == 0:
        raise ValueError(f"row counts differ or are zero: {za.shape[0]}, {zb.shape[0]}")
    return np.asarray(za.T @ zb / za.shape[0], dtype=np.float64)


def vif(r: npt.ArrayLike) -> Float:
    """VIF_j = [R^-1]_jj; infinite where R is singular (a column is a combination of others)."""
    m = np.asarray(r, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"expected a square correlation matrix, got shape {m.shape}")
    k = m.shape[0]
    if k == 0:
        return np.zeros(0)
    if k == 1:
        return np.ones(1)
    eig = np.linalg.eigvalsh(m)
    if eig.min() <= 1e-10 * max(1.0, eig.max()):
        # The VIF of every column in the degenerate set is infinite; the others are finite,
        # but one at a time removal handles that: give inf where the column is (numerically)
        # explained by the rest.
        out = np.empty(k)
        for j in range(k):
            rest = [i for i in range(k) if i != j]
            sub = m[np.ix_(rest, rest)]
            coef, *_ = np.linalg.lstsq(sub, m[rest, j], rcond=None)
            r2 = float(m[j, rest] @ coef)
            out[j] = np.inf if r2 >= 1.0 - 1e-10 else 1.0 / (1.0 - r2)
        return out
    return np.asarray(np.diag(np.linalg.inv(m)), dtype=np.float64)


def vif_filter(r: npt.ArrayLike, names: Sequence[str], max_vif: float,
               ) -> tuple[list[str], dict[str, float]]:
    """Drop the indicator with the largest VIF while that VIF exceeds ``max_vif``; among
    equal largest VIFs the one listed last goes.

    Returns
    -------
    tuple[list[str], dict[str, float]]
        The names kept (in the given order) and, for each dropped name, its VIF when dropped.
    """
    m = np.asarray(r, dtype=np.float64)
    keep = list(range(len(names)))
    dropped: dict[str, float] = {}
    while len(keep) > 1:
        values = vif(m[np.ix_(keep, keep)])
        # Ties (several infinite VIFs) drop the last one: callers list names by
        # decreasing importance.
        worst = len(values) - 1 - int(np.argmax(values[::-1]))
        if not values[worst] > max_vif:
            break
        dropped[names[keep[worst]]] = float(values[worst])
        del keep[worst]
    return [names[i] for i in keep], dropped
