"""The ``screen`` and ``stages`` subcommands (added to the single ``gridcredit`` parser).

What it does: parses flags into a spec and runs it; ``screen`` is the federated screening
of indicators (``federation.screen``), ``stages`` the paper's three stage models
(``federation.stages``). Errors surface through the main CLI as one ``error:`` line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

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
                                   args.overdue_days, pca, settings_from(training), args.quiet))
    parts = [f"{s} AUC {result[s]['auc']:.4f} (Nagelkerke {result[s]['nagelkerke_r2']:.3f})"
             for s in ("pre", "in", "post")]
    print("; ".join(parts) + f"; written to {args.out}/stages.json and {args.out}/summary.md")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from federation.cli_flags import training_flags

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
