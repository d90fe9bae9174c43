"""Reading the logs of one job together: cross-matching and the summary.

:func:`match_peers` pairs every ``sent`` entry with the peer's ``received`` entry (same job,
round, step, digest and size; a repeated ``sent`` of a message that did arrive is a retry's
attempt that did not, and needs no partner); :func:`summarize` counts messages and bytes per
step and peer and who received which kind of message. Pure: no printing.
Assumes: each log has already been checked on its own (:mod:`federation.transport.audit_check`).
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from federation.transport.audit import is_mark
from federation.transport.audit_check import Problem, read_entries, read_lines, short_digest

# ---------------------------------------------------------------------------------------------
# Cross-matching the logs of one job

Key = tuple[str, int, str, str, int]  # job, round, step, sha256, bytes


def _key(entry: dict[str, Any]) -> Key:
    return entry["job"], entry["round"], entry["step"], entry["sha256"], entry["bytes"]


def _describe(entry: dict[str, Any]) -> str:
    return (
        f"{entry['step']!r} (job {entry['job']}, round {entry['round']}, "
        f"{entry['bytes']} bytes, sha256 {short_digest(entry['sha256'])})"
    )


def _pair(
    sender: str,
    sender_file: Path,
    sent: list[tuple[int, dict[str, Any]]],
    receiver: str,
    receiver_file: Path,
    got: list[tuple[int, dict[str, Any]]],
) -> list[Problem]:
    """Pair each sent entry with one received entry of the same key, in log order."""
    waiting: dict[Key, deque[tuple[int, dict[str, Any]]]] = defaultdict(deque)
    for item in got:
        waiting[_key(item[1])].append(item)
    lonely_sent = []
    delivered: set[Key] = set()
    for n, e in sent:
        if waiting[_key(e)]:
            waiting[_key(e)].popleft()
            delivered.add(_key(e))
        else:
            lonely_sent.append((n, e))
    # A call retried after its peer became unreachable logs each attempt; an attempt that
    # never arrived repeats a message that did: it revealed nothing more, so it is no problem.
    lonely_sent = [(n, e) for n, e in lonely_sent if _key(e) not in delivered]
    near: dict[tuple[str, int, str], deque[tuple[int, dict[str, Any]]]] = defaultdict(deque)
    for n, e in sorted(
        (item for queue in waiting.values() for item in queue), key=lambda item: item[0]
    ):
        near[_key(e)[:3]].append((n, e))
    problems = []
    for n, e in lonely_sent:
        queue = near[_key(e)[:3]]
        if queue:  # same job, round and step: say what differs
            m, r = queue.popleft()
            problems.append(
                Problem(
                    sender_file,
                    n,
                    f"sent {_describe(e)} to {receiver}, but "
                    f"{receiver_file} line {m} received {r['bytes']} bytes, "
                    f"sha256 {short_digest(r['sha256'])}",
                )
            )
        else:
            problems.append(
                Problem(
                    sender_file,
                    n,
                    f"sent {_describe(e)} to {receiver}; no "
                    f"matching 'received' entry in {receiver_file}",
                )
            )
    for queue in near.values():
        for m, r in queue:
            problems.append(
                Problem(
                    receiver_file,
                    m,
                    f"received {_describe(r)} from {sender}; "
                    f"no matching 'sent' entry in {sender_file}",
                )
            )
    return problems


def match_peers(logs: dict[str, Path]) -> list[Problem]:
    """Pair every ``sent`` entry with exactly one ``received`` entry in the peer's log.

    Parameters
    ----------
    logs : dict[str, Path]
        Node name -> its ``audit.jsonl``, for several nodes of one job. Entries to or from
        a node whose log is not given are not checked.

    Returns
    -------
    list[Problem]
        Each unmatched entry (either side) with its file and line; a sent/received pair
        with the same job, round and step but a different digest or size is one problem
        at the sender's line naming the receiver's line. Logs of disjoint jobs give one
        problem per log instead.
    """
    entries: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    problems: list[Problem] = []
    for node, path in logs.items():
        try:
            entries[node] = read_entries(path)
        except OSError as exc:
            problems.append(Problem(path, 0, f"cannot read: {exc.strerror or exc}"))
            continue
        strangers = [n for n, e in entries[node] if e["node"] != node]
        if strangers:
            problems.append(Problem(path, strangers[0], f"entry is not {node}'s (node field)"))
    jobs = {node: {e["job"] for _, e in es} for node, es in entries.items()}
    common = set.intersection(*jobs.values()) if jobs else set()
    if len(jobs) > 1 and not common:
        return problems + [
            Problem(
                logs[n],
                0,
                f"{n}'s log is of job(s) {sorted(j)}, no job common to all the logs given",
            )
            for n, j in jobs.items()
        ]
    for sender, sender_entries in entries.items():
        for receiver, receiver_entries in entries.items():
            if sender == receiver:
                continue
            sent = [
                (n, e)
                for n, e in sender_entries
                if e["direction"] == "sent" and e["peer"] == receiver
            ]
            got = [
                (n, e)
                for n, e in receiver_entries
                if e["direction"] == "received" and e["peer"] == sender
            ]
            problems += _pair(sender, logs[sender], sent, receiver, logs[receiver], got)
    return sorted(problems, key=lambda p: (str(p.file), p.line))


# ---------------------------------------------------------------------------------------------
# Summary


@dataclass(frozen=True, slots=True)
class Flow:
    """The messages of one step from one node to another."""

    sender: str
    receiver: str
    step: str
    messages: int
    bytes: int
    first_round: int
    last_round: int
    tensors: tuple[str, ...]  # "name dtype[shape|shape...]" per tensor name, never values


@dataclass(frozen=True)
class Summary:
    """What crossed the wire, as the given logs tell it."""

    jobs: tuple[str, ...]
    entries: dict[str, int]  # node -> well-formed entries read
    flows: tuple[Flow, ...]  # in order of first appearance
    skipped: dict[str, int] = field(default_factory=dict)  # node -> lines not read

    def per_peer(self) -> list[tuple[str, str, int, int]]:
        """(sender, receiver, messages, bytes) per direction of travel."""
        totals: dict[tuple[str, str], list[int]] = {}
        for f in self.flows:
            t = totals.setdefault((f.sender, f.receiver), [0, 0])
            t[0] += f.messages
            t[1] += f.bytes
        return [(s, r, m, b) for (s, r), (m, b) in totals.items()]

    def reveal(self) -> dict[str, dict[str, tuple[str, ...]]]:
        """Receiver -> sender -> the steps (kinds of message) it received from that sender."""
        out: dict[str, dict[str, tuple[str, ...]]] = {}
        for f in self.flows:
            steps = out.setdefault(f.receiver, {}).get(f.sender, ())
            out[f.receiver][f.sender] = steps + (f.step,)
        return out


def _tensor_kinds(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """("name dtype", "shape") of each tensor described in ``entry``."""
    kinds = []
    for t in entry["tensors"]:
        if isinstance(t, dict):
            shape = ",".join(str(d) for d in t.get("shape", []))
            kinds.append((f"{t.get('name')} {t.get('dtype')}", shape))
    return kinds


def summarize(logs: dict[str, Path]) -> Summary:
    """Count messages and bytes per step and per (sender, receiver).

    Each message is counted once: from the sender's log when it is given, else from the
    receiver's. Malformed lines are skipped and counted (``audit verify`` names them).

    Parameters
    ----------
    logs : dict[str, Path]
        Node name -> its ``audit.jsonl``.

    Returns
    -------
    Summary
        Flows in order of first appearance, per-peer totals and the reveal table.
    """
    acc: dict[tuple[str, str, str], dict[str, Any]] = {}
    counts, skipped, jobs = {}, {}, set()
    for node, path in logs.items():
        lines = read_lines(path)
        entries = [line.entry for line in lines if line.entry is not None]
        skipped[node] = len(lines) - len(entries)
        entries = [e for e in entries if not is_mark(e)]
        counts[node] = len(entries)
        for e in entries:
            sent = e["direction"] == "sent"
            sender, receiver = (node, e["peer"]) if sent else (e["peer"], node)
            if not sent and sender in logs:
                continue  # the sender's log counts it
            jobs.add(e["job"])
            a = acc.setdefault(
                (sender, receiver, e["step"]),
                {"time": e["time"], "messages": 0, "bytes": 0, "rounds": [], "tensors": {}},
            )
            a["time"] = min(a["time"], e["time"])
            a["messages"] += 1
            a["bytes"] += e["bytes"]
            a["rounds"].append(e["round"])
            for kind, shape in _tensor_kinds(e):
                a["tensors"].setdefault(kind, {})[shape] = None
    flows = [
        Flow(
            s,
            r,
            step,
            a["messages"],
            a["bytes"],
            min(a["rounds"]),
            max(a["rounds"]),
            tuple(f"{kind}[{'|'.join(shapes)}]" for kind, shapes in a["tensors"].items()),
        )
        for (s, r, step), a in sorted(acc.items(), key=lambda kv: kv[1]["time"])
    ]
    return Summary(tuple(sorted(jobs)), counts, tuple(flows), skipped)
