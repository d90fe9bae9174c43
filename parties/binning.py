"""Equal-frequency binning of one party's features, and the one-hot matrix it implies.

Each column is cut on the aligned training rows into at most ``bins`` value bins of about
equal row counts; every row, training or not, then gets a code. Missing values (NaN) get
a bin of their own, the column's last code, so they never mix with a value bin.

Conventions, the same everywhere (screening, trees, scoring):

- ``fit_edges`` returns the interior cut points ``e_0 < e_1 < ... < e_{b-2}`` (at most
  ``bins - 1`` of them). Value bin i holds (e_{i-1}, e_i], i.e. a value equal to an edge
  goes to the lower bin, so "code <= i" is exactly "x <= e_i".
- ``bin_codes`` gives value codes 0 .. len(edges) and NaN -> len(edges) + 1.
- An edge is the midpoint between the quantile's value and the next distinct value above
  it, so ties never straddle an edge: all rows with one value share one bin, and rows
  are cut only between distinct values (deterministic, independent of row order). A
  column with at most ``bins`` distinct values gets one bin per value.
- ``BinnedMatrix`` lays the columns side by side in one one-hot matrix of width
  sum(slots). ``slots`` per column is len(edges) + 2 by default; a fixed width (e.g.
  ``bins + 1`` for every column, so the width tells a peer nothing about the data) puts
  the missing bin in the column's last slot and leaves unused value slots empty.

Pure: arrays in, arrays out. Nothing here is secret-shared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Float = npt.NDArray[np.float64]
Codes = npt.NDArray[np.int32]
Index = npt.NDArray[np.int64]

MAX_BINS = 256


def fit_edges(x: npt.ArrayLike, bins: int) -> Float:
    """Interior cut points of equal-frequency bins over the non-missing values of ``x``.

    1. Sort the finite values; distinct values u_0 < ... < u_{d-1}.
    2. If d <= bins: one bin per distinct value, edges at the midpoints of neighbours.
    3. Else: v_i = the value at rank ceil(i * n / bins) - 1 for i = 1 .. bins-1 (the last
       row of the i-th equal share), edge_i = midpoint of v_i and the next distinct value
       above it; duplicate edges (ties spanning a share) collapse into one.

    Raises
    ------
    ValueError
        If ``bins`` is outside [2, 256] or ``x`` holds an infinite value.
    """
    if not 2 <= bins <= MAX_BINS:
        raise ValueError(f"bins must be in [2, {MAX_BINS}], got {bins}")
    a = np.asarray(x, dtype=np.float64).ravel()
    if np.isinf(a).any():
        raise ValueError("cannot bin an infinite value")
    values = np.sort(a[~np.isnan(a)])
    if values.size == 0:
        return np.zeros(0, dtype=np.float64)
    # the distinct values of the sorted values: one linear pass, not a second sort
    distinct = values[np.concatenate([[True], values[1:] != values[:-1]])]
    if distinct.size <= bins:
        return np.asarray((distinct[:-1] + distinct[1:]) / 2.0, dtype=np.float64)
    n = values.size
    ranks = -(-np.arange(1, bins, dtype=np.int64) * n // bins) - 1  # ceil(i n / bins) - 1
    picked = values[ranks]
    above = np.searchsorted(distinct, picked, side="right")
    keep = above < distinct.size  # the largest value has nothing above it: no edge
    edges = (picked[keep] + distinct[above[keep]]) / 2.0
    return np.asarray(np.unique(edges), dtype=np.float64)


def bin_codes(x: npt.ArrayLike, edges: Float) -> Codes:
    """Codes of ``x``: the number of edges strictly below the value (0 .. len(edges));
    NaN -> len(edges) + 1, the missing bin."""
    a = np.asarray(x, dtype=np.float64).ravel()
    if len(edges) <= 16:  # a few comparisons beat a binary search per value
        codes = np.zeros(a.shape, dtype=np.int32)
        for edge in edges:
            codes += a > edge  # the same count as searchsorted(edges, a, "left")
    else:
        codes = np.searchsorted(edges, a, side="left").astype(np.int32)
    codes[np.isnan(a)] = len(edges) + 1
    return codes


@dataclass(frozen=True)
class BinnedMatrix:
    """Codes of n rows in k columns, laid out as one one-hot matrix of width ``width``.

    ``codes[i, j]`` is the slot of row i within column j (0 .. slots[j] - 1; the missing
    bin is slot slots[j] - 1). ``offsets[j]`` is where column j's slots start in the
    one-hot matrix; ``offsets[k]`` is its width.
    """

    codes: Codes
    edges: tuple[Float, ...]
    slots: Codes

    @property
    def n_rows(self) -> int:
        return int(self.codes.shape[0])

    @property
    def n_columns(self) -> int:
        return int(self.codes.shape[1])

    @property
    def offsets(self) -> Index:
        return np.concatenate([[0], np.cumsum(self.slots, dtype=np.int64)]).astype(np.int64)

    @property
    def width(self) -> int:
        return int(np.sum(self.slots, dtype=np.int64))

    def missing_slot(self, column: int) -> int:
        return int(self.slots[column]) - 1

    def flat_index(self) -> Index:
        """n x k positions of each row's 1 in the one-hot matrix (offset + code)."""
        return np.asarray(self.codes, dtype=np.int64) + self.offsets[:-1][None, :]

    def one_hot(self, dtype: npt.DTypeLike = np.float64) -> npt.NDArray[np.generic]:
        """The dense n x width 0/1 matrix B (one 1 per row and column block)."""
        out = np.zeros((self.n_rows, self.width), dtype=dtype)
        rows = np.repeat(np.arange(self.n_rows, dtype=np.int64), self.n_columns)
        out[rows, self.flat_index().ravel()] = 1
        return out

    def take(self, rows: Index) -> BinnedMatrix:
        """The same binning restricted to ``rows`` (e.g. the training rows)."""
        return BinnedMatrix(np.ascontiguousarray(self.codes[rows]), self.edges, self.slots)

    def histogram(self, values: Float) -> Float:
        """B^T V in the clear: per-slot sums of each column of ``values`` (n x t).

        The plaintext twin of the secure bin product; exact for integer-valued floats
        whose sums stay below 2^53.
        """
        v = np.asarray(values, dtype=np.float64)
        if v.ndim == 1:
            v = v[:, None]
        if v.shape[0] != self.n_rows:
            raise ValueError(f"values have {v.shape[0]} rows, the binned matrix {self.n_rows}")
        out = np.zeros((self.width, v.shape[1]), dtype=np.float64)
        for j in range(self.n_columns):
            np.add.at(out, self.codes[:, j].astype(np.int64) + int(self.offsets[j]), v)
        return out


