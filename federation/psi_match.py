"""The coordinator's part of server-aided PSI: hold both tag lists, match once, answer each.

docs/design.md, "One training job", step 2. The coordinator calls this under its own lock;
it learns both list sizes and the intersection size, never a key.
"""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt

from crypto.psi.tag_match import match_tags
from federation.protocol.errors import ProtocolAbort
from federation.protocol.messages import PARTY_ROLES, MatchReply, Role


class TagMatchState:
    """Both parties' tags until both arrived, then each party's positions until taken."""

    def __init__(self) -> None:
        self._tags: dict[Role, npt.NDArray[np.uint8]] = {}
        self._positions: dict[Role, npt.NDArray[np.int64]] = {}
        self.sizes: dict[str, int] = {}
        self.seconds: float | None = None  # the match's duration, once matched

    def add(self, role: Role, tags: npt.NDArray[np.uint8]) -> bool:
        """Keep one party's tags; True once both parties' are here."""
        if role in self._tags or self.seconds is not None:
            raise ProtocolAbort(f"{role} sent PSI tags twice")
        self._tags[role] = tags
        return len(self._tags) == len(PARTY_ROLES)

    def match(self) -> int:
        """Match the two lists (``PsiError`` on a repeated tag); the intersection size."""
        started = time.perf_counter()
        grid, bank = match_tags(self._tags[Role.GRID], self._tags[Role.BANK],
                                names=("grid's", "bank's"))
        self.seconds = time.perf_counter() - started
        self.sizes = {role.value: len(t) for role, t in self._tags.items()}
        self._tags.clear()
        self._positions = {Role.GRID: grid, Role.BANK: bank}
        return len(grid)

    def waiting(self) -> list[str]:
        """Which parties' tags are in, for a timeout message."""
        return sorted(role.value for role in self._tags)

    def ready(self, role: Role) -> bool:
        return role in self._positions

    def take(self, role: Role) -> MatchReply:
        return MatchReply(self._positions.pop(role))
