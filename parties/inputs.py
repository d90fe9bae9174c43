"""What a party trains on: the columns a selection or stage names, and its own principal
components.

What it does: :func:`select_columns` keeps the named columns of a party's table (a
screening's selection or a stage's indicators, given to this party only);
:func:`fit_training_pca` fits ``parties.pca`` on this party's aligned training rows.

What it assumes: both run locally on the party's own data; the only thing the peer and the
coordinator see of either is the resulting column count.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from federation.protocol.errors import ConfigError, InputDataError
from federation.protocol.messages import Role, TrainSettings
from federation.protocol.schedule import Schedule
from parties.data import PartyData
from parties.pca import Pca, fit_pca


def select_columns(data: PartyData, features: list[str], role: Role) -> PartyData:
    """``data`` with only ``features``; one error line naming the missing columns."""
    missing = [f for f in features if f not in data.features]
    if missing:
        raise InputDataError(f"{data.path}: missing column(s) {missing} that the selection "
                             "names")
    if not features:
        raise ConfigError(f"{role}: the selection keeps none of the {role}'s columns")
    return data.select(features)


def fit_training_pca(data: PartyData, rows: npt.NDArray[np.intp], settings: TrainSettings,
                     components: int | str, stats: dict[str, Any] | None = None) -> Pca:
    """PCA of ``data``'s aligned training rows (the split both parties derive alike); the
    component count and explained share go into ``stats`` if given."""
    schedule = Schedule(len(rows), settings.validation_fraction, settings.batch_size,
                        settings.seed)
    train = data.x[rows.astype(np.int64)[schedule.train_rows]]
    try:
        pca = fit_pca(train, components)
    except ValueError as exc:
        raise InputDataError(f"{data.path}: {exc}") from exc
    if stats is not None:
        stats.update(pca_components=pca.loadings.shape[1],
                     pca_explained=float(pca.explained.sum()))
    return pca