def bin_matrix(x: npt.ArrayLike, fit_rows: Index | None, bins: int, *,
               fixed_width: bool = False) -> BinnedMatrix:
    """Fit edges per column on ``fit_rows`` (default: all rows) and code every row.

    With ``fixed_width`` every column gets ``bins + 1`` slots (``bins`` value slots and
    the missing slot), so the one-hot width is k * (bins + 1) whatever the data.
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"expected an n x k matrix, got shape {a.shape}")
    fit = a if fit_rows is None else a[np.asarray(fit_rows, dtype=np.int64)]
    edges = tuple(fit_edges(fit[:, j], bins) for j in range(a.shape[1]))
    return apply_edges(a, edges, bins + 1 if fixed_width else None)


def apply_edges(x: npt.ArrayLike, edges: tuple[Float, ...], slots: int | None = None
                ) -> BinnedMatrix:
    """Code every row of ``x`` with known edges (e.g. a saved model's, for new rows).

    ``slots``: a fixed number of slots per column (missing in the last one); default
    len(edges) + 2 per column.
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != len(edges):
        raise ValueError(f"expected an n x {len(edges)} matrix, got shape {a.shape}")
    widths = np.array([len(e) + 2 if slots is None else slots for e in edges], dtype=np.int32)
    if (widths < np.array([len(e) + 2 for e in edges])).any():
        raise ValueError(f"{slots} slots cannot hold a column's value bins and its missing bin")
    codes = np.empty(a.shape, dtype=np.int32)
    columns = np.ascontiguousarray(a.T)  # each column contiguous once, not strided thrice
    for j, e in enumerate(edges):
        c = bin_codes(columns[j], e)
        c[np.isnan(columns[j])] = widths[j] - 1
        codes[:, j] = c
    return BinnedMatrix(codes, edges, widths)
