"""Fetching the dealer's corrections ahead of the epoch that needs them (both fit modes)."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

from federation.protocol.messages import DealReply, DealRequest, Role
from federation.transport.channel import CoordinatorLink


class DealAhead:
    """Fetches the dealer's corrections one epoch ahead, on a background thread.

    The coordinator computes an epoch's corrections on request; asking for epoch e + 1
    while epoch e trains hides that time. A prefetched epoch the job never reaches (early
    stop) is simply dropped: its masks are never used. Epoch 1 is asked for when it is
    needed, not during the setup exchange: there the coordinator's dealing and the receipt of
    its reply competed with the E swap for two cores (bench/RESULTS.md).
    """

    def __init__(self, coordinator: CoordinatorLink, job_id: str, role: Role,
                 last_epoch: int) -> None:
        self._coordinator, self._job_id, self._role = coordinator, job_id, role
        self._last = last_epoch
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deal-ahead")
        self._ahead: dict[int, Future[DealReply]] = {}

    def _request(self, epoch: int) -> Future[DealReply]:
        if epoch not in self._ahead:
            self._ahead[epoch] = self._pool.submit(
                self._coordinator.deal, DealRequest(self._job_id, self._role, epoch))
        return self._ahead[epoch]

    def get(self, epoch: int) -> DealReply:
        """This epoch's corrections (and start fetching the next epoch's)."""
        future = self._request(epoch)
        if epoch < self._last:
            self._request(epoch + 1)
        return future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> DealAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # also on failure: the fetching thread must not outlive the fit
