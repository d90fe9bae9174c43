"""Principal components of one party's own features, fitted on its training rows.

What it does: :func:`fit_pca` standardizes the columns on the training rows, takes the
eigenvectors of their correlation matrix with the largest eigenvalues (K of them, or with
``"auto"`` the fewest that explain at least 90 % of the variance) and scales each by
1/sqrt(eigenvalue), so the components have unit variance on the training rows;
:meth:`Pca.apply` maps any rows with the same mean, std and loadings.

What it assumes: the party runs this locally on its own matrix and keeps the result with
its model (the paper fits each stage model on principal components; nothing about them
crosses to the other party, which sees only the number of columns). Components are signed
so that each one's largest loading is positive, which makes fits reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Float = npt.NDArray[np.float64]
AUTO_VARIANCE = 0.9


def parse_components(value: str | int | None) -> int | str | None:
    """``--pca`` as given: None, "auto" or a positive integer (ValueError otherwise)."""
    if value is None or value == "":
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        k = int(value)
        if k < 1:
            raise ValueError(f"--pca: expected a positive number of components or 'auto', "
                             f"got {value!r}")
        return k
    if value == "auto":
        return "auto"
    raise ValueError(f"--pca: expected a positive number of components or 'auto', got {value!r}")


@dataclass(frozen=True)
class Pca:
    """Standardization and loadings of a fitted PCA (all float64)."""

    mean: Float
    std: Float
    loadings: Float  # (d, k): z @ loadings gives unit-variance components
    explained: Float  # share of variance of each kept component

    @property
    def names(self) -> list[str]:
        return [f"pc{i + 1}" for i in range(self.loadings.shape[1])]

    def apply(self, x: Float) -> Float:
        return np.asarray(((x - self.mean) / self.std) @ self.loadings, dtype=np.float64)

    def as_dict(self) -> dict[str, list[float] | list[list[float]]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(),
                "loadings": self.loadings.tolist(), "explained": self.explained.tolist()}

    @staticmethod
    def from_dict(d: dict[str, list[float] | list[list[float]]]) -> Pca:
        return Pca(np.array(d["mean"], dtype=np.float64), np.array(d["std"], dtype=np.float64),
                   np.array(d["loadings"], dtype=np.float64),
                   np.array(d["explained"], dtype=np.float64))


def fit_pca(x_train: Float, components: int | str) -> Pca:
    """Fit on the training rows; ``components`` is a count (capped at the column count and
    at the number of non-degenerate directions) or ``"auto"`` (90 % of the variance).

    Raises
    ------
    ValueError
        With fewer than two training rows or no column that varies.
    """
    if x_train.ndim != 2 or x_train.shape[0] < 2:
        raise ValueError(f"PCA needs at least two training rows, got shape {x_train.shape}")
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    z = (x_train - mean) / std
    corr = z.T @ z / z.shape[0]
    values, vectors = np.linalg.eigh(corr)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    total = float(values.sum())
    usable = int(np.sum(values > 1e-9 * max(total, 1e-300)))
    if usable == 0:
        raise ValueError("PCA: no feature varies on the training rows")
    share = values / total
    if components == "auto":
        k = int(np.searchsorted(np.cumsum(share), AUTO_VARIANCE - 1e-12) + 1)
    else:
        k = int(components)
    k = max(1, min(k, usable))
    vectors = vectors[:, :k]
    signs = np.sign(vectors[np.argmax(np.abs(vectors), axis=0), np.arange(k)])
    vectors = vectors * np.where(signs == 0, 1.0, signs)
    return Pca(mean, std, vectors / np.sqrt(values[:k]), share[:k])
