"""Federated screening of indicators, each party's side (after PSI alignment).

Rounds (party to party unless said; the coordinator deals the bank's corrections):

1. grid -> bank: E of the grid's one-hot bin matrix B (aligned rows x slots; bins fitted on
   the training rows, missing values in each indicator's last slot).
2. bank -> grid: F = V - m for V = [y on training rows, training rows, validation rows];
   grid -> bank: z_G. The bank opens B^T V: per grid bin, the training rows, training bads
   and validation rows. Nothing is opened to the grid.
3. grid -> bank: E of the grid's standardized indicators X_G (training rows, fixed point).
4. bank -> grid: F = Z_B - m; grid -> bank: z_G. The bank opens X_G^T Z_B: the cross-party
   Pearson correlations.
5. grid -> bank: its indicator names, slot layout, the correlations among its own
   indicators, and (with a second as-of month) the PSI of each indicator between months.
6. bank -> grid: the names of the grid's kept indicators (and with ``reveal_to_grid =
   "summary"`` the IV of each grid indicator). Never a per-bin figure.

The bank bins and counts its own indicators in the clear, computes every statistic, applies
the rules and writes ``screen.json`` and ``selection.json``; the grid writes its own view
(its bin edges, its kept names, IVs if revealed).
Assumes: semi-honest parties, a non-colluding dealer, an authenticated channel.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from crypto.limbs import MAX_BITS, ring_bits
from federation.protocol.errors import ConfigError, InputDataError, ProtocolAbort
from federation.protocol.messages import (
    DealRequest,
    Envelope,
    JobPlan,
    Role,
    Tag,
    TrainSettings,
)
from federation.protocol.products import (
    SCREEN_COUNT_COLUMNS,
    SCREEN_COUNTS_BLOCK,
    SCREEN_COUNTS_MATRIX,
    SCREEN_DEAL_EPOCH,
    SCREEN_PEARSON_BLOCK,
    SCREEN_PEARSON_MATRIX,
)
from federation.protocol.schedule import Schedule
from federation.transport.channel import Channel, CoordinatorLink
from parties.bin_product import BankBins, BinSpec, GridBins
from parties.binning import BinnedMatrix, apply_edges, bin_matrix
from parties.data import PartyData, load_party_csv
from parties.dense_product import DenseGrid
from parties.evaluation.screening.document import SlotCounts, screen
from parties.evaluation.screening.redundancy import correlation, standardize
from parties.evaluation.screening.selection import load_rules
from parties.evaluation.screening.stability import psi
from parties.model import atomic_write_text

log = logging.getLogger(__name__)
ROUND_COUNTS, ROUND_PEARSON, ROUND_INFO, ROUND_SELECTION = 1, 3, 5, 6
STEP_GRID_INFO, STEP_SELECTION = "screen-grid-info", "screen-selection"
COUNTS_BLOCK, PEARSON_BLOCK = SCREEN_COUNTS_BLOCK, SCREEN_PEARSON_BLOCK
COUNTS_MATRIX, PEARSON_MATRIX = SCREEN_COUNTS_MATRIX, SCREEN_PEARSON_MATRIX
CLIP = 8.0
REVEAL = ("none", "summary")


@dataclass(frozen=True)
class ScreenConfig:
    """A party's screening options (the bank's rules, merge and reveal decide for both)."""

    bins: int = 10
    rules: Path | None = None
    reveal_to_grid: str = "none"
    monotone_merge: bool = False
    compare: Path | None = None  # this party's table at a second as-of month


@dataclass(frozen=True)
class Sizes:
    """Public sizes of a screening job: what the coordinator learns, and the ring widths."""

    n: int
    n_train: int
    count_bits: int
    pearson_bits: int
    frac_bits: int

    @staticmethod
    def of(n: int, n_train: int) -> Sizes:
        # Pearson: |z| <= 8 at f fraction bits, products 2(3 + f) bits, summed over n_train.
        frac = min(12, (MAX_BITS - 1 - n_train.bit_length()) // 2 - 3)
        if frac < 4:
            raise ConfigError(f"{n_train} training rows are too many for the correlation ring")
        return Sizes(n, n_train, ring_bits(n, 1), ring_bits(n_train, 2 * (3 + frac)), frac)


def sizes(settings: TrainSettings, n: int) -> tuple[Schedule, Sizes]:
    schedule = Schedule(n, settings.validation_fraction, settings.batch_size, settings.seed)
    return schedule, Sizes.of(n, schedule.n_train)


class _Phases:
    """Logs the process CPU and wall seconds of each phase of a party's side."""

    def __init__(self, role: Role) -> None:
        self._role, self._cpu, self._wall = role, time.process_time(), time.perf_counter()

    def done(self, phase: str) -> None:
        cpu, wall = time.process_time(), time.perf_counter()
        log.info("screening %s: %s took %.3f s CPU, %.3f s wall; peak RSS %s", self._role,
                 phase, cpu - self._cpu, wall - self._wall, _peak_rss())
        self._cpu, self._wall = cpu, wall


