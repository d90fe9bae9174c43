"""Online scoring, the grid's quotas: rows per session, requests and session opens per minute.

Why: each session open may cost the grid a blinding pass over all its rows (a new key epoch)
and sends it its whole table; each request costs curve work per point; each scored row
hands the bank u_G of one of the grid's enterprises. A bank that deviates, or whose systems
run away, is bounded by these limits rather than by the grid's patience:

- ``rows_per_session``: rows one session may score; a request that would pass it closes the
  session (the bank opens a new one, which the open limit counts), a request that alone asks
  for more is refused.
- ``requests_per_minute``: requests (``serve/blinded``) over all sessions in any 60 s.
- ``opens_per_minute``: session opens per caller (the certificate's name) in any 60 s.

A refusal is a :class:`QuotaExceeded`, one line naming the limit and its ``serve`` flag.
``None`` means no limit (monitoring, tests). Assumes: a monotonic clock; thread-safe.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from federation.protocol.errors import ProtocolAbort

WINDOW_SECONDS = 60.0


class QuotaExceeded(ProtocolAbort):
    """The grid refused a request or a session open: a quota of ``gridcredit serve``."""


@dataclass(frozen=True)
class Quotas:
    """The grid's limits (``gridcredit serve --role grid --help``); None: unlimited."""

    rows_per_session: int | None = None
    requests_per_minute: int | None = None
    opens_per_minute: int | None = None

    def __post_init__(self) -> None:
        for name in ("rows_per_session", "requests_per_minute", "opens_per_minute"):
            value = getattr(self, name)
            if value is not None and value < 1:
                flag = "--max-" + name.replace("_", "-")
                raise ValueError(f"{flag} must be at least 1, got {value}")


class RateWindow:
    """At most ``limit`` events per key in any ``WINDOW_SECONDS`` (a sliding window).

    Parameters
    ----------
    limit : int or None
        Events allowed per key and window; None allows everything.
    what : str
        How an event is named in the refusal ("requests", "session opens").
    flag : str
        The ``serve`` flag that sets ``limit``.
    clock : callable
        Monotonic seconds (tests pass a fake one).
    """

    def __init__(self, limit: int | None, what: str, flag: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._what = what
        self._flag = flag
        self._clock = clock
        self._lock = threading.Lock()
        self._times: dict[str, collections.deque[float]] = {}

    def take(self, key: str = "") -> None:
        """Count one event of ``key``; raise :class:`QuotaExceeded` (not counted) if over."""
        if self._limit is None:
            return
        now = self._clock()
        with self._lock:
            times = self._times.setdefault(key, collections.deque())
            while times and times[0] <= now - WINDOW_SECONDS:
                times.popleft()
            if len(times) >= self._limit:
                who = f" by {key}" if key else ""
                raise QuotaExceeded(
                    f"the grid refused: more than {self._limit} {self._what}{who} in the last "
                    f"minute (grid {self._flag} {self._limit}); try again later"
                )
            times.append(now)
            for other in [k for k, t in self._times.items() if not t and k != key]:
                del self._times[other]  # keys seen once long ago do not pile up
