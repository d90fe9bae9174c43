"""Boosted trees: what the grid and the coordinator see during training.

A tree job runs in process (coordinator, dealer, both parties over an in-memory channel)
on 4,000 rows, 4 + 3 features, 4 trees of depth 3; every message the grid receives and
every request the coordinator receives is recorded.

- Transcript: the grid receives only the masked bin-product vectors F, the masked
  membership bits of the routing exchange and the split specifications (node, feature,
  slot, more); the coordinator receives each tree's two loss scalars from the bank and
  nothing but barriers from the grid. No 8-byte window of any of it holds a secret float
  of the bank (labels, features, raw scores, probabilities, g, h), and no F element
  equals the unmasked fixed-point value at its position more often than chance.
- Label inference: per training row, everything the grid received about that row (each
  product's F entries, each routing exchange's masked bits) feeds a classifier trained
  on half the rows and scored on the other half: AUC at chance (<= 0.55). The positive
  control, the same attack on the unmasked values V = (g, h) per node, recovers the labels
  (AUC >= 0.9): the attack works, the masks stop it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from crypto import bin_product as bp
from crypto.limbs import unpack
from federation.coordinator import Coordinator
from federation.protocol.messages import (
    Envelope,
    JoinRequest,
    Model,
    Role,
    SyncRequest,
    TrainSettings,
)
from federation.protocol.schedule import Schedule
from federation.protocol.tree_schedule import TreeSchedule
from federation.transport.channel import InMemoryChannel
from parties.bin_product import BankBins
from parties.gbdt.core import sigmoid
from parties.gbdt.fit import fit_bank, fit_grid

JOB = "gbdt-privacy"
ROWS = 4_000
MAX_AUC = 0.55
Float = npt.NDArray[np.float64]


@dataclass
class View:
    received: list[Envelope] = field(default_factory=list)         # by the grid
    requests: list[tuple[Role, Any]] = field(default_factory=list)  # by the coordinator
    values: list[npt.NDArray[np.int64]] = field(default_factory=list)  # the bank's V
    settings: TrainSettings = field(default_factory=TrainSettings)
    schedule: Schedule | None = None
    y: Float = field(default_factory=lambda: np.zeros(0))
    xb: Float = field(default_factory=lambda: np.zeros(0))
    raw: Float = field(default_factory=lambda: np.zeros(0))


class RecordingCoordinator(Coordinator):
    def __init__(self, view: View, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._view = view

    def sync(self, req: SyncRequest) -> Any:
        self._view.requests.append((req.role, req))
        return super().sync(req)

    def deal(self, req: Any) -> Any:
        self._view.requests.append((req.role, req))
        return super().deal(req)


@pytest.fixture(scope="module")
def view(monkeypatch_module: pytest.MonkeyPatch) -> View:
    rng = np.random.default_rng(5)
    xg, xb = rng.normal(size=(ROWS, 4)), rng.normal(size=(ROWS, 3))
    logit = 1.2 * xg[:, 0] - xg[:, 1] + 1.5 * xb[:, 0] + 0.5 * xb[:, 2]
    y = (rng.random(ROWS) < sigmoid(logit)).astype(float)
    out = View(settings=TrainSettings(model=Model.GBDT, trees=4, depth=3, bins=16,
                                      learning_rate=0.3, early_stopping_rounds=0, seed=4),
               y=y, xb=xb)
    original = BankBins.multiply

    def recording(self: BankBins, round_: int, block: str, start: int, v: Any) -> Any:
        out.values.append(np.array(v, copy=True))
        return original(self, round_, block, start, v)

    monkeypatch_module.setattr(BankBins, "multiply", recording)
    s = out.settings
    coordinator = RecordingCoordinator(out, JOB, s, barrier_timeout=60)
    grid_ch, bank_ch = InMemoryChannel.pair(JOB)
    grid_ch.observers.append(lambda d, env: out.received.append(env) if d == "received"
                             else None)
    schedule = Schedule(ROWS, s.validation_fraction, s.batch_size, s.seed)
    out.schedule = schedule
    results: dict[Role, Any] = {}
    errors: list[BaseException] = []

    def party(role: Role, x: Float, channel: InMemoryChannel) -> None:
        try:
            plan = coordinator.join(JoinRequest(JOB, role, "mem", ROWS, x.shape[1]))
            reply = coordinator.sync(SyncRequest(JOB, role, 0, "aligned",
                                                 {"intersection": ROWS}))
            if role is Role.GRID:
                results[role] = fit_grid(JOB, s, schedule, plan.dealer_seed, x, channel,
                                         coordinator)
            else:
                results[role] = fit_bank(JOB, s, schedule, int(reply.values["grid_width"]),
                                         plan.dealer_seed, x, y, channel, coordinator)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)
            channel.abort(str(exc))

    threads = [threading.Thread(target=party, args=(Role.GRID, xg, grid_ch)),
               threading.Thread(target=party, args=(Role.BANK, xb, bank_ch))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    if errors:
        raise errors[0]
    out.raw = results[Role.BANK].boosted.raw()
    return out


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _secret_words(v: View) -> set[bytes]:
    s = v.schedule
    assert s is not None
    p = sigmoid(v.raw)
    floats = [v.y, 0.5 - v.y, v.xb.ravel(), v.raw, p, p - v.y, p * (1 - p)]
    words = {np.float64(x).tobytes() for arr in floats for x in np.asarray(arr).ravel()}
    return {w for w in words if w != bytes(8)}  # 0.0 also pads integer arrays


def test_the_grid_and_coordinator_receive_only_masked_values_and_scalars(view: View) -> None:
    names = {(env.tag.step, tuple(sorted(env.tensors))) for env in view.received}
    assert names == {("bins-product", ("F",)),
                     ("gbdt-route", ("F", "features", "more", "nodes", "slots"))}
    secrets = _secret_words(view)
    hits = 0
    for env in view.received:
        for arr in env.tensors.values():
            raw = np.ascontiguousarray(arr).tobytes()
            hits += sum(raw[i:i + 8] in secrets for i in range(0, max(0, len(raw) - 7)))
    assert hits == 0
    # the coordinator: barriers; the bank adds its two losses per tree; nobody else talks
    for role, req in view.requests:
        if not isinstance(req, SyncRequest):
            continue
        allowed = {"intersection"} if req.step == "aligned" else (
            {"train_loss", "validation_loss"} if role is Role.BANK else set())
        assert set(req.values) <= allowed and not req.ring_values
    deals = [role for role, r in view.requests if not isinstance(r, SyncRequest)]
    assert deals and set(deals) == {Role.BANK}  # the grid needs no dealer: its masks are its own


def _bits(view: View) -> int:
    s = view.schedule
    assert s is not None
    return TreeSchedule(s.n_train, s.n_rows, 4 * 17, view.settings.depth,
                        view.settings.trees, view.settings.frac_bits).bits


def grid_features(view: View) -> tuple[Float, Float]:
    """Per training row: the F entries of every product and the masked routing bits."""
    s = view.schedule
    assert s is not None
    bits, cols = _bits(view), []
    for env in view.received:
        f = env.tensors["F"]
        if env.tag.step == "bins-product":
            words = unpack(np.asarray(f, dtype=np.uint8), bits)
            cols.append(words.astype(np.float64) / 2.0**bits)
        else:
            masked = bp.unpack_bits(np.asarray(f, dtype=np.uint64), s.n_rows)
            cols.append(masked.reshape(-1, s.n_rows).T[s.train_rows].astype(np.float64))
    return np.hstack(cols), view.y[s.train_rows]


def _auc(x: Float, y: Float) -> float:
    half = len(y) // 2
    model = HistGradientBoostingClassifier(max_iter=60, random_state=0)
    model.fit(x[:half], y[:half])
    return float(roc_auc_score(y[half:], model.predict_proba(x[half:])[:, 1]))


def test_a_classifier_on_the_grids_view_predicts_labels_at_chance(view: View) -> None:
    x, y = grid_features(view)
    assert x.shape[0] == len(y) and x.shape[1] > 20
    auc = _auc(x, y)
    unmasked = np.hstack([v.astype(np.float64) for v in view.values])
    control = _auc(unmasked, y)
    print(f"\n[gbdt label inference] masked view AUC {auc:.6f}, unmasked V {control:.3f}, "
          f"{x.shape[1]} numbers per row")
    assert auc <= MAX_AUC
    assert control >= 0.9


def test_no_masked_entry_equals_its_unmasked_value_beyond_chance(view: View) -> None:
    bits = _bits(view)
    products = [env for env in view.received if env.tag.step == "bins-product"]
    assert len(products) == len(view.values)
    equal = total = 0
    for env, v in zip(products, view.values):
        f = unpack(np.asarray(env.tensors["F"], dtype=np.uint8), bits)
        ring_v = np.asarray(v, dtype=np.int64).view(np.uint64) & np.uint64((1 << bits) - 1)
        equal += int(np.count_nonzero(f == ring_v))
        total += f.size
    assert total > 10_000 and equal <= 2