def _peak_rss() -> str:
    try:  # Linux; elsewhere the log says so
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return f"{int(line.split()[1]) // 1024} MB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def fixed_point(z: npt.NDArray[np.float64], frac: int) -> npt.NDArray[np.int64]:
    return np.rint(np.clip(z, -CLIP, CLIP) * (1 << frac)).astype(np.int64)


def _compare_psi(binned: BinnedMatrix, train: npt.NDArray[np.int64], data: PartyData,
                 compare: Path | None, id_column: str) -> npt.NDArray[np.float64]:
    """PSI per indicator between the training rows and the same enterprises' values in
    ``compare`` (binned with the training edges); NaN when no comparison is given."""
    k = binned.n_columns
    if compare is None:
        return np.full(k, np.nan)
    other = load_party_csv(compare, id_column, None, allow_missing=True)
    missing = [f for f in data.features if f not in other.features]
    if missing:
        raise InputDataError(f"{compare}: missing column(s) {missing} of the screened table")
    index = {v: i for i, v in enumerate(other.ids)}
    rows = np.array([index[data.ids[i]] for i in train if data.ids[i] in index], dtype=np.int64)
    if rows.size == 0:
        raise InputDataError(f"{compare}: none of the screened enterprises is in it")
    x = other.select(data.features).x[rows]
    then = apply_edges(x, binned.edges, int(binned.slots[0]))
    out = np.empty(k)
    for j in range(k):
        width = int(binned.slots[j])
        a = np.bincount(binned.codes[train, j], minlength=width)
        b = np.bincount(then.codes[:, j], minlength=width)
        out[j] = psi(a, b)
    return out


