"""Post-loan monitoring per period: time split by stage, against the non-private limit.

Not a test. Trains once on a small synthetic universe (``--train-enterprises``; the models
only need the indicator names), generates the monitored universe (``--enterprises``,
``--months``) as files or, with ``--dsn``, into fresh schemas of that PostgreSQL database
(dropped at the end), thins the bank's loans to an active book of about ``--book``
borrowers (0: as generated), starts a grid and a bank ``gridcredit monitor`` node (mutual
TLS, loopback, drift against ``--baseline-month``, default the month before the first
period) and replays ``--periods`` months ending at the data's last month. Per period it
reports the bank node's stages (``bank_data``: active book and bank indicators;
``grid_session``: the grid's indicators, ratings and u_G at that month, its drift and the
PSI session; ``joint_scoring``; ``rules_alerts``), the grid's own part of its session
(``grid_data``, ``grid_drift``), the wall time between PERIOD lines and both nodes' peak
RSS. The non-private limit of the same period is the same data stages in one process with
the plain logistic function (no PSI, no TLS): ``vs_plain`` is the period's wall time over it.

Usage (from the repository root)::

    python bench/monitor_speed.py --enterprises 5000 --periods 3
    python bench/monitor_speed.py --enterprises 100000 --book 20000 --periods 12 \
        --dsn "$GRIDCREDIT_TEST_PG" --json bench/results/monitor_100k_pg.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import REPO, RssSampler, write_json  # type: ignore[import-not-found, unused-ignore]


def cli(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "federation.cli", *args], cwd=REPO,
                            capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"gridcredit {args[0]} failed: {result.stderr[-2000:]}")


def start(args: list[str], log: Path) -> tuple[subprocess.Popen[str], list[str]]:
    lines: list[str] = []
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "federation.cli", *args], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=err, text=True)

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.strip())

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


def wait_for(lines: list[str], prefix: str, proc: subprocess.Popen[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in lines:
            if line.startswith(prefix):
                return line
        if proc.poll() is not None:
            sys.exit(f"node exited ({proc.returncode}) before {prefix!r}")
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {prefix!r}")


def plain(raw: Path | str, run: Path, month: int, schemas: dict[str, str | None]) -> float:
    """Seconds for one period's data stages and the plain score in one process."""
    import numpy as np

    from crypto.sigmoid import sigmoid
    from federation.protocol.messages import Role
    from parties.labels.sources import open_source
    from parties.model import PartyModel
    from parties.monitoring_data import bank_period, grid_period

    started = time.perf_counter()
    g = grid_period(open_source(raw, "grid", schemas["grid"]), month,
                    PartyModel.load(run / "grid/model.json", Role.GRID))
    b = bank_period(open_source(raw, "bank", schemas["bank"]), month,
                    PartyModel.load(run / "bank/model.json", Role.BANK))
    u_g = dict(zip(g.ids, g.u, strict=True))
    sigmoid(np.array([u + u_g[i] for i, u in zip(b.ids, b.u, strict=True) if i in u_g]))
    return time.perf_counter() - started


def thin(dsn: str, bank: str, month: int, book: int) -> int:
    """Keep the loans (and repayments) of a seeded share of the borrowers so that about
    ``book`` are active at ``month``; the active book's size at ``month``."""
    import psycopg
    from psycopg import sql

    s = sql.Identifier(bank)
    ordinal = "(substr(start_month, 1, 4)::int * 12 + substr(start_month, 6, 2)::int - 1)"
    active = sql.SQL(f"SELECT count(DISTINCT ent_id) FROM {{}}.loans WHERE {ordinal} <= {{}} "
                     f"AND {ordinal} + term_months > {{}}")
    with psycopg.connect(dsn, autocommit=True) as conn:

        def count() -> int:
            row = conn.execute(active.format(s, sql.Literal(month), sql.Literal(month)))
            got = row.fetchone()
            return int(got[0]) if got else 0

        now = count()
        if book and now > book:
            keep = book / now  # md5 of the ID: a fixed, seeded-by-content share
            drop = sql.SQL("('x' || substr(md5(ent_id), 1, 8))::bit(32)::bigint "
                           ">= {} * 4294967296").format(sql.Literal(keep))
            conn.execute(sql.SQL("DELETE FROM {}.repayments WHERE loan_id IN (SELECT loan_id "
                                 "FROM {}.loans WHERE {})").format(s, s, drop))
            conn.execute(sql.SQL("DELETE FROM {}.loans WHERE {}").format(s, drop))
            conn.execute(sql.SQL("VACUUM ANALYZE {}.loans").format(s))
            now = count()
        return now


