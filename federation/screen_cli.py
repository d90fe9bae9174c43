"""The ``screen`` and ``stages`` subcommands (added to the single ``gridcredit`` parser).

What it does: parses flags into a spec and runs it; ``screen`` is the federated screening
of indicators (``federation.screen``), ``stages`` the paper's three stage models
(``federation.stages``). Errors surface through the main CLI as one ``error:`` line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from federation.cli_jobs import FORCE_HELP

D = "(default: %(default)s)"
# The stage models are compared on fit statistics (-2LL, pseudo R^2), which need a model
# closer to convergence than simulate's 5 epochs give.
STAGE_EPOCHS = 20


def cmd_stages(args: argparse.Namespace) -> int:
    from federation.cli_flags import training_values
    from federation.config import settings_from
    from federation.stages import StagesSpec, run_stages

    pca = None if args.pca == "none" else args.pca
    training = {"epochs": STAGE_EPOCHS, **training_values(args)}
    result = run_stages(StagesSpec(args.raw, args.out, args.as_of, args.horizon,
                                   args.overdue_days, pca, settings_from(training), args.quiet,
                                   args.force))
    parts = [f"{s} AUC {result[s]['auc']:.4f} (Nagelkerke {result[s]['nagelkerke_r2']:.3f})"
             for s in ("pre", "in", "post")]
    print("; ".join(parts) + f"; written to {args.out}/stages.json and {args.out}/summary.md")
    return 0


def cmd_screen(args: argparse.Namespace) -> int:
    from federation.config import settings_from
    from federation.screen import ScreenSpec, run_screen

    training = {k: v for k, v in (("seed", args.seed),
                                  ("validation_fraction", args.validation_fraction),
                                  ("deadline_seconds", args.deadline)) if v is not None}
    report = run_screen(ScreenSpec(
        args.out, args.grid_data, args.bank_data, args.id_column, args.label_column,
        args.grid_compare, args.bank_compare, args.raw, args.as_of, args.compare_as_of,
        args.bins, args.rules, args.reveal_to_grid, args.monotone_merge,
        settings_from(training), args.demo_enterprises, args.quiet, force=args.force))
    kept, total = report["kept"], report["indicators"]
    print(f"kept {kept['grid']} of {total['grid']} grid and {kept['bank']} of {total['bank']} "
          f"bank indicators in {report['screen_seconds']:.2f} s (PSI "
          f"{report['psi_seconds']:.2f} s); {args.out}/selection.json, {args.out}/summary.md")
    return 0


def _screen_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sc = sub.add_parser(
        "screen",
        help="federated screening of both parties' indicators (IV, WOE, KS, PSI, "
        "correlations) and a selection for 'simulate --select'",
        description="Start coordinator, grid and bank as three local processes (mutual TLS, "
        "ports chosen at run time). Each party bins its indicators on the aligned training "
        "rows; the grid's per-bin counts against the bank's label come out of the secure bin "
        "product opened to the bank only; the bank computes the statistics and the "
        "correlations, applies the rules and tells the grid only the names of its kept "
        "indicators. Writes DIR/bank/screen.json, DIR/grid/screen.json, DIR/selection.json, "
        "DIR/report.json, DIR/summary.md with plots, and audit logs.",
    )
    sc.add_argument("--out", type=Path, default=Path("runs/screen"), help="run folder " + D)
    sc.add_argument("--force", action="store_true", help=FORCE_HELP)
    d = sc.add_argument_group("data (omit all for the synthetic demo with every indicator)")
    d.add_argument("--grid-data", type=Path, help="the grid's CSV (ID + indicators; an empty "
                   "cell is a missing value)")
    d.add_argument("--bank-data", type=Path, help="the bank's CSV (ID, label, indicators)")
    d.add_argument("--grid-compare", type=Path,
                   help="the grid's table at another as-of month (stability between months)")
    d.add_argument("--bank-compare", type=Path, help="the bank's table at another as-of month")
    d.add_argument("--id-column", default="id", help="ID column in both files " + D)
    d.add_argument("--label-column", default="y", help="label column of the bank's file " + D)
    d.add_argument("--raw", type=Path,
                   help="a 'gridcredit synth' folder: build both parties' indicators at --as-of")
    d.add_argument("--as-of", help="YYYY-MM for --raw or the demo (default: the manifest's)")
    d.add_argument("--compare-as-of", metavar="YYYY-MM",
                   help="with --raw or the demo: also build the indicators at this month and "
                   "report each one's PSI between the two months")
    d.add_argument("--demo-enterprises", type=int, default=3000,
                   help="enterprises in the synthetic demo " + D)
    g = sc.add_argument_group("screening")
    g.add_argument("--bins", type=int, default=10,
                   help="equal-frequency bins per indicator, plus one for missing values " + D)
    g.add_argument("--rules", type=Path, metavar="FILE",
                   help="selection rules (TOML, see README; default: IV >= 0.02, missing <= "
                   "80 %%, |rho| <= 0.8, VIF <= 10, PSI <= 0.25)")
    g.add_argument("--reveal-to-grid", choices=["none", "summary"], default="none",
                   help="'summary' also tells the grid the IV of each of its indicators (never "
                   "a per-bin figure) " + D)
    g.add_argument("--monotone-merge", action="store_true",
                   help="merge adjacent bins until the bad rate is monotone (at the bank, on "
                   "the counts; the grid never learns the merge)")
    g.add_argument("--seed", type=int, help="seed of the training/validation split (default: 42)")
    g.add_argument("--validation-fraction", type=float,
                   help="share of aligned rows held out for the stability check (default: 0.2)")
    g.add_argument("--deadline", type=float, help="seconds to wait for any peer message "
                   "(default: 30)")
    sc.add_argument("--quiet", action="store_true", help="no progress display")
    sc.set_defaults(handler=cmd_screen)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from federation.cli_flags import training_flags

    _screen_parser(sub)

    st = sub.add_parser(
        "stages",
        help="the paper's pre-, in- and post-loan models, trained federated",
        description="Build each stage's indicators (parties/labels/stages.toml) at the month "
        "the stage implies for each loan (pre: the loan's start; in: halfway to the as-of "
        "month; post: the as-of month), train one federated model per stage as three local "
        "processes, and write OUT/stages.json and a Table-2-style OUT/summary.md.",
    )
    st.add_argument("--raw", type=Path, required=True,
                    help="a 'gridcredit synth' folder (grid/ and bank/ raw tables)")
    st.add_argument("--out", type=Path, required=True, help="output folder")
    st.add_argument("--force", action="store_true", help=FORCE_HELP)
    st.add_argument("--as-of", help="YYYY-MM (default: the manifest's as_of)")
    st.add_argument("--horizon", type=int, default=6, help="label window in months " + D)
    st.add_argument("--overdue-days", type=int, default=30,
                    help="days overdue that count as overdue " + D)
    st.add_argument("--pca", default="auto", metavar="K|auto|none",
                    help="each party's own principal components per stage, as the paper " + D)
    st.add_argument("--quiet", action="store_true", help="no progress display")
    training_flags(st)
    st.epilog = f"Training runs {STAGE_EPOCHS} epochs unless --epochs is given."
    st.set_defaults(handler=cmd_stages)