def run_grid(channel: Channel, job_id: str, seed: bytes, settings: TrainSettings,
             data: PartyData, cfg: ScreenConfig, out: Path, id_column: str) -> dict[str, Any]:
    """The grid's side; ``data`` holds the aligned rows in canonical order."""
    started, cpu = time.perf_counter(), time.process_time()
    n = len(data.ids)
    schedule, s = sizes(settings, n)
    train = np.sort(schedule.train_rows)
    phases = _Phases(Role.GRID)
    binned = bin_matrix(data.x, train, cfg.bins, fixed_width=True)
    phases.done("binning")
    deadline = settings.deadline_seconds
    counts = GridBins(BinSpec(job_id, COUNTS_MATRIX, n, binned.width, s.count_bits, deadline),
                      seed, binned.flat_index(), channel)
    sent = counts.send_masked(ROUND_COUNTS)
    phases.done("E of the bins")
    counts.open_block(COUNTS_BLOCK, SCREEN_COUNT_COLUMNS)
    counts.answer(ROUND_COUNTS + 1, COUNTS_BLOCK, 0)
    phases.done("counts product")
    z = standardize(data.x[train])
    k = z.shape[1]
    dense = DenseGrid(BinSpec(job_id, PEARSON_MATRIX, s.n_train, k, s.pearson_bits, deadline),
                      seed, fixed_point(z, s.frac_bits), channel)
    sent += dense.send_masked(ROUND_PEARSON)
    dense.open_block(PEARSON_BLOCK, int(_expect_int(channel, ROUND_PEARSON, "bank_columns",
                                                    deadline)))
    dense.answer(ROUND_PEARSON + 1, PEARSON_BLOCK, 0)
    phases.done("correlation product")
    channel.send(Envelope(job_id, Tag(ROUND_INFO, STEP_GRID_INFO), Role.GRID, {
        "names": np.array(data.features), "slots": binned.slots.astype(np.int64),
        "corr": correlation(z, z),
        "psi_months": _compare_psi(binned, train, data, cfg.compare, id_column)}))
    got = channel.recv(Tag(ROUND_SELECTION, STEP_SELECTION), deadline).tensors
    kept = [str(v) for v in np.asarray(got.get("kept", np.array([], dtype="U1")))]
    unknown = sorted(set(kept) - set(data.features))
    if unknown:
        raise ProtocolAbort(f"bank kept grid indicator(s) {unknown} the grid does not have")
    view: dict[str, Any] = {
        "indicators": [{"name": f, "edges": binned.edges[j].tolist(),
                        "slots": int(binned.slots[j])} for j, f in enumerate(data.features)],
        "kept": kept, "bins": cfg.bins, "rows": n, "training_rows": s.n_train}
    if "iv" in got:
        iv = np.asarray(got["iv"], dtype=np.float64)
        if iv.shape != (k,):
            raise ProtocolAbort(f"bank sent {iv.shape} IVs for {k} grid indicators")
        view["iv"] = dict(zip(data.features, iv.tolist()))
    atomic_write_text(out / "screen.json", json.dumps(view, indent=2) + "\n")
    phases.done("selection")
    return {"screen_seconds": time.perf_counter() - started,
            "screen_cpu_seconds": time.process_time() - cpu, "masked_bytes": sent,
            "kept": len(kept)}


def _expect_int(channel: Channel, round_: int, what: str, timeout: float) -> int:
    env = channel.recv(Tag(round_, f"screen-{what}"), timeout)
    value = np.asarray(env.tensors.get(what, np.array([], dtype=np.int64)))
    if value.dtype.kind not in "iu" or value.shape != (1,) or not 0 < int(value[0]) < 1 << 20:
        raise ProtocolAbort(f"bank sent {value.dtype} {value.shape} as {what!r}")
    return int(value[0])


Counts = npt.NDArray[np.int64]


def _bank_bins(binned: BinnedMatrix, train: npt.NDArray[np.int64],
               valid: npt.NDArray[np.int64], y: npt.NDArray[np.float64],
               ) -> list[tuple[Counts, Counts, Counts]]:
    """Per own indicator: training rows, training bads and validation rows per slot."""
    out = []
    for j in range(binned.n_columns):
        width = int(binned.slots[j])
        c = binned.codes[:, j]
        out.append((np.bincount(c[train], minlength=width).astype(np.int64),
                    np.bincount(c[train], weights=y[train], minlength=width).astype(np.int64),
                    np.bincount(c[valid], minlength=width).astype(np.int64)))
    return out


def _corrections(coordinator: CoordinatorLink, job_id: str) -> dict[str, npt.NDArray[np.uint64]]:
    got = coordinator.deal(DealRequest(job_id, Role.BANK, SCREEN_DEAL_EPOCH)).corrections
    if COUNTS_BLOCK not in got or PEARSON_BLOCK not in got:
        raise ProtocolAbort(f"the dealer sent {sorted(got)}; expected the screening blocks")
    return got