def drop_schemas(dsn: str, names: list[str]) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(name)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--enterprises", type=int, default=5000)
    parser.add_argument("--months", type=int, default=30)
    parser.add_argument("--periods", type=int, default=3)
    parser.add_argument("--train-enterprises", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--dsn", default=None, help="PostgreSQL DSN: read from the database")
    parser.add_argument("--book", type=int, default=0, help="active book size to thin to")
    parser.add_argument("--baseline-month", default=None)
    a = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from parties.labels.schema import format_month, parse_month

    work = Path(tempfile.mkdtemp(prefix="monitor-bench-"))
    cli("synth", "--enterprises", str(a.train_enterprises), "--months", "30", "--seed", "1",
        "--out", str(work / "train"))
    for role in ("grid", "bank"):
        cli("features", "build", "--role", role, "--raw", str(work / "train"), "--impute",
            "median", "--out", str(work / f"{role}.csv"))
    cli("simulate", "--grid-data", str(work / "grid.csv"), "--bank-data",
        str(work / "bank.csv"), "--epochs", "1", "--batch-size", "256", "--out",
        str(work / "run"), "--quiet")
    t = time.perf_counter()
    tag = f"{int(time.time())}"
    schemas: dict[str, str | None] = {"grid": None, "bank": None}
    target = ["--out", str(work / "raw")]
    if a.dsn:
        schemas = {"grid": f"bench_grid_{tag}", "bank": f"bench_bank_{tag}"}
        target = ["--to", a.dsn, "--grid-schema", str(schemas["grid"]), "--bank-schema",
                  str(schemas["bank"])]
    cli("synth", "--enterprises", str(a.enterprises), "--months", str(a.months), "--seed", "2",
        *target)
    synth_s = time.perf_counter() - t
    last = parse_month("2021-01") + a.months - 1
    first = last - a.periods + 1
    book = thin(a.dsn, str(schemas["bank"]), last, a.book) if a.dsn else None
    print(json.dumps({"synth_s": round(synth_s, 1), "book_at_last_month": book}), flush=True)
    run = work / "run"
    raw: Path | str = a.dsn or work / "raw"
    baseline = a.baseline_month or format_month(first - 1)
    common = ["--tls-dir", str(run / "certs"), "--out", str(work / "mon"), "--raw", str(raw),
              "--baseline-month", baseline]
    rss = RssSampler().__enter__()  # from the grid's start: its baseline is part of its peak
    grid, glines = start(["monitor", "--role", "grid", "--model", str(run / "grid/model.json"),
                          *common, *(["--schema", str(schemas["grid"])] if a.dsn else [])],
                         work / "grid.log")
    peer = wait_for(glines, "LISTENING ", grid, 1800).split()[1]
    bank, blines = start(["monitor", "--role", "bank", "--model",
                          str(run / "bank/model.json"), "--peer", peer, "--period-from",
                          format_month(first), "--period-to", format_month(last), *common,
                          *(["--schema", str(schemas["bank"])] if a.dsn else [])],
                         work / "bank.log")
    try:
        measure(a, work, grid, glines, bank, blines, first, last, raw, schemas, synth_s, book,
                rss)
    finally:
        for proc in (grid, bank):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        rss.__exit__()
        if a.dsn:
            drop_schemas(a.dsn, [str(v) for v in schemas.values()])
        shutil.rmtree(work, ignore_errors=True)  # models, logs, periods: this run's only


def measure(a: argparse.Namespace, work: Path, grid: subprocess.Popen[str], glines: list[str],
            bank: subprocess.Popen[str], blines: list[str], first: int, last: int,
            raw: Path | str, schemas: dict[str, str | None], synth_s: float,
            book: int | None, rss: RssSampler) -> None:
    """Wait for each period, then print and write the table."""
    from parties.labels.schema import format_month

    run = work / "run"
    rows = []
    wait_for(blines, "LISTENING", bank, 1800)  # the bank's baseline is not a period's
    before = time.perf_counter()
    for month in range(first, last + 1):
        line = wait_for(blines, f"PERIOD {format_month(month)} done", bank, 1800)
        now = time.perf_counter()
        stages = dict(part.split("=") for part in line.split()[3:])
        built = wait_for(glines, f"PERIOD {format_month(month)} built", grid, 60)
        own = dict(part.split("=") for part in built.split()[3:])
        summary = json.loads((work / "mon/periods" / format_month(month) /
                              "summary.json").read_text())
        rows.append({"period": format_month(month), "wall_s": round(now - before, 2),
                     "borrowers": summary["borrowers"],
                     **{k: float(v.rstrip("s")) for k, v in stages.items()},
                     **{k.replace("drift", "grid_drift"): float(v.rstrip("s"))
                        for k, v in own.items()}})
        print(json.dumps(rows[-1]), flush=True)
        before = now
    wait_for(blines, "REPLAY done", bank, 60)
    grid.terminate()
    grid.wait(30)
    bank.wait(30)
    limit = plain(raw, run, last, schemas)
    wall = sum(r["wall_s"] for r in rows) / len(rows)
    reference = {"enterprises": a.enterprises, "book_at_last_month": book,
                 "source": "postgresql" if a.dsn else "csv", "mean_period_s": round(wall, 2),
                 "max_period_s": max(r["wall_s"] for r in rows),
                 "plain_period_s": round(limit, 2), "vs_plain": round(wall / limit, 2),
                 "synth_s": round(synth_s, 1),
                 "grid_peak_rss_mb": round(rss.tree.get(grid.pid, float("nan")), 1),
                 "bank_peak_rss_mb": round(rss.tree.get(bank.pid, float("nan")), 1),
                 "grid_vmhwm_mb": round(rss.hwm.get(grid.pid, float("nan")), 1),
                 "bank_vmhwm_mb": round(rss.hwm.get(bank.pid, float("nan")), 1)}
    print(json.dumps(reference))
    if a.json:
        write_json(a.json, rows, reference)


if __name__ == "__main__":
    main()
