"""What the transport expects of the node objects it serves, as structural types.

The gRPC servers and the liveness watcher in ``federation.transport`` call a coordinator
through this interface, so the transport layer never imports the coordinator it serves
(the coordinator lives above it, in ``federation``; docs/design.md, "Layout").
"""

from __future__ import annotations

from typing import Protocol

from federation.protocol.messages import (
    DealReply,
    DealRequest,
    FailRequest,
    JobPlan,
    JoinRequest,
    MatchReply,
    MatchRequest,
    Role,
    SyncReply,
    SyncRequest,
)


class CoordinatorService(Protocol):
    """The coordinator's side of the Coordinator RPCs and of the parties' liveness checks."""

    job_id: str

    def join(self, req: JoinRequest) -> JobPlan: ...

    def sync(self, req: SyncRequest) -> SyncReply: ...

    def deal(self, req: DealRequest) -> DealReply: ...

    def fail(self, req: FailRequest) -> None: ...

    def match(self, req: MatchRequest) -> MatchReply: ...

    def party_addresses(self) -> dict[Role, str]: ...

    @property
    def finished(self) -> bool: ...
