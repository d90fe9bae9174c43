"""The ``gridcredit`` command: one entry point, one subcommand per job.

``main(argv)`` parses, runs and maps our exceptions to one ``error: ...`` line and a
non-zero exit code. Nothing parses argv at import.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from federation.errors import ConfigError, VflError

DEFAULTS_HELP = "(default: %(default)s)"


def _training_flags(parser: argparse.ArgumentParser) -> None:
    from federation.messages import TrainSettings

    d = TrainSettings()
    g = parser.add_argument_group("training (override the [training] table)")
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
        "--epochs", type=int, help=f"passes over the training rows (default: {d.epochs})"
    )
    g.add_argument(
        "--batch-size",
        type=int,
        help=f"rows per iteration, at least 4x the larger party's column count "
        f"(default: {d.batch_size})",
    )
    g.add_argument("--learning-rate", type=float, help=f"step size (default: {d.learning_rate})")
    g.add_argument(
        "--optimizer",
        choices=["sgd", "momentum", "adam"],
        help=f"weight update rule (default: {d.optimizer.value})",
    )
    g.add_argument(
        "--l2", type=float, help=f"L2 penalty per row, not on the intercept (default: {d.l2})"
    )
    g.add_argument("--l1", type=float, help=f"L1 penalty (default: {d.l1})")
    g.add_argument(
        "--tolerance",
        type=float,
        help=f"stop when the epoch loss changes less than this (default: {d.tolerance})",
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
    g.add_argument(
        "--deadline",
        type=float,
        dest="deadline_seconds",
        help=f"seconds to wait for any peer message before failing the job "
        f"(default: {d.deadline_seconds:g})",
    )


def _training_values(args: argparse.Namespace) -> dict[str, Any]:
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
    ]
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _network_flags(parser: argparse.ArgumentParser, party: bool) -> None:
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
    if party:
        g.add_argument("--coordinator", help="HOST:PORT of the coordinator")
        g.add_argument(
            "--advertise", help="HOST:PORT the peer should dial, if not the listening address"
        )
        d = parser.add_argument_group("data (override the [data] table)")
        d.add_argument("--data", type=Path, help="this party's CSV")
        d.add_argument("--id-column", help="enterprise ID column (default: id)")
        d.add_argument("--label-column", help="bank only: 0/1 overdue label column (default: y)")
        d.add_argument("--model", type=Path, help="scoring jobs: this party's model.json")
        d.add_argument(
            "--psi-workers", type=int, help="processes for PSI curve work (default: all cores)"
        )


def _network(args: argparse.Namespace, role: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    from federation.config import NetworkConfig, load_toml, tls_from

    raw = load_toml(args.config) if args.config else {}
    node = dict(raw.get("node", {}))
    tls = dict(raw.get("tls", {}))
    if args.tls_dir:
        tls = {"dir": str(args.tls_dir)}
    if "role" in node and node["role"] != role.value:
        raise ConfigError(f"config {args.config} is for role {node['role']!r}, not {role.value!r}")
    for key in ("job_id", "listen", "out", "coordinator", "advertise"):
        if getattr(args, key, None) is not None:
            node[key] = str(getattr(args, key))
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
    )
    return net, raw, node


def cmd_coordinator(args: argparse.Namespace) -> int:
    from federation.config import CoordinatorConfig, settings_from
    from federation.messages import Role
    from federation.nodes import run_coordinator

    net, raw, _ = _network(args, Role.COORDINATOR)
    training = {**raw.get("training", {}), **_training_values(args)}
    job = raw.get("job", {})
    cfg = CoordinatorConfig(
        net,
        settings_from(training),
        float(job.get("barrier_timeout", 120.0)),
        float(job.get("job_timeout", 3600.0)),
    )
    return int(run_coordinator(cfg))


def cmd_party(args: argparse.Namespace) -> int:
    from federation.messages import Role
    from federation.nodes import party_config, run_party

    role = Role(args.role)
    net, raw, _ = _network(args, role)
    if not net.coordinator:
        raise ConfigError(
            f"{role.value}: no coordinator address ([node] coordinator or --coordinator)"
        )
    data = dict(raw.get("data", {}))
    for key in ("data", "id_column", "label_column", "model", "psi_workers"):
        value = getattr(args, key, None)
        if value is not None:
            data["path" if key == "data" else key] = (
                str(value) if isinstance(value, Path) else value
            )
    deadline = float(raw.get("job", {}).get("deadline", 30.0))
    barrier = float(raw.get("job", {}).get("barrier_timeout", 600.0))
    return int(run_party(net, party_config(net, data, deadline), deadline, barrier))


def cmd_certs(args: argparse.Namespace) -> int:
    from federation.certs import write_federation

    write_federation(args.out, days=args.days)
    print(f"wrote a federation CA and certificates for coordinator, grid and bank to {args.out}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from federation.config import settings_from
    from federation.simulate import SimulationSpec, run_simulation

    if (args.grid_data is None) != (args.bank_data is None):
        raise ConfigError("give both --grid-data and --bank-data, or neither for the bundled demo")
    spec = SimulationSpec(
        out=args.out,
        grid_data=args.grid_data,
        bank_data=args.bank_data,
        id_column=args.id_column,
        label_column=args.label_column,
        settings=settings_from(_training_values(args)),
        demo_enterprises=args.demo_enterprises,
        quiet=args.quiet,
        threshold=args.threshold,
        resume=args.resume,
    )
    report = run_simulation(spec)
    auc = report["validation"]["auc"]
    central = report["centralized"]["validation"]["auc"]
    bank_only = report["bank_only"]["validation"]["auc"]
    print(
        f"validation AUC {auc:.4f} (centralized {central:.4f}, bank only {bank_only:.4f}); "
        f"run folder: {args.out}"
    )
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from federation.simulate import ScoringSpec, run_scoring

    result = run_scoring(
        ScoringSpec(
            run=args.run,
            grid_data=args.grid_data,
            bank_data=args.bank_data,
            id_column=args.id_column,
            out=args.out,
            quiet=args.quiet,
        )
    )
    print(
        f"scored {result['scored']} enterprises, {result['no_grid_record']} without a grid "
        f"record; scores: {result['scores']}"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from federation.report import evaluate_predictions

    result = evaluate_predictions(args.predictions, args.out, args.threshold)
    val = result.get("validation") or result["all"]
    print(f"AUC {val['auc']:.4f}, KS {val['ks']:.4f}; written to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridcredit",
        description="Vertical federated credit-risk logistic regression between a power-grid "
        "company and a bank: PSI alignment, secret-shared training, joint scoring.",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging verbosity on stderr " + DEFAULTS_HELP,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sim = sub.add_parser(
        "simulate",
        help="run coordinator, grid and bank as three local "
        "processes over mutual TLS and write a run folder",
        description="Start coordinator, grid and bank as three OS processes on "
        "127.0.0.1 (ports chosen at run time, mutual TLS with throw-away "
        "certificates), train, evaluate, and write DIR/report.json, "
        "DIR/summary.md, plots, models and audit logs.",
    )
    sim.add_argument(
        "--out", type=Path, default=Path("runs/latest"), help="run folder " + DEFAULTS_HELP
    )
    d = sim.add_argument_group("data (omit both for the bundled synthetic demo)")
    d.add_argument("--grid-data", type=Path, help="the grid's CSV (ID column + features)")
    d.add_argument("--bank-data", type=Path, help="the bank's CSV (ID column, label, features)")
    d.add_argument("--id-column", default="id", help="ID column in both files " + DEFAULTS_HELP)
    d.add_argument(
        "--label-column", default="y", help="label column of the bank's file " + DEFAULTS_HELP
    )
    d.add_argument(
        "--demo-enterprises",
        type=int,
        default=3000,
        help="enterprises in the synthetic demo " + DEFAULTS_HELP,
    )
    sim.add_argument("--quiet", action="store_true", help="no progress display")
    sim.add_argument(
        "--resume",
        action="store_true",
        help="keep the run folder of a failed run and resume its training from "
        "the parties' checkpoints (see --checkpoint-every)",
    )
    sim.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="extra decision threshold for accuracy/precision/recall/F1 in the "
        "report, besides 0.5 " + DEFAULTS_HELP,
    )
    _training_flags(sim)
    sim.set_defaults(handler=cmd_simulate)

    coord = sub.add_parser(
        "coordinator",
        help="run the coordinator node of one job",
        description="Serve the coordinator: registers the two parties, deals "
        "correlated randomness, runs the round barriers. Prints "
        "'LISTENING host:port' once bound.",
    )
    _network_flags(coord, party=False)
    _training_flags(coord)
    coord.set_defaults(handler=cmd_coordinator)

    party = sub.add_parser(
        "party",
        help="run a grid or bank party node of one job",
        description="Serve one party node: loads its CSV, joins the "
        "coordinator, aligns by PSI, trains or scores. Prints "
        "'LISTENING host:port' once bound.",
    )
    party.add_argument("--role", required=True, choices=["grid", "bank"], help="this node's role")
    _network_flags(party, party=True)
    party.set_defaults(handler=cmd_party)

    certs = sub.add_parser(
        "certs",
        help="make a federation CA and node certificates",
        description="Write ca.pem/ca.key and coordinator/grid/bank .pem/.key "
        "into DIR (ECDSA P-256; each certificate names its role).",
    )
    certs.add_argument("--out", type=Path, required=True, help="folder to write into")
    certs.add_argument("--days", type=int, default=30, help="validity in days " + DEFAULTS_HELP)
    certs.set_defaults(handler=cmd_certs)

    score = sub.add_parser(
        "score",
        help="score enterprises with a simulated run's models",
        description="Start three local nodes with the models of a previous "
        "'simulate' run; the bank's IDs are aligned by PSI with the grid's and "
        "the bank gets probability and score points, or 'no grid record'.",
    )
    score.add_argument("--run", type=Path, required=True, help="run folder of 'simulate'")
    score.add_argument(
        "--bank-data",
        type=Path,
        required=True,
        help="bank CSV of the enterprises to score (ID + the model's features)",
    )
    score.add_argument(
        "--grid-data", type=Path, help="grid CSV (default: the grid data of the run)"
    )
    score.add_argument("--id-column", default="id", help="ID column " + DEFAULTS_HELP)
    score.add_argument("--out", type=Path, required=True, help="folder for scores.csv and logs")
    score.add_argument("--quiet", action="store_true", help="no progress display")
    score.set_defaults(handler=cmd_score)

    ev = sub.add_parser(
        "evaluate",
        help="credit-risk metrics and plots for a predictions file",
        description="Read id,split,y,probability (as bank/predictions.csv) and "
        "write metrics.json, summary.md and PNG plots: AUC, KS, Gini, "
        "accuracy/precision/recall/F1, log-loss, Brier, Hosmer-Lemeshow, "
        "-2LL, Cox-Snell and Nagelkerke R2, score bands.",
    )
    ev.add_argument("--predictions", type=Path, required=True, help="CSV with y and probability")
    ev.add_argument("--out", type=Path, required=True, help="folder for the outputs")
    ev.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="decision threshold for the classification metrics " + DEFAULTS_HELP,
    )
    ev.set_defaults(handler=cmd_evaluate)

    from federation.audit_cli import add_commands as add_audit_commands
    from federation.serve_cli import add_commands as add_serve_commands
    from parties.labels.cli import add_commands as add_label_commands

    add_label_commands(sub)
    add_audit_commands(sub)
    add_serve_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except VflError as exc:
        from federation.nodes import exit_code_for

        print(f"error: {exc}", file=sys.stderr, flush=True)
        return int(exit_code_for(exc))
    except ValueError as exc:  # input errors of the label library subclass ValueError
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
