"""Starting and watching node processes on this machine (simulate, score, tests).

A ``NodeProcess`` is one ``gridcredit`` node started with ``sys.executable -m
federation.cli``; its stdout is read line by line on a thread (``LISTENING``, ``DATA PLANE``
and ``EVENT`` lines), its stderr goes to ``<out>/node.log``. ``Federation`` starts the
three nodes in order, waits with deadlines, and on any node's failure stops every
process and raises one error naming the node and its reason.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from federation.job_stages import JobStage
from federation.lifeline import PARENT_ENV
from federation.protocol.errors import VflError
from federation.protocol.files import open_log

Event = dict[str, object]
EVENTS_ENV = "GRIDCREDIT_EVENTS"
# A node still running this long after another finished the job is frozen or stuck.
LINGER_SECONDS = 30.0
LOWEST_PRIORITY = 19  # the nice value of ``idle_thread``


class NodeFailed(VflError):
    """A node process exited non-zero or did not start."""


@dataclass
class NodeProcess:
    name: str
    args: list[str]
    out: Path
    proc: subprocess.Popen[str] | None = None
    address: str = ""
    log_level: str = ""  # passed to the child as --log-level; its log is out/node.log
    env: dict[str, str] = field(default_factory=dict)  # added to this process's environment
    data_address: str = ""  # a party's TLS data plane (its ``DATA PLANE`` line), if it has one
    events: queue.Queue[Event] = field(default_factory=queue.Queue)
    _listening: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self._spawn("federation.cli")

    def _spawn(self, module: str) -> None:
        """Start ``python -m module [--log-level L] ARGS``; stderr to ``out/node.log``.

        The child knows its parent (``GRIDCREDIT_PARENT_PID``: it stops if this process is
        gone) and prints machine-readable ``EVENT`` lines (``GRIDCREDIT_EVENTS``).
        """
        self.out.mkdir(parents=True, exist_ok=True)
        log = open_log(self.out / "node.log")  # private: error lines may quote the data
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1",
               PARENT_ENV: str(os.getpid()), EVENTS_ENV: "1"}
        level = ["--log-level", self.log_level] if self.log_level else []
        self.proc = subprocess.Popen([sys.executable, "-m", module, *level, *self.args],
                                     stdout=subprocess.PIPE, stderr=log, text=True, env=env,
                                     start_new_session=True)
        log.close()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        if self.proc is None or self.proc.stdout is None:
            return
        for line in self.proc.stdout:
            if line.startswith("LISTENING "):
                self.address = line.split(None, 1)[1].strip()
                self._listening.set()
            elif line.startswith("DATA PLANE "):  # printed before LISTENING
                self.data_address = line.split()[-1]
            elif line.startswith("EVENT "):
                self.events.put(json.loads(line[6:]))

    def wait_listening(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while not self._listening.wait(0.05):
            if self.proc is not None and self.proc.poll() is not None:
                raise NodeFailed(f"{self.name} exited before listening: {self.reason()}")
            if time.monotonic() > deadline:
                raise NodeFailed(f"{self.name} did not start listening within {timeout:g} s")
        return self.address

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else -1

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def reason(self) -> str:
        """The node's own last error line from its log."""
        try:
            lines = (self.out / "node.log").read_text(encoding="utf-8").splitlines()
        except OSError:
            return "no log"
        errors = [line for line in lines if line.startswith("error:")]
        if errors:
            return errors[-1][len("error:"):].strip()
        code = self.returncode()
        if code is not None and code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return lines[-1].strip() if lines else f"exit code {code}"

    def stop(self) -> None:
        """SIGTERM to the node's process group, SIGKILL after 5 s; a node that died leaves
        nothing behind either (PSI workers share its group)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() != 0:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait(5)


def supervise(nodes: list[NodeProcess], timeout: float,
              on_event: Callable[[Event], None], events_from: NodeProcess,
              linger: float = LINGER_SECONDS,
              meanwhile: Callable[[], None] | None = None,
              meanwhile_from: Callable[[Event], bool] | None = None) -> None:
    """Wait for every node to exit 0; on the first failure stop all and raise.

    Once one node finished (exit 0), the others get ``linger`` seconds to finish too: a
    node frozen (SIGSTOP) or stuck after the job's last barrier fails the job, naming it,
    instead of keeping it open until ``timeout``. ``meanwhile`` is the caller's own work for
    later, done while the nodes run instead of after them: from the first event for which
    ``meanwhile_from`` holds (at once without it; at the latest once a node finished), on a
    thread of the lowest priority (``idle_thread``); the job is over once it is done too.
    """
    deadline = time.monotonic() + timeout
    first_done: float | None = None
    pending, waiters = meanwhile, []

    def begin() -> None:
        nonlocal pending
        if pending is not None:
            waiters.append(idle_thread(pending))
            pending = None

    if meanwhile_from is None:
        begin()
    try:
        while True:
            try:
                while True:
                    event = events_from.events.get_nowait()
                    on_event(event)
                    if meanwhile_from is not None and meanwhile_from(event):
                        begin()
            except queue.Empty:
                pass
            codes = {n.name: n.returncode() for n in nodes}
            failed = [n for n in nodes if codes[n.name] not in (None, 0)]
            if failed:
                first = _root_cause(failed, nodes)
                raise NodeFailed(f"{first.name} failed (exit {first.returncode()}): "
                                 f"{first.reason()}")
            if all(code == 0 for code in codes.values()):
                if pending is not None:  # never started: nothing is left to slow down
                    pending()
                for wait in waiters:
                    wait()
                return
            running = [k for k, v in codes.items() if v is None]
            if first_done is None and len(running) < len(codes):
                first_done = time.monotonic()
                begin()
            if first_done is not None and time.monotonic() - first_done > linger:
                done = [k for k, v in codes.items() if v == 0]
                raise NodeFailed(f"{', '.join(running)} did not exit within {linger:g} s after "
                                 f"{', '.join(done)} finished the job (frozen or stuck)")
            if time.monotonic() > deadline:
                raise NodeFailed(f"the job did not finish within {timeout:g} s "
                                 f"(still running: {running})")
            time.sleep(0.05)
    finally:
        for node in nodes:
            node.stop()


def past_fit(event: Event) -> bool:
    """Whether the coordinator's ``event`` says the job is past its fit (evaluating or done):
    when ``simulate`` starts its own work for the report, not to slow the training."""
    return event.get("event") == "stage" and event.get("stage") in (JobStage.EVALUATE,
                                                                      JobStage.DONE)


def idle_thread(work: Callable[[], None]) -> Callable[[], None]:
    """Start ``work`` on a thread of the lowest priority (nice 19: any other process's thread
    that wants the core gets it first, yet on a fully busy machine it still advances, unlike
    ``SCHED_IDLE``); returns a function that waits for it and re-raises its error. Work
    beside a job must not slow the job: importing scikit-learn in the parent of a
    ``simulate`` while the nodes trained took a core from them (bench/RESULTS.md)."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            try:  # Linux: the nice value of this thread only
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST_PRIORITY)
            except (AttributeError, OSError):  # not Linux, or refused: normal priority
                pass
            work()
        except BaseException as exc:  # handed to the waiter
            failed.append(exc)

    thread = threading.Thread(target=run, name="meanwhile", daemon=True)
    thread.start()

    def wait() -> None:
        thread.join()
        if failed:
            raise failed[0]

    return wait