def run_bank(channel: Channel, coordinator: CoordinatorLink, job_id: str, seed: bytes,
             settings: TrainSettings, data: PartyData, cfg: ScreenConfig, out: Path,
             id_column: str, agreed: dict[str, float] | None = None) -> dict[str, Any]:
    """The bank's side; ``data`` holds the aligned rows (with labels) in canonical order;
    ``agreed``: the coordinator's reply at the aligned barrier (the grid's width)."""
    if data.y is None:
        raise ProtocolAbort("the bank has no labels")
    if cfg.reveal_to_grid not in REVEAL:
        raise ConfigError(f"reveal_to_grid: expected one of {REVEAL}, got {cfg.reveal_to_grid!r}")
    try:
        rules = load_rules(cfg.rules)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    started, cpu = time.perf_counter(), time.process_time()
    n, y = len(data.ids), data.y
    schedule, s = sizes(settings, n)
    train, valid = np.sort(schedule.train_rows), schedule.validation_rows
    deadline = settings.deadline_seconds
    # 1-2: per-bin counts of the grid's indicators, opened to the bank only. With the grid's
    # width from the coordinator, E^T m is summed up as E arrives (E is never kept) and the
    # dealer's c_1, computed meanwhile, is fetched after; without, c_1 first gives the width.
    width = int(agreed.get("grid_width", 0)) if agreed else 0
    c_1 = None if width > 0 else _corrections(coordinator, job_id)
    if c_1 is not None:
        width = c_1[COUNTS_BLOCK].shape[0]
    in_train = np.zeros(n, dtype=np.int64)
    in_train[train] = 1
    in_valid = np.zeros(n, dtype=np.int64)
    in_valid[valid] = 1
    v = np.column_stack([in_train * y.astype(np.int64), in_train, in_valid])
    counts = BankBins(BinSpec(job_id, COUNTS_MATRIX, n, width, s.count_bits, deadline), seed,
                      channel)
    phases = _Phases(Role.BANK)
    counts.receive_masked(ROUND_COUNTS, [(COUNTS_BLOCK, SCREEN_COUNT_COLUMNS)])
    phases.done("E of the bins")
    c_1 = _corrections(coordinator, job_id) if c_1 is None else c_1
    phases.done("dealer's corrections")
    counts.prepare([(COUNTS_BLOCK, SCREEN_COUNT_COLUMNS, c_1[COUNTS_BLOCK])])
    grid_counts = counts.multiply(ROUND_COUNTS + 1, COUNTS_BLOCK, 0, v)
    counts.release(COUNTS_BLOCK)
    phases.done("counts product")
    # 3-4: cross-party correlations X_G^T Z_B / n_train.
    z_bank = standardize(data.x[train])
    k_grid, k_bank = c_1[PEARSON_BLOCK].shape[0], z_bank.shape[1]
    channel.send(Envelope(job_id, Tag(ROUND_PEARSON, "screen-bank_columns"), Role.BANK,
                          {"bank_columns": np.array([k_bank], dtype=np.int64)}))
    pearson = BankBins(BinSpec(job_id, PEARSON_MATRIX, s.n_train, k_grid, s.pearson_bits,
                               deadline), seed, channel)
    pearson.receive_masked(ROUND_PEARSON, [(PEARSON_BLOCK, k_bank)])  # E not kept
    pearson.prepare([(PEARSON_BLOCK, k_bank, c_1[PEARSON_BLOCK])])
    cross = pearson.multiply(ROUND_PEARSON + 1, PEARSON_BLOCK, 0,
                             fixed_point(z_bank, s.frac_bits))
    cross_corr = np.ldexp(cross.astype(np.float64), -2 * s.frac_bits) / s.n_train
    phases.done("correlation product")
    # 5: the grid's names, layout, own correlations and month PSI.
    info = channel.recv(Tag(ROUND_INFO, STEP_GRID_INFO), deadline).tensors
    names, slots, grid_corr, psi_months = _grid_info(info, k_grid, width)
    # The bank's own indicators, in the clear.
    own_binned = bin_matrix(data.x, train, cfg.bins, fixed_width=True)
    own = _bank_bins(own_binned, train, valid, y)
    own_psi = _compare_psi(own_binned, train, data, cfg.compare, id_column)
    entries = _slot_counts(names, slots, grid_counts, psi_months)
    entries += [SlotCounts("bank", f, c, b, vc, None if np.isnan(p) else float(p))
                for f, (c, b, vc), p in zip(data.features, own, own_psi)]
    corr = np.block([[grid_corr, cross_corr], [cross_corr.T, correlation(z_bank, z_bank)]])
    document, selection = screen(entries, corr, rules, cfg.monotone_merge)
    document.update(rows=n, training_rows=s.n_train, validation_rows=len(valid), bins=cfg.bins,
                    reveal_to_grid=cfg.reveal_to_grid)
    atomic_write_text(out / "screen.json", json.dumps(document, indent=2) + "\n")
    atomic_write_text(out / "selection.json", json.dumps(selection, indent=2) + "\n")
    phases.done("statistics and selection")
    # 6: the grid learns its kept names (and with "summary" its IVs), nothing per bin.
    reply: dict[str, npt.NDArray[np.generic]] = {
        "kept": np.array(selection["parties"]["grid"]["kept"] or [], dtype="U64")}
    if cfg.reveal_to_grid == "summary":
        reply["iv"] = np.array([e["iv"] or 0.0 for e in document["indicators"][:k_grid]])
    channel.send(Envelope(job_id, Tag(ROUND_SELECTION, STEP_SELECTION), Role.BANK, reply))
    return {"screen_seconds": time.perf_counter() - started,
            "screen_cpu_seconds": time.process_time() - cpu,
            "kept": {p: len(v["kept"]) for p, v in selection["parties"].items()}}


