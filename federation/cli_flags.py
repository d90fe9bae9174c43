"""Flag groups shared by the job commands: training (the ``[training]`` table) and network.

Each ``*_flags`` function adds one group to a parser, with its default in the help text; the
matching function turns the parsed flags (and the node's TOML file) into plain values.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from federation.protocol.errors import ConfigError

DEFAULTS_HELP = "(default: %(default)s)"


def seconds(text: str) -> float:
    """A flag's number of seconds: finite and > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def training_flags(parser: argparse.ArgumentParser) -> None:
    from federation.protocol.convergence import WINDOW
    from federation.protocol.messages import TrainSettings

    d = TrainSettings()
    g = parser.add_argument_group("training (override the [training] table)")
    g.add_argument(
        "--model",
        choices=["lr", "gbdt"],
        help=f"what to train (default: {d.model.value}): 'lr' logistic regression; 'gbdt' "
        "gradient-boosted trees (histograms by the bin product, the bank holds the trees)",
    )
    g.add_argument(
        "--mode",
        choices=["shared", "local"],
        help=f"protocol mode (default: {d.mode.value}). 'shared': weights stay "
        "secret-shared, no per-batch gradient, residual, logit or loss is opened; "
        "'local': each party keeps its own weights and learns its own per-batch "
        "gradients (as FATE's hetero-LR)",
    )
    g.add_argument(
        "--reveal-weights",
        choices=["own", "none"],
        help="mode shared: 'own' opens to each owner only its own weight block; 'none' keeps "
        "the model shared, so evaluation and scoring are joint and the bank learns the score "
        "but not the grid's partial logit (default: own)",
    )
    g.add_argument(
        "--feature-frac-bits",
        type=int,
        help=f"mode shared: fraction bits of the encoded features (default: {d.feature_frac_bits})",
    )
    g.add_argument(
        "--feature-clip",
        type=float,
        help=f"mode shared: standardized features are clipped to +-this "
        f"(default: {d.feature_clip:g})",
    )
    g.add_argument(
        "--epochs", type=int, help=f"the most passes over the training rows; training stops "
        f"earlier once the loss has converged (default: {d.epochs})"
    )
    g.add_argument(
        "--batch-size",
        type=int,
        help=f"rows per iteration, at least 4x the larger party's column count "
        f"(default: {d.batch_size})",
    )
    g.add_argument("--learning-rate", type=float,
                   help=f"step size; gbdt: shrinkage per tree (default: lr {d.learning_rate}, "
                   "gbdt 0.1)")
    g.add_argument(
        "--optimizer",
        choices=["sgd", "momentum", "adam"],
        help=f"weight update rule (default: {d.optimizer.value})",
    )
    g.add_argument(
        "--l2", type=float, help=f"L2 penalty per row, not on the intercept; gbdt: on the leaf "
        f"values (default: lr {d.l2}, gbdt 1.0)"
    )
    g.add_argument("--l1", type=float, help=f"L1 penalty (default: {d.l1})")
    g.add_argument(
        "--tolerance",
        type=float,
        help=f"stop once the best epoch loss of the last {WINDOW} epochs improves on the best "
        f"before them by less than this fraction; 0 runs every epoch (default: {d.tolerance})",
    )
    g.add_argument(
        "--seed",
        type=int,
        help=f"seed of the split and batch order; public, not a key (default: {d.seed})",
    )
    g.add_argument(
        "--validation-fraction",
        type=float,
        help=f"share of aligned rows held out (default: {d.validation_fraction})",
    )
    g.add_argument(
        "--frac-bits",
        type=int,
        help=f"fixed-point fraction bits in the ring (default: {d.frac_bits})",
    )
    g.add_argument(
        "--checkpoint-every",
        type=int,
        help="each party saves its training state every N epochs in its output "
        "folder; the same job started again resumes from the last epoch both "
        "completed (default: 0, never)",
    )
    t = parser.add_argument_group("trees (--model gbdt)")
    t.add_argument("--trees", type=int, help=f"most boosting rounds (default: {d.trees})")
    t.add_argument("--depth", type=int, help=f"levels of splits per tree (default: {d.depth})")
    t.add_argument("--bins", type=int, help=f"equal-frequency value bins per feature, plus a bin "
                   f"for missing values (default: {d.bins})")
    t.add_argument("--min-child-weight", type=float, help=f"least hessian sum on each side of a "
                   f"split (default: {d.min_child_weight:g})")
    t.add_argument("--subsample", type=float, help=f"share of training rows drawn for each tree "
                   f"(default: {d.subsample:g})")
    t.add_argument("--early-stopping-rounds", type=int, help=f"stop after this many trees "
                   f"without a better validation loss and keep the best; 0: never "
                   f"(default: {d.early_stopping_rounds})")
    g.add_argument(
        "--psi",
        choices=["server-aided", "ecdh"],
        help="how the parties align their IDs: 'server-aided', PRF tags under a key the "
        "parties agree on, matched by the coordinator (it learns both set sizes and the "
        "intersection size); 'ecdh', two-party Diffie-Hellman without the coordinator, "
        f"slower (default: {d.psi.value})",
    )
    g.add_argument(
        "--deadline",
        type=float,
        dest="deadline_seconds",
        help=f"seconds to wait for any peer message before failing the job "
        f"(default: {d.deadline_seconds:g})",
    )


