"""One party's own model file: its features, mu, sigma and weights (bank: intercept and
the Platt calibration of its probabilities).

Written atomically (temp file + rename), so a failed job never leaves half a model, and
readable by its owner only (``federation.protocol.files``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from federation.protocol.errors import InputDataError
from federation.protocol.files import CONFIDENTIAL, write_atomic
from federation.protocol.messages import Role
from parties.data import Standardizer
from parties.evaluation.platt import Platt
from parties.pca import Pca


def atomic_write_text(path: Path, text: str, mode: int = CONFIDENTIAL) -> None:
    """Write ``text`` to ``path`` so readers see either nothing or the whole file; private
    unless ``mode`` is ``SHARED`` (``federation.protocol.files`` says which files are)."""
    write_atomic(path, text, mode)


@dataclass(frozen=True)
class PartyModel:
    role: str
    job_id: str
    mode: str
    features: list[str]
    mean: list[float]
    std: list[float]
    weights: list[float]
    intercept: float | None = None
    clip: float | None = None  # mode shared trains on z clipped to [-clip, clip]
    # --reveal-weights none: this party's shares of both weight blocks (ring integers, f
    # fraction bits); the weights themselves are known to nobody and scoring is joint.
    shares: dict[str, list[int]] | None = None
    frac_bits: int | None = None
    feature_frac_bits: int | None = None
    # Bank only: Platt scaling fitted on the training rows' exact logits (slope, intercept);
    # every probability the bank gives is sigma(slope u + intercept). None: sigma(u).
    calibration: dict[str, float] | None = None
    # --pca: this party's own principal components (``parties.pca``): ``features`` are the
    # input columns, ``mean``/``std``/``weights`` belong to the components.
    pca: dict[str, Any] | None = None

    def probability(self, u: np.ndarray) -> np.ndarray:
        """The probability of bad for full logits u = u_G + u_B, calibrated if fitted."""
        return Platt(**(self.calibration or {})).probability(u)

    def standardizer(self) -> Standardizer:
        return Standardizer(np.array(self.mean), np.array(self.std))

    def standardized(self, x: np.ndarray) -> np.ndarray:
        """The standardized model inputs of raw feature rows (components first, if any)."""
        if self.pca is not None:
            x = Pca.from_dict(self.pca).apply(x)
        return self.standardizer().apply(x)

    @property
    def input_names(self) -> list[str]:
        """Names of the model's inputs: the features, or pc1..pcK with --pca."""
        if self.pca is not None:
            return [f"pc{i + 1}" for i in range(len(self.mean))]
        return list(self.features)

    def partial_logit(self, x: np.ndarray) -> np.ndarray:
        """u_own = z(x) . w (+ intercept for the bank)."""
        if self.shares is not None:
            raise InputDataError(f"the {self.role}'s model keeps its weights shared; it scores "
                                 "only jointly (gridcredit score), not alone")
        z = self.standardized(x)
        if self.clip is not None:
            z = np.clip(z, -self.clip, self.clip)
        u = z @ np.array(self.weights)
        return np.asarray(u + (self.intercept or 0.0), dtype=np.float64)

    def coefficient_table(self) -> str:
        """CSV of this party's own coefficients (per standardized feature), for its eyes."""
        if self.shares is not None:
            return ("feature,weight,mean,std\n" + "".join(
                f"{f},(kept shared),{m:.8g},{s:.8g}\n"
                for f, m, s in zip(self.input_names, self.mean, self.std)))
        rows = ["feature,weight,mean,std"]
        rows += [f"{f},{w:.8g},{m:.8g},{s:.8g}"
                 for f, w, m, s in zip(self.input_names, self.weights, self.mean, self.std)]
        if self.intercept is not None:
            rows.append(f"(intercept),{self.intercept:.8g},,")
        return "\n".join(rows) + "\n"

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(asdict(self), indent=2) + "\n")

    @staticmethod
    def load(path: Path, role: Role) -> PartyModel:
        try:
            raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            model = PartyModel(**raw)
            model.probability(np.zeros(1))  # a malformed calibration fails here, not later
        except (OSError, ValueError, TypeError) as exc:
            raise InputDataError(f"{path}: not a gridcredit model file ({exc})") from exc
        if model.role != role.value:
            raise InputDataError(f"{path}: model of the {model.role}, this node is the {role}")
        return model
