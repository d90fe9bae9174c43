"""``gridcredit serve``: a trained federation's grid and bank nodes kept up for online scoring.

The edge around ``parties.serving`` (which holds the protocol and says what each party
learns): servers, clients, audit entries and the process entry ``run_serve``.

- The grid node serves ``ServePeer`` (``Open``, ``Step``) to the bank node only.
- The bank node dials the grid (``--peer``), opens a session (the grid's blinded points,
  once), then serves ``Scoring.Score`` to the bank's own systems, presenting a scoring
  client certificate (``gridcredit certs --client NAME``) or the bank's own. Per request it
  makes one or two ``Step`` calls to the grid.
- Both print ``LISTENING host:port`` once ready (the bank after its session is open), answer
  gRPC health checks and reflection, and stop cleanly on SIGTERM or SIGINT.
- Every party-to-party message is written to both nodes' audit logs, with the SHA-256 of
  the same serialized bytes on both sides, so ``gridcredit audit verify`` pairs them. A
  ``Score`` call is written to the bank's log (peer ``client``) with its size, under a
  digest keyed by a per-process random key: the log never holds a guessable hash of an ID.
- Bounds: at most ``--max-ids`` IDs per request (both nodes check), a deadline on every
  call (``--deadline`` plus a per-ID allowance, never past the caller's own deadline); the
  grid's quotas (``--max-rows-per-session``, ``--max-requests-per-minute``,
  ``--max-opens-per-minute``; ``parties.serving_limits``).

Assumes: mutual TLS with the federation's certificates (``gridcredit certs``), each naming
its role; the models and data are those of one finished training run; the grid is up
before the bank starts, or comes up within ``--connect-timeout``. If the grid restarts at
the same address, the bank opens a new session on the first request that finds its
session gone.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import grpc
import numpy as np

from crypto.sigmoid import sigmoid
from federation.nodes import ExitCode
from federation.protocol.errors import (
    ConfigError,
    InputDataError,
)
from federation.protocol.messages import Role
from federation.serve_services import GridLink, add_scoring, add_serve_peer
from federation.transport.audit import AuditLog, AuditWriter
from federation.transport.certs import NodeCerts, check_own_certificate
from federation.transport.grpc_server import start_server
from parties.data import load_party_csv
from parties.evaluation.scorecard import Scorecard
from parties.gbdt.model import GbdtBankModel, GbdtGridModel, load_model
from parties.gbdt.serving import bank_combiner, grid_row_bits
from parties.model import PartyModel
from parties.psi_pool import PsiPool
from parties.serving import MAX_IDS, ROTATE_SECONDS
from parties.serving_bank import BankServing, Combine
from parties.serving_grid import GridServing
from parties.serving_limits import Quotas

DEFAULT_QUOTAS = Quotas(rows_per_session=1_000_000, requests_per_minute=6_000,
                        opens_per_minute=10)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeConfig:
    """Everything one serve node needs, parsed once from the flags.

    Attributes
    ----------
    role : Role
        ``Role.GRID`` or ``Role.BANK``.
    model, data : Path
        This party's ``model.json`` of the run, and its CSV (the bank's: the enterprises it
        may be asked about, with the model's features).
    certs : NodeCerts
        This node's TLS material.
    listen : str
        HOST:PORT to serve on (port 0 picks a free one).
    peer : str
        Bank only: HOST:PORT of the grid's serve node.
    audit : Path
        This node's audit log (continued if it exists).
    """

    role: Role
    model: Path
    data: Path
    certs: NodeCerts
    listen: str = "127.0.0.1:0"
    peer: str = ""
    audit: Path = Path("serve_audit.jsonl")
    id_column: str = "id"
    bands: tuple[float, ...] | None = None  # edges in points, -inf first and inf last
    base_score: float = 600.0
    base_odds: float = 50.0
    pdo: float = 20.0
    max_ids: int = MAX_IDS
    deadline: float = 10.0
    connect_timeout: float = 60.0
    psi_workers: int | None = None
    rotate_seconds: float = ROTATE_SECONDS  # grid: a new key epoch (and table) after this
    quotas: Quotas = DEFAULT_QUOTAS  # grid: rows per session, requests and opens per minute


# -- the process -------------------------------------------------------------------------


def partial_logits(cfg: ServeConfig) -> tuple[list[str], np.ndarray, Combine | None]:
    """This party's IDs and partial logit per row of ``--data`` under its model.

    A boosted model (``--model`` of a gbdt run): the grid's answer per row is the packed
    bits of its splits, and the bank's logits come from a combiner over them.

    Raises
    ------
    InputDataError
        The model or CSV is unreadable, of the other role, or lacks a model feature.
    """
    model = load_model(cfg.model, cfg.role)
    data = load_party_csv(cfg.data, cfg.id_column, None)
    missing = [f for f in model.features if f not in data.features]
    if missing:
        raise InputDataError(
            f"{cfg.data}: missing column(s) {missing} that the model {cfg.model} needs"
        )
    data = data.select(model.features)
    if isinstance(model, GbdtGridModel):
        return data.ids, grid_row_bits(model, data.x), None
    if isinstance(model, GbdtBankModel):
        return data.ids, np.zeros(len(data.ids)), bank_combiner(model, data.x)
    return data.ids, np.asarray(model.partial_logit(data.x), dtype=np.float64), None


def _probability(cfg: ServeConfig) -> Callable[[np.ndarray], np.ndarray]:
    """The bank's full logits to probabilities: a logistic model's calibration, if fitted."""
    model = load_model(cfg.model, cfg.role)
    return model.probability if isinstance(model, PartyModel) else sigmoid


def _announce(listen: str, port: int) -> str:
    address = f"{listen.rsplit(':', 1)[0] or '127.0.0.1'}:{port}"
    print(f"LISTENING {address}", flush=True)
    return address


def _stop_event() -> threading.Event:
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
    return stop


def run_serve(cfg: ServeConfig, stop: threading.Event | None = None) -> ExitCode:
    """Run one serve node until SIGTERM / SIGINT (or ``stop`` is set).

    Parameters
    ----------
    cfg : ServeConfig
        The node's settings.
    stop : threading.Event, optional
        Set it to stop the node (default: an event set by SIGTERM and SIGINT).

    Returns
    -------
    ExitCode
        ``ExitCode.OK`` after a clean stop.

    Raises
    ------
    ConfigError, InputDataError
        Bad flags, certificates, model or data (before anything listens).
    PeerUnavailable, ProtocolAbort
        Bank: the grid could not be reached or refused the session.
    """
    if cfg.role is Role.BANK and not cfg.peer:
        raise ConfigError("bank: --peer HOST:PORT of the grid's serve node is required")
    if cfg.role is Role.GRID and cfg.peer:
        raise ConfigError("grid: --peer is not used (the bank dials the grid)")
    if not cfg.rotate_seconds > 0:
        raise ConfigError(f"--rotate-hours must be > 0, got {cfg.rotate_seconds / 3600:g}")
    if not 0 < cfg.max_ids <= 1_000_000:
        raise ConfigError(f"--max-ids must be 1 to 1000000, got {cfg.max_ids}")
    check_own_certificate(cfg.certs, cfg.role)
    ids, u, combine = partial_logits(cfg)
    if stop is None:
        stop = _stop_event()
    audit = AuditWriter(AuditLog(cfg.audit, cfg.role.value, cfg.certs.key.read_bytes()))
    pool = PsiPool(cfg.psi_workers)
    link: GridLink | None = None
    server: grpc.Server | None = None
    try:
        if cfg.role is Role.GRID:
            grid = GridServing(ids, u, max_ids=cfg.max_ids, pool=pool,
                               rotate_seconds=cfg.rotate_seconds, quotas=cfg.quotas)
            grid.epoch()  # blind the table now, so that the first open costs no curve work
            server, port = start_server(cfg.certs, cfg.listen, add_serve_peer(grid, audit))
        else:
            try:
                card = Scorecard(cfg.base_score, cfg.base_odds, cfg.pdo)
                bank = BankServing(ids, u, card, cfg.bands, max_ids=cfg.max_ids, pool=pool,
                                   combine=combine, probability=_probability(cfg))
            except ValueError as exc:
                raise ConfigError(f"scorecard or bands: {exc}") from exc
            link = GridLink(cfg.peer, cfg.certs, audit, bank, cfg.deadline)
            seconds = link.open(cfg.connect_timeout)
            log.info("serving: session with the grid open in %.2f s", seconds)
            server, port = start_server(cfg.certs, cfg.listen, add_scoring(link, audit))
        _announce(cfg.listen, port)
        log.info("serving as %s: %d rows, audit log %s", cfg.role, len(ids), cfg.audit)
        while not stop.wait(0.5):
            pass
        log.info("serving: stopping")
    finally:
        if server is not None:
            server.stop(grace=2.0).wait(5)
        if link is not None:
            link.close()
        pool.close()
        audit.close()
    return ExitCode.OK