def _grid_info(info: dict[str, npt.NDArray[np.generic]], k: int, width: int
               ) -> tuple[list[str], npt.NDArray[np.int64], npt.NDArray[np.float64],
                          npt.NDArray[np.float64]]:
    names = np.asarray(info.get("names", np.array([], dtype="U1")))
    slots = np.asarray(info.get("slots", np.array([], dtype=np.int64)))
    corr = np.asarray(info.get("corr", np.zeros((0, 0))), dtype=np.float64)
    months = np.asarray(info.get("psi_months", np.zeros(0)), dtype=np.float64)
    if (names.dtype.kind != "U" or names.shape != (k,) or slots.shape != (k,)
            or slots.dtype.kind not in "iu" or int(slots.sum()) != width
            or corr.shape != (k, k) or months.shape != (k,)):
        raise ProtocolAbort(f"grid sent a malformed indicator description ({names.shape} "
                            f"names, {slots.shape} slots, {corr.shape} correlations)")
    return [str(x) for x in names], slots.astype(np.int64), corr, months


def _slot_counts(names: list[str], slots: npt.NDArray[np.int64], opened: npt.NDArray[np.int64],
                 psi_months: npt.NDArray[np.float64]) -> list[SlotCounts]:
    out, start = [], 0
    for name, width, p in zip(names, slots, psi_months):
        block = opened[start:start + int(width)]
        start += int(width)
        if (block < 0).any() or (block[:, 0] > block[:, 1]).any():
            raise ProtocolAbort(f"opened counts of {name!r} are inconsistent")
        out.append(SlotCounts("grid", name, block[:, 1].copy(), block[:, 0].copy(),
                              block[:, 2].copy(), None if np.isnan(p) else float(p)))
    return out



def screen_sizes(role: Role, settings: TrainSettings, aligned: PartyData,
                 cfg: ScreenConfig) -> dict[str, float]:
    """What a party reports at the aligned barrier: the sizes the dealer needs."""
    _, s = sizes(settings, len(aligned.ids))
    k = aligned.x.shape[1]
    values = {"intersection": float(len(aligned.ids)), "train_rows": float(s.n_train),
              "count_bits": float(s.count_bits), "pearson_bits": float(s.pearson_bits),
              "columns": float(k)}
    if role is Role.GRID:
        values["width"] = float(k * (cfg.bins + 1))  # fixed width: bins + a missing slot
    return values


def run_side(role: Role, channel: Channel, coordinator: CoordinatorLink, plan: JobPlan,
             aligned: PartyData, cfg: ScreenConfig, out: Path, id_column: str,
             agreed: dict[str, float] | None = None) -> dict[str, Any]:
    """This party's side of the screening (after the aligned barrier, whose reply is
    ``agreed``); its statistics."""
    if role is Role.GRID:
        return run_grid(channel, plan.job_id, plan.dealer_seed, plan.settings, aligned, cfg,
                        out, id_column)
    return run_bank(channel, coordinator, plan.job_id, plan.dealer_seed, plan.settings,
                    aligned, cfg, out, id_column, agreed)
