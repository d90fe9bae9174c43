"""The job commands of ``gridcredit``: simulate, coordinator, party, certs, score, evaluate.

:func:`add_commands` adds them to the single ``gridcredit`` parser; each handler turns its
flags into one config and calls the composition root that runs it (``federation.simulate``,
``federation.nodes``, ``federation.report``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from federation.cli_flags import (
    DEFAULTS_HELP,
    network,
    network_flags,
    training_flags,
    training_values,
)
from federation.protocol.errors import ConfigError

FORCE_HELP = ("write into an existing folder that is not an earlier run folder (nothing in "
              "it is deleted; files of the same names are replaced)")


def cmd_coordinator(args: argparse.Namespace) -> int:
    from federation.config import CoordinatorConfig, settings_from
    from federation.nodes import run_coordinator
    from federation.protocol.messages import Role

    net, raw, _ = network(args, Role.COORDINATOR)
    training = {**raw.get("training", {}), **training_values(args)}
    job = raw.get("job", {})
    cfg = CoordinatorConfig(
        net,
        settings_from(training),
        float(job.get("barrier_timeout", 120.0)),
        float(job.get("job_timeout", 3600.0)),
    )
    return int(run_coordinator(cfg))


def cmd_party(args: argparse.Namespace) -> int:
    from federation.nodes import party_config, run_party
    from federation.protocol.messages import Role

    role = Role(args.role)
    net, raw, _ = network(args, role)
    if not net.coordinator:
        raise ConfigError(
            f"{role.value}: no coordinator address ([node] coordinator or --coordinator)"
        )
    data = dict(raw.get("data", {}))
    for key in ("data", "id_column", "label_column", "model", "psi_workers", "psi"):
        value = getattr(args, key, None)
        if value is not None:
            data["path" if key == "data" else key] = (
                str(value) if isinstance(value, Path) else value
            )
    deadline = float(raw.get("job", {}).get("deadline", 30.0))
    barrier = float(raw.get("job", {}).get("barrier_timeout", 600.0))
    screen = raw.get("screen")
    return int(run_party(net, party_config(net, data, deadline, screen), deadline, barrier))


def cmd_certs(args: argparse.Namespace) -> int:
    from federation.run_folder import ensure_folder
    from federation.transport.certs import check_days, write_client, write_federation

    check_days(args.days)  # before a folder is made
    if args.client is not None:
        certs = write_client(args.out, args.client, days=args.days, force=args.force)
        print(f"wrote scoring client certificate {certs.cert} and key {certs.key} (signed by "
              f"{certs.ca}; accepted by the bank's Score only)")
        return 0
    write_federation(ensure_folder(args.out), days=args.days, force=args.force)
    print(f"wrote a federation CA and certificates for coordinator, grid and bank to {args.out}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from federation.config import settings_from
    from federation.simulate import SimulationSpec, run_simulation

    spec = SimulationSpec(
        out=args.out,
        grid_data=args.grid_data,
        bank_data=args.bank_data,
        id_column=args.id_column,
        label_column=args.label_column,
        settings=settings_from(training_values(args)),
        demo_enterprises=args.demo_enterprises,
        quiet=args.quiet,
        threshold=args.threshold,
        resume=args.resume,
        compare_lr=args.compare_lr,
        select=args.select,
        stage=args.stage,
        pca=args.pca,
        force=args.force,
        log_level=args.log_level or "INFO",
    )
    report = run_simulation(spec)
    print(f"{auc_line(report)}; run folder: {args.out}")
    return 0


def auc_line(report: dict[str, Any]) -> str:
    """The validation AUCs, or the training rows' when nothing was held out."""
    split = "validation" if "auc" in report["validation"] else "train"

    def auc(section: dict[str, Any] | None) -> str:
        value = (section or {}).get(split, {}).get("auc")
        return "-" if value is None else f"{value:.4f}"

    lr = report.get("federated_lr")
    extra = f", federated LR {auc(lr)}" if lr else ""
    line = (f"{split} AUC {auc(report)} (centralized {auc(report['centralized'])}, "
            f"bank only {auc(report['bank_only'])}{extra})")
    return line if split == "validation" else f"no validation rows: {line}"


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
            force=args.force,
            log_level=args.log_level or "INFO",
        )
    )
    print(
        f"scored {result['scored']} enterprises, {result['no_grid_record']} without a grid "
        f"record; scores: {result['scores']}"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from federation.evaluate import evaluate_predictions, read_predictions
    from federation.run_folder import RunFolder, in_run_folder

    pred = read_predictions(args.predictions, id_column=args.id_column,  # bad input: no folder
                            label_column=args.label_column, labels=args.labels)
    reads = tuple(p for p in (args.predictions, args.labels) if p is not None)
    folder = RunFolder.open(args.out, "evaluate", force=args.force, reads=reads)
    result = in_run_folder(folder, lambda: evaluate_predictions(
        args.predictions, args.out, args.threshold, id_column=args.id_column,
        label_column=args.label_column, labels=args.labels, pred=pred))
    val = result.get("validation") or result.get("train") or result["all"]
    print(f"AUC {val['auc']:.4f}, KS {val['ks']:.4f}; written to {args.out}")
    return 0


def add_commands(sub: Any) -> None:
    """Add the job commands to ``sub`` (the ``gridcredit`` subparsers)."""
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
    c = sim.add_argument_group("what each party trains on (default: every column)")
    c.add_argument(
        "--select",
        type=Path,
        metavar="FILE",
        help="a screening's selection.json: each party trains on its kept indicators "
        "(and their _missing flags)",
    )
    c.add_argument(
        "--stage",
        choices=["pre", "in", "post"],
        help="the paper's pre-, in- or post-loan indicator set (parties/labels/stages.toml)",
    )
    c.add_argument(
        "--pca",
        metavar="K|auto",
        help="each party replaces its own features by K principal components fitted "
        "locally on its training rows ('auto': those explaining 90 %% of the variance)",
    )
    sim.add_argument("--quiet", action="store_true", help="no progress display")
    sim.add_argument("--no-compare-lr", dest="compare_lr", action="store_false",
                     help="--model gbdt: skip training the federated LR of the same data for "
                     "the report (by default it runs after the trees, in DIR/lr)")
    sim.add_argument("--force", action="store_true", help=FORCE_HELP)
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
    training_flags(sim)
    sim.set_defaults(handler=cmd_simulate)

    coord = sub.add_parser(
        "coordinator",
        help="run the coordinator node of one job",
        description="Serve the coordinator: registers the two parties, deals "
        "correlated randomness, runs the round barriers. Prints "
        "'LISTENING host:port' once bound.",
    )
    network_flags(coord, party=False)
    training_flags(coord)
    coord.set_defaults(handler=cmd_coordinator)

    party = sub.add_parser(
        "party",
        help="run a grid or bank party node of one job",
        description="Serve one party node: loads its CSV, joins the "
        "coordinator, aligns by PSI, trains or scores. Prints "
        "'LISTENING host:port' once bound.",
    )
    party.add_argument("--role", required=True, choices=["grid", "bank"], help="this node's role")
    network_flags(party, party=True)
    party.set_defaults(handler=cmd_party)

    certs = sub.add_parser(
        "certs",
        help="make a federation CA and node certificates",
        description="Write ca.pem/ca.key and coordinator/grid/bank .pem/.key "
        "into DIR (ECDSA P-256; each certificate names its role). With --client NAME, "
        "issue only a scoring client's certificate client-NAME.pem/.key with the CA "
        "already in DIR, for systems that call the bank's Score without holding bank.key.",
    )
    certs.add_argument("--out", type=Path, required=True, help="folder to write into")
    certs.add_argument("--client", metavar="NAME",
                       help="issue a scoring client certificate (named client:NAME, accepted "
                       "by the bank's Score only) with DIR's existing CA; the CA and node "
                       "certificates are left as they are")
    certs.add_argument("--days", type=int, default=30, help="validity in days " + DEFAULTS_HELP)
    certs.add_argument("--force", action="store_true",
                       help="replace an existing CA and certificates in DIR (certificates "
                       "already copied to other hosts stop matching); with --client, "
                       "replace only that client's certificate")
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
    score.add_argument("--force", action="store_true", help=FORCE_HELP)
    score.set_defaults(handler=cmd_score)

    ev = sub.add_parser(
        "evaluate",
        help="credit-risk metrics and plots for a predictions file",
        description="Read id,split,y,probability (as bank/predictions.csv; 'split' is "
        "optional) or the scores.csv of 'gridcredit score' (with --labels), and write "
        "metrics.json, summary.md and PNG plots: AUC, KS, Gini, "
        "accuracy/precision/recall/F1, log-loss, Brier, Hosmer-Lemeshow, "
        "-2LL, Cox-Snell and Nagelkerke R2, score bands.",
    )
    ev.add_argument("--predictions", type=Path, required=True,
                    help="CSV with an ID, a probability and (unless --labels) a label column")
    ev.add_argument("--labels", type=Path,
                    help="CSV with the ID and label columns, for a file without labels "
                    "(e.g. the bank's file that was scored)")
    ev.add_argument("--id-column", default="id", help="ID column " + DEFAULTS_HELP)
    ev.add_argument("--label-column", default="y", help="0/1 label column " + DEFAULTS_HELP)
    ev.add_argument("--out", type=Path, required=True,
                    help="folder for the outputs: new, empty, or an earlier evaluate's (whose "
                    "files are replaced); another folder is refused unless --force")
    ev.add_argument("--force", action="store_true",
                    help="write into an existing folder of your own files (files of the same "
                    "names are overwritten, nothing else is touched; never another command's "
                    "run folder)")
    ev.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="decision threshold for the classification metrics " + DEFAULTS_HELP,
    )
    ev.set_defaults(handler=cmd_evaluate)