def training_values(args: argparse.Namespace) -> dict[str, Any]:
    names = [
        "mode",
        "epochs",
        "batch_size",
        "learning_rate",
        "optimizer",
        "l2",
        "l1",
        "tolerance",
        "seed",
        "validation_fraction",
        "frac_bits",
        "deadline_seconds",
        "reveal_weights",
        "feature_frac_bits",
        "feature_clip",
        "checkpoint_every",
        "model",
        "trees",
        "depth",
        "bins",
        "min_child_weight",
        "subsample",
        "early_stopping_rounds",
        "psi",
    ]
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def network_flags(parser: argparse.ArgumentParser, party: bool) -> None:
    g = parser.add_argument_group("network (override the [node] and [tls] tables)")
    g.add_argument(
        "--config",
        type=Path,
        help="TOML file with [node], [tls], [data] (and [training] for the coordinator)",
    )
    g.add_argument("--job-id", help="job identifier shared by the three nodes")
    g.add_argument(
        "--listen", help="HOST:PORT to serve on; port 0 picks a free one (default: 127.0.0.1:0)"
    )
    g.add_argument(
        "--tls-dir",
        type=Path,
        help="folder with ca.pem and <role>.pem/.key (as written by 'gridcredit certs')",
    )
    g.add_argument("--out", type=Path, help="folder for this node's outputs and audit log")
    j = parser.add_argument_group("job (override the [job] table)")
    if party:
        j.add_argument("--deadline", type=seconds, metavar="SECONDS", help="seconds to wait "
                       "for any peer message before failing the job (default: 30)")
    j.add_argument("--barrier-timeout", type=seconds, metavar="SECONDS", help=(
        "seconds to wait for the coordinator's answer at a barrier (default: 600)" if party
        else "seconds to wait for both parties at a barrier (default: 120)"))
    if not party:
        j.add_argument("--job-timeout", type=seconds, metavar="SECONDS",
                       help="seconds the whole job may take (default: 3600)")
    if party:
        g.add_argument("--coordinator", help="HOST:PORT of the coordinator")
        g.add_argument(
            "--advertise", help="HOST:PORT the peer should dial, if not the listening address"
        )
        g.add_argument(
            "--data-port",
            type=int,
            help="port of the party-to-party TLS data plane, on the host of --listen; fix it "
            "when a firewall must let the peer in (default: 0, a free port)",
        )
        d = parser.add_argument_group("data (override the [data] table)")
        d.add_argument("--data", type=Path, help="this party's CSV")
        d.add_argument("--id-column", help="enterprise ID column (default: id)")
        d.add_argument("--label-column", help="bank only: 0/1 overdue label column (default: y)")
        d.add_argument("--model", type=Path, help="scoring jobs: this party's model.json")
        d.add_argument(
            "--psi-workers", type=int, help="threads for ECDH PSI curve work (default: all cores)"
        )
        d.add_argument(
            "--psi",
            choices=["server-aided", "ecdh"],
            help="refuse a job that aligns IDs any other way (default: the coordinator's "
            "choice)",
        )


def network(args: argparse.Namespace, role: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    from federation.config import NetworkConfig, load_toml, tls_from

    raw = load_toml(args.config) if args.config else {}
    node = dict(raw.get("node", {}))
    tls = dict(raw.get("tls", {}))
    if args.tls_dir:
        tls = {"dir": str(args.tls_dir)}
    if "role" in node and node["role"] != role.value:
        raise ConfigError(f"config {args.config} is for role {node['role']!r}, not {role.value!r}")
    for key in ("deadline", "barrier_timeout", "job_timeout"):
        if getattr(args, key, None) is not None:
            raw.setdefault("job", {})[key] = getattr(args, key)
    for key in ("job_id", "listen", "out", "coordinator", "advertise"):
        if getattr(args, key, None) is not None:
            node[key] = str(getattr(args, key))
    if getattr(args, "data_port", None) is not None:
        node["data_port"] = args.data_port
    if "data_port" in node and role.value == "coordinator":
        raise ConfigError(f"config {args.config}: [node] data_port is a party's setting (the "
                          "coordinator has no data plane)")
    data_port = node.get("data_port", 0)
    if type(data_port) is not int or not 0 <= data_port < 65536:
        raise ConfigError(f"{role.value}: data_port {data_port!r} is not a port (0-65535; "
                          "0 picks a free one)")
    for key in ("job_id", "out"):
        if key not in node:
            raise ConfigError(
                f"{role.value}: missing {key} ([node] {key} or --{key.replace('_', '-')})"
            )
    if not tls:
        raise ConfigError(f"{role.value}: no TLS material ([tls] dir or --tls-dir)")
    net = NetworkConfig(
        role=role,
        job_id=node["job_id"],
        listen=node.get("listen", "127.0.0.1:0"),
        out=Path(node["out"]),
        certs=tls_from(tls, role),
        coordinator=node.get("coordinator", ""),
        advertise=node.get("advertise", ""),
        data_port=data_port,
    )
    return net, raw, node
