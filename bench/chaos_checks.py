"""The promises ``bench/chaos.py`` checks after each job (pure reading of the job folder).

- :func:`model_gap`: the largest difference between a job's weights and the reference's;
- :func:`leftover_outputs`: models, predictions, statistics or report left after a failure;
- :func:`audit_problems`: each audit log's hash chain and signatures (and, for a finished
  job, every message paired with its peer's entry);
- :func:`orphans`: processes of the job still alive (by process group or command line);
  they are reported, then stopped by pid.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from federation.audit_cli import node_public_key
from federation.transport.audit_check import verify_chain
from federation.transport.audit_pairs import match_peers

NODES = ("coordinator", "grid", "bank")
OUTPUTS = ("model.json", "coefficients.csv", "predictions.csv", "bank_only_predictions.csv",
           "metrics.json", "stats.json", "scores.csv")


def _weights(run: Path) -> list[float]:
    values: list[float] = []
    for role in ("grid", "bank"):
        model = json.loads((run / role / "model.json").read_text(encoding="utf-8"))
        values += model["weights"] + ([model["intercept"]] if model["intercept"] else [])
    return values


def model_gap(run: Path, reference: Path) -> float:
    """Largest absolute weight difference (inf if a model is missing or of another shape)."""
    try:
        got, want = _weights(run), _weights(reference)
    except (OSError, ValueError, KeyError):
        return float("inf")
    if len(got) != len(want):
        return float("inf")
    return max((abs(a - b) for a, b in zip(got, want)), default=0.0)


def leftover_outputs(run: Path) -> list[str]:
    left = [f"{n}/{name}" for n in NODES for name in OUTPUTS if (run / n / name).exists()]
    left += [name for name in ("report.json", "summary.md") if (run / name).exists()]
    return [f"left {', '.join(left)} after failing"] if left else []


def audit_problems(run: Path, certs: Path, pair: bool) -> list[str]:
    logs = {n: run / n / "audit.jsonl" for n in NODES if (run / n / "audit.jsonl").exists()}
    problems = []
    for node, path in logs.items():
        key, problem = node_public_key(certs, node)
        found = [problem] if problem else verify_chain(path, key)
        problems += [f"audit: {p}" for p in found[:2]]
    if pair and not problems:
        problems += [f"audit pairing: {p}" for p in match_peers(logs)[:2]]
    return problems


def _members(pgids: set[int], marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, UnicodeDecodeError):
            continue
        if fields[0] != "Z" and (int(fields[2]) in pgids or marker in cmdline):
            found.append(int(entry.name))
    return found


def orphans(pgids: set[int], run: Path, wait: float = 10.0) -> list[str]:
    """Processes of this job still alive ``wait`` s after it was stopped (then SIGKILLed)."""
    deadline = time.monotonic() + wait
    alive = _members(pgids, str(run))
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = _members(pgids, str(run))
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return [f"orphan processes {alive}"] if alive else []