SECONDARY = ("already failed", "aborted the job", "stopped the job", "failed: ")
SETTLE_SECONDS = 5.0


def _root_cause(failed: list[NodeProcess], nodes: list[NodeProcess]) -> NodeProcess:
    """The node that failed on its own, not one that only saw another node fail.

    Waits briefly for the other nodes to exit and write their last line first.
    """
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline and any(n.returncode() is None for n in nodes):
        time.sleep(0.05)
    candidates = [n for n in nodes if n.returncode() not in (None, 0)] or failed
    for node in candidates:
        if not _secondary(node, nodes):
            return node
    return candidates[0]


def _secondary(node: NodeProcess, nodes: list[NodeProcess]) -> bool:
    """Whether ``node`` only reports another node's failure.

    Besides the markers: "the coordinator at ... stopped answering" from a party whose
    coordinator exited with an error of its own (code > 0, not a signal) is secondary: the
    coordinator failed the job and said why first (e.g. that a frozen party stopped answering).
    """
    reason = node.reason()
    if any(marker in reason for marker in SECONDARY):
        return True
    return "stopped answering" in reason and any(
        other is not node and other.name in reason and (other.returncode() or 0) > 0
        for other in nodes)


@dataclass
class ServeProcess(NodeProcess):
    """A ``serve`` node as an OS process (``args`` start with ``serve``); stderr in node.log."""

    module: str = "federation.cli"

    def start(self) -> None:
        self._spawn(self.module)
