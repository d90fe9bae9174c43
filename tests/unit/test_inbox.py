"""federation.transport.channel.Inbox: tag matching, rejections, deadlines and abort wake-ups.

Waits are bounded (at most a few seconds as a safety net, never a sleep > 0.5 s); the
abort tests check the waiter returns long before its own deadline.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from federation.protocol.errors import PeerUnavailable, ProtocolAbort, VflError
from federation.protocol.messages import Envelope, Role, Tag
from federation.transport.channel import ROUND_WINDOW, Inbox, InMemoryChannel, abort_envelope

JOB = "job-1"


def env(round_: int, step: str = "fit", *, job: str = JOB, sender: Role = Role.BANK) -> Envelope:
    return Envelope(job, Tag(round_, step), sender, {"F": np.arange(3, dtype=np.uint64)})


@pytest.fixture
def inbox() -> Inbox:
    return Inbox(JOB, Role.BANK)


def test_messages_are_matched_by_tag_not_arrival_order(inbox: Inbox) -> None:
    inbox.put(env(1, "b"))
    inbox.put(env(1, "a"))
    assert inbox.get(Tag(1, "a"), 0.1).tag == Tag(1, "a")
    assert inbox.get(Tag(1, "b"), 0.1).tag == Tag(1, "b")


def test_duplicate_tag_rejected(inbox: Inbox) -> None:
    inbox.put(env(1))
    with pytest.raises(ProtocolAbort, match=r"duplicate.*round 1.*'fit'"):
        inbox.put(env(1))


def test_replay_after_consumption_rejected(inbox: Inbox) -> None:
    inbox.put(env(1))
    inbox.get(Tag(1, "fit"), 0.1)
    with pytest.raises(ProtocolAbort, match="already received"):
        inbox.put(env(1))


def test_other_job_rejected_naming_both_jobs(inbox: Inbox) -> None:
    with pytest.raises(ProtocolAbort, match=r"job 'job-2'.*job 'job-1'"):
        inbox.put(env(1, job="job-2"))


def test_other_sender_rejected_naming_sender(inbox: Inbox) -> None:
    with pytest.raises(ProtocolAbort, match=r"from grid rejected: expected bank"):
        inbox.put(env(1, sender=Role.GRID))
    with pytest.raises(ProtocolAbort, match="coordinator"):
        inbox.put(env(1, sender=Role.COORDINATOR))


def test_past_round_rejected(inbox: Inbox) -> None:
    for r in (2, 4, 5):  # a node moves forward at most ROUND_WINDOW rounds at a time
        inbox.put(env(r))
        inbox.get(Tag(r, "fit"), 0.1)  # this node is now at round r
    with pytest.raises(ProtocolAbort, match=r"past round 4 \(step 'late'\).*at round 5"):
        inbox.put(env(4, "late"))
    inbox.put(env(5, "other"))  # the current round is still open


def test_far_future_round_rejected_window_accepted(inbox: Inbox) -> None:
    # A party is at most one exchange ahead of its peer; the window allows 2 rounds.
    assert ROUND_WINDOW == 2
    inbox.put(env(2))  # the edge of the window is fine
    with pytest.raises(ProtocolAbort, match=r"future round 3 \(step 'fit'\).*at round 0"):
        inbox.put(env(3))
    with pytest.raises(ProtocolAbort, match="future round 1000"):
        inbox.put(env(1000))


def test_rejected_message_is_not_delivered(inbox: Inbox) -> None:
    with pytest.raises(ProtocolAbort):
        inbox.put(env(1, job="other"))
    with pytest.raises(PeerUnavailable):
        inbox.get(Tag(1, "fit"), 0.05)


def test_recv_times_out_with_peer_unavailable(inbox: Inbox) -> None:
    start = time.monotonic()
    with pytest.raises(PeerUnavailable, match=r"bank for round 3, step 'fit' within 0.1 s"):
        inbox.get(Tag(3, "fit"), 0.1)
    assert 0.09 <= time.monotonic() - start < 1.0


def wait_in_thread(inbox: Inbox, tag: Tag, timeout: float) -> tuple[threading.Thread,
                                                                      dict[str, object]]:
    out: dict[str, object] = {}
    started = threading.Event()

    def run() -> None:
        started.set()
        t0 = time.monotonic()
        try:
            out["env"] = inbox.get(tag, timeout)
        except VflError as exc:  # the test inspects what was raised
            out["exc"] = exc
        out["seconds"] = time.monotonic() - t0

    th = threading.Thread(target=run, daemon=True)
    th.start()
    assert started.wait(2.0)
    return th, out


def test_message_arriving_later_wakes_waiting_recv(inbox: Inbox) -> None:
    th, out = wait_in_thread(inbox, Tag(1, "fit"), 5.0)
    time.sleep(0.05)
    inbox.put(env(1))
    th.join(3.0)
    assert not th.is_alive()
    assert isinstance(out.get("env"), Envelope)


def test_local_failure_wakes_waiting_recv_with_that_error(inbox: Inbox) -> None:
    th, out = wait_in_thread(inbox, Tag(1, "fit"), 5.0)
    time.sleep(0.05)
    inbox.fail_local(ProtocolAbort("coordinator stopped the job"))
    th.join(3.0)
    assert not th.is_alive()
    exc = out.get("exc")
    assert isinstance(exc, ProtocolAbort) and "coordinator stopped the job" in str(exc)
    assert float(out["seconds"]) < 2.0  # type: ignore[arg-type]


def test_peer_abort_notice_wakes_waiting_recv(inbox: Inbox) -> None:
    th, out = wait_in_thread(inbox, Tag(2, "fit"), 5.0)
    time.sleep(0.05)
    inbox.put(abort_envelope(JOB, Role.BANK, "bank ran out of memory"))
    th.join(3.0)
    assert not th.is_alive()
    exc = out.get("exc")
    assert isinstance(exc, ProtocolAbort)
    assert "bank aborted the job: bank ran out of memory" in str(exc)


def test_abort_notice_from_wrong_sender_or_job_is_rejected(inbox: Inbox) -> None:
    with pytest.raises(ProtocolAbort):
        inbox.put(abort_envelope(JOB, Role.GRID, "spoofed"))
    with pytest.raises(ProtocolAbort):
        inbox.put(abort_envelope("other-job", Role.BANK, "stale"))
    with pytest.raises(PeerUnavailable):  # not aborted: the wait simply times out
        inbox.get(Tag(1, "fit"), 0.05)


def test_in_memory_pair_copies_payloads_and_propagates_abort() -> None:
    grid, bank = InMemoryChannel.pair(JOB)
    payload = np.arange(4, dtype=np.uint64)
    grid.send(Envelope(JOB, Tag(1, "fit"), Role.GRID, {"F": payload}))
    payload[0] = np.uint64(99)
    got = bank.recv(Tag(1, "fit"), 0.1)
    assert got.tensors["F"].tolist() == [0, 1, 2, 3]
    assert grid.bytes_sent == 32
    grid.abort("grid failed")
    with pytest.raises(ProtocolAbort, match="grid aborted the job: grid failed"):
        bank.recv(Tag(2, "fit"), 2.0)
