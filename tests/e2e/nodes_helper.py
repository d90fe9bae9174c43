"""Helpers of the robustness suites: bad certificates, synthetic party CSVs, node processes.

Every wait is bounded in time; every process is stopped by its own handle (or pid).
"""

from __future__ import annotations

import datetime as dt
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from federation.processes import Event, NodeProcess
from federation.transport.certs import make_node_cert, write_federation

START_TIMEOUT = 60.0


# -- certificates ---------------------------------------------------------------------------
def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: object) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM,  # type: ignore[attr-defined]
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_node(directory: Path, role: str, cert: x509.Certificate, key: object) -> None:
    (directory / f"{role}.pem").write_bytes(_pem(cert))
    key_path = directory / f"{role}.key"
    key_path.write_bytes(_key_pem(key))
    os.chmod(key_path, 0o600)


def _load_ca(directory: Path) -> tuple[x509.Certificate, object]:
    cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    return cert, key


def federation(directory: Path) -> Path:
    """A fresh federation CA and coordinator/grid/bank certificates in ``directory``."""
    write_federation(directory)
    return directory


def expired_copy(fed: Path, out: Path, roles: Iterable[str]) -> Path:
    """A copy of ``fed`` whose certificates for ``roles`` expired 10 days ago (same CA)."""
    shutil.copytree(fed, out)
    ca_cert, ca_key = _load_ca(fed)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    for role in roles:
        cert, key = make_node_cert(ca_cert, ca_key, role, valid_from=start, days=30)  # type: ignore[arg-type]
        _write_node(out, role, cert, key)
    return out


def foreign_signed_copy(fed: Path, rogue: Path, out: Path, roles: Iterable[str]) -> Path:
    """A copy of ``fed`` (its CA) whose ``roles`` certificates were issued by another CA.

    Both CAs are made by ``write_federation`` and so carry the same subject name, as two
    federations set up with ``gridcredit certs`` would.
    """
    shutil.copytree(fed, out)
    for role in roles:
        for suffix in (".pem", ".key"):
            shutil.copy(rogue / f"{role}{suffix}", out / f"{role}{suffix}")
    return out


def swapped_copy(fed: Path, out: Path, role: str, presents: str) -> Path:
    """A copy of ``fed`` where ``role``'s certificate and key are those of ``presents``."""
    shutil.copytree(fed, out)
    for suffix in (".pem", ".key"):
        shutil.copy(fed / f"{presents}{suffix}", out / f"{role}{suffix}")
    return out


# -- data -----------------------------------------------------------------------------------
def write_party_csvs(directory: Path, n: int = 3000, k_grid: int = 5, k_bank: int = 3,
                     seed: int = 0) -> tuple[Path, Path]:
    """Synthetic grid and bank CSVs on the same ``n`` enterprise IDs (labels depend on both)."""
    rng = np.random.default_rng(seed)
    ids = [f"e{i:06d}" for i in range(n)]
    xg, xb = rng.normal(size=(n, k_grid)), rng.normal(size=(n, k_bank))
    logit = xg @ rng.normal(size=k_grid) + xb @ rng.normal(size=k_bank) - 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    directory.mkdir(parents=True, exist_ok=True)
    grid, bank = directory / "grid.csv", directory / "bank.csv"
    grid.write_text("id," + ",".join(f"g{j}" for j in range(k_grid)) + "\n" + "".join(
        f"{i}," + ",".join(f"{v:.6f}" for v in row) + "\n" for i, row in zip(ids, xg)))
    bank.write_text("id,y," + ",".join(f"b{j}" for j in range(k_bank)) + "\n" + "".join(
        f"{i},{t}," + ",".join(f"{v:.6f}" for v in row) + "\n"
        for i, t, row in zip(ids, y, xb)))
    return grid, bank


def job_toml(path: Path, deadline: float) -> Path:
    """A party config file holding only ``[job] deadline`` (as --deadline would set it)."""
    path.write_text(f"[job]\ndeadline = {deadline!r}\n")
    return path


# -- processes ------------------------------------------------------------------------------
def coordinator(out: Path, tls: Path, job: str, *extra: str) -> NodeProcess:
    return NodeProcess("coordinator", ["coordinator", "--job-id", job, "--listen", "127.0.0.1:0",
                                       "--out", str(out), "--tls-dir", str(tls), *extra], out)


def party(role: str, out: Path, tls: Path, job: str, coordinator_address: str, data: Path,
          config: Path | None = None) -> NodeProcess:
    args = ["party", "--role", role]
    if config is not None:
        args += ["--config", str(config)]
    args += ["--job-id", job, "--listen", "127.0.0.1:0", "--coordinator", coordinator_address,
             "--out", str(out), "--tls-dir", str(tls), "--data", str(data)]
    return NodeProcess(role, args, out)


def stop_all(nodes: Iterable[NodeProcess]) -> None:
    for node in nodes:
        node.stop()


def log_tail(node: NodeProcess, lines: int = 15) -> str:
    try:
        text = (node.out / "node.log").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"--- {node.name}: no log"
    return f"--- {node.name} (exit {node.returncode()}):\n" + "\n".join(
        text.splitlines()[-lines:])


def tails(nodes: Iterable[NodeProcess]) -> str:
    """Each node's stderr tail, for assertion messages."""
    return "\n".join(log_tail(node) for node in nodes)


def error_line(node: NodeProcess) -> str:
    """The node's last ``error:`` line (what the CLI prints on failure), or ''."""
    try:
        text = (node.out / "node.log").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    return errors[-1] if errors else ""


def wait_event(node: NodeProcess, wanted: Callable[[Event], bool], timeout: float,
               watch: Iterable[NodeProcess] = ()) -> Event:
    """The first event of ``node`` for which ``wanted`` holds; fails fast if a node exits."""
    deadline = time.monotonic() + timeout
    watched = [node, *watch]
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no matching event from {node.name} within {timeout:g} s\n"
                                 + tails(watched))
        try:
            event = node.events.get(timeout=min(left, 0.1))
        except queue.Empty:
            exited = [n.name for n in watched if n.returncode() is not None]
            if exited:
                raise AssertionError(f"{exited} exited while waiting for an event\n"
                                     + tails(watched)) from None
            continue
        if wanted(event):
            return event


def wait_exits(nodes: Iterable[NodeProcess], since: float, timeout: float
               ) -> dict[str, float]:
    """Seconds from ``since`` (monotonic) until each node exited; bounded by ``timeout``.

    One waiter thread per process (``Popen.wait`` with a timeout): no polling.
    """
    exited: dict[str, float] = {}

    def wait(node: NodeProcess) -> None:
        if node.proc is None:
            return
        try:
            node.proc.wait(max(0.0, since + timeout - time.monotonic()))
        except subprocess.TimeoutExpired:
            return
        exited[node.name] = time.monotonic() - since

    threads = [threading.Thread(target=wait, args=(node,), daemon=True) for node in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 5.0)
    return exited


def kill(pid: int) -> None:
    """SIGKILL one process by its id (ignores one that is already gone)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def children_of(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the direct children of ``pid`` (from /proc)."""
    found: list[tuple[int, str]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != pid:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
        found.append((int(entry.name), cmdline))
    return found
