"""Scorecard: default probabilities as credit-score points, and score-band tables.

Convention (the usual one for application scorecards): **a higher score means lower risk**.
Points are linear in the log of the *good:bad* odds,

    odds_good = (1 - p) / p
    points    = offset + factor * ln(odds_good)
    factor    = pdo / ln 2                     (``pdo`` points double the good:bad odds)
    offset    = base_score - factor * ln(base_odds)

so a borrower at the base odds (default 50:1, i.e. p = 1/51) gets the base score (default 600)
and every ``pdo`` (default 20) more points halves the odds of default. ``p`` is the predicted
probability of bad (``y = 1``), as in :mod:`parties.evaluation.metrics`; it is clipped to
``[EPS, 1 - EPS]`` so that p = 0 or 1 map to finite points (about +/- 1000 from the base).

Bands are left-closed intervals ``[lower, upper)`` in points. By default they are 20 points
wide and aligned to multiples of the width (``[600, 620)``), so a band label depends only on
the score and not on the data set it came with. Pure functions; no I/O.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from parties.evaluation.metrics import EPS, FloatArray, check_labels

BAND_WIDTH = 20.0
"""Default width of a score band, in points."""


@dataclass(frozen=True, slots=True)
class Scorecard:
    """Scaling of log-odds to points.

    Attributes
    ----------
    base_score : float, default 600
        Points at the base odds.
    base_odds : float, default 50
        Good:bad odds that earn ``base_score`` (50 means 50 goods per bad).
    pdo : float, default 20
        Points to double the odds; positive, so a higher score means lower risk.

    Raises
    ------
    ValueError
        If a parameter is not finite, or ``base_odds`` or ``pdo`` is not positive.
    """

    base_score: float = 600.0
    base_odds: float = 50.0
    pdo: float = 20.0

    def __post_init__(self) -> None:
        for name, value in (
            ("base_score", self.base_score),
            ("base_odds", self.base_odds),
            ("pdo", self.pdo),
        ):
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}")
        if self.base_odds <= 0.0:
            raise ValueError(f"base_odds must be > 0 (good:bad), got {self.base_odds}")
        if self.pdo <= 0.0:
            raise ValueError(f"pdo must be > 0 (higher score = lower risk), got {self.pdo}")

    @property
    def factor(self) -> float:
        """Points per unit of ln(good:bad odds): ``pdo / ln 2``."""
        return self.pdo / math.log(2.0)

    @property
    def offset(self) -> float:
        """Points at even odds (p = 0.5): ``base_score - factor * ln(base_odds)``."""
        return self.base_score - self.factor * math.log(self.base_odds)

    def points(self, p: npt.ArrayLike) -> FloatArray:
        """Score points for default probabilities.

        Parameters
        ----------
        p : array_like
            Predicted probability of bad, finite and in [0, 1]; any shape.

        Returns
        -------
        FloatArray
            ``offset + factor * ln((1 - p) / p)``, same shape as ``p``.

        Raises
        ------
        ValueError
            If a probability is nan, infinite or outside [0, 1].
        """
        q = np.asarray(p, dtype=np.float64)
        if not np.isfinite(q).all() or (q.size and (q.min() < 0.0 or q.max() > 1.0)):
            raise ValueError("probabilities must be finite and in [0, 1]")
        q = np.clip(q, EPS, 1.0 - EPS)
        log_odds_good = np.log1p(-q) - np.log(q)
        return self.offset + self.factor * log_odds_good

    def probability(self, points: npt.ArrayLike) -> FloatArray:
        """Default probability for score points: the inverse of :meth:`points`.

        Parameters
        ----------
        points : array_like
            Finite score points; any shape.

        Returns
        -------
        FloatArray
            ``1 / (1 + exp((points - offset) / factor))``, same shape as ``points``.

        Raises
        ------
        ValueError
            If a value is nan or infinite.
        """
        s = _finite_points(points)
        z = (s - self.offset) / self.factor  # ln(odds_good)
        # Logistic of -z without overflow for large |z|.
        e = np.exp(-np.abs(z))
        return np.where(z >= 0.0, e / (1.0 + e), 1.0 / (1.0 + e))


def points(p: npt.ArrayLike, card: Scorecard | None = None) -> FloatArray:
    """Score points for default probabilities under ``card`` (default 600 / 50:1 / 20).

    Parameters
    ----------
    p : array_like
        Predicted probability of bad, in [0, 1].
    card : Scorecard, optional
        Scaling; ``Scorecard()`` when omitted.

    Returns
    -------
    FloatArray
        Points, higher = lower risk.

    Raises
    ------
    ValueError
        If a probability is nan, infinite or outside [0, 1].
    """
    return (card if card is not None else Scorecard()).points(p)


@dataclass(frozen=True, slots=True)
class BandTable:
    """Counts and bad rates per score band, bands in increasing points.

    Attributes
    ----------
    labels : tuple[str, ...]
        ``"[lower, upper)"`` per band, as :func:`band_of` writes them.
    lower, upper : FloatArray
        Band edges; a band holds ``lower <= points < upper``.
    count : npt.NDArray[np.int64]
        Rows in the band.
    bad : npt.NDArray[np.int64]
        Rows with ``y = 1`` in the band.
    bad_rate : FloatArray
        ``bad / count``; nan for an empty band.
    share : FloatArray
        ``count / total``.
    """

    labels: tuple[str, ...]
    lower: FloatArray
    upper: FloatArray
    count: npt.NDArray[np.int64]
    bad: npt.NDArray[np.int64]
    bad_rate: FloatArray
    share: FloatArray


def _finite_points(points: npt.ArrayLike) -> FloatArray:
    s = np.asarray(points, dtype=np.float64)
    if not np.isfinite(s).all():
        raise ValueError(f"points must be finite, {int((~np.isfinite(s)).sum())} are not")
    return s


def _resolve_edges(s: FloatArray, edges: npt.ArrayLike | None, width: float) -> FloatArray:
    if edges is None:
        if not (math.isfinite(width) and width > 0.0):
            raise ValueError(f"band width must be finite and > 0, got {width}")
        if s.size == 0:
            raise ValueError("no points to band")
        lo, hi = float(s.min()), float(s.max())
        first = math.floor(lo / width)
        last = math.floor(hi / width)
        # lo / width can round to an edge lo itself is not at (-5e-324 / 20 is -0.0): step
        # outward until the edges, computed as below, really enclose lo and hi.
        while first * width > lo:
            first -= 1
        while (last + 1) * width <= hi:
            last += 1
        return np.arange(first, last + 2, dtype=np.float64) * width
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.shape[0] < 2:
        raise ValueError(f"band edges must be a 1-D list of at least 2 values, got shape {e.shape}")
    if np.isnan(e).any() or not (np.diff(e) > 0.0).all():
        raise ValueError(f"band edges must be strictly increasing, got {e.tolist()}")
    return e


def _band_index(s: FloatArray, e: FloatArray) -> npt.NDArray[np.intp]:
    idx = np.searchsorted(e, s, side="right").astype(np.intp) - 1
    outside = (idx < 0) | (idx >= e.shape[0] - 1)
    if outside.any():
        raise ValueError(
            f"{int(outside.sum())} points fall outside the bands [{e[0]:g}, {e[-1]:g}); "
            "use -inf / inf as outer edges for open-ended bands"
        )
    return idx


def _labels(e: FloatArray) -> tuple[str, ...]:
    return tuple(f"[{lo:g}, {hi:g})" for lo, hi in itertools.pairwise(e))


def band_of(
    points: npt.ArrayLike, edges: npt.ArrayLike | None = None, *, width: float = BAND_WIDTH
) -> npt.NDArray[np.str_]:
    """Band label of each score.

    Parameters
    ----------
    points : array_like
        Finite score points; any shape.
    edges : array_like, optional
        Strictly increasing band edges (``-inf`` / ``inf`` allowed at the ends). When omitted,
        bands are ``width`` wide and aligned to multiples of ``width``.
    width : float, default 20
        Band width for the default bands.

    Returns
    -------
    numpy.ndarray of str
        Labels such as ``"[600, 620)"``, same shape as ``points``.

    Raises
    ------
    ValueError
        For non-finite points, bad edges or width, or a point outside the given edges.
    """
    s = _finite_points(points)
    e = _resolve_edges(s.ravel(), edges, width)
    idx = _band_index(s.ravel(), e)
    return np.asarray(_labels(e), dtype=np.str_)[idx].reshape(s.shape)


def band_table(
    y: npt.ArrayLike,
    points: npt.ArrayLike,
    edges: npt.ArrayLike | None = None,
    *,
    width: float = BAND_WIDTH,
) -> BandTable:
    """Count, bad count and bad rate per score band.

    Parameters
    ----------
    y : array_like
        Labels, 1 = bad, 1-D.
    points : array_like
        Score points, same length as ``y``.
    edges : array_like, optional
        Strictly increasing band edges; every point must fall inside. When omitted, bands
        ``width`` wide, aligned to multiples of ``width``, from the lowest to the highest
        score (empty bands in between are kept).
    width : float, default 20
        Band width for the default bands.

    Returns
    -------
    BandTable
        One row per band, in increasing points.

    Raises
    ------
    ValueError
        For invalid labels, a length mismatch, non-finite points, bad edges, or a point
        outside the given edges.
    """
    labels = check_labels(y)
    s = _finite_points(points)
    if s.shape != labels.shape:
        raise ValueError(f"length mismatch: {labels.shape[0]} labels but points of shape {s.shape}")
    e = _resolve_edges(s, edges, width)
    idx = _band_index(s, e)
    k = e.shape[0] - 1
    count = np.bincount(idx, minlength=k).astype(np.int64)
    bad = np.bincount(idx, weights=labels, minlength=k).round().astype(np.int64)
    bad_rate = np.where(count > 0, bad / np.maximum(count, 1), np.nan)
    return BandTable(
        labels=_labels(e),
        lower=e[:-1].copy(),
        upper=e[1:].copy(),
        count=count,
        bad=bad,
        bad_rate=bad_rate,
        share=count / labels.shape[0],
    )
