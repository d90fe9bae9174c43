"""Jobs shared by the privacy suites, run once per session and mode."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from federation.protocol.messages import Mode, PsiProtocol, TrainSettings
from tests.privacy.harness import Job, make_data, run_job, settings

MODES = [Mode.LOCAL, Mode.SHARED]
# The transcript job: 400 common rows (+20 each side that PSI drops), 4 + 3 features.
SMALL_ROWS, SMALL_EXTRA = 400, 20
# The uniformity job: enough rows that each party receives > 10^5 ring words.
BIG_ROWS = 16_000


def small_settings(mode: Mode, **kw: object) -> TrainSettings:
    base: dict[str, object] = {"epochs": 3, "batch_size": 32, "learning_rate": 0.15,
                               "l2": 0.001, "tolerance": 0.0, "seed": 3}
    base.update(kw)
    return settings(mode, **base)


PSI = [PsiProtocol.SERVER_AIDED, PsiProtocol.ECDH]


@pytest.fixture(scope="session")
def small_job() -> Callable[..., Job]:
    """The 400-row job of a mode and PSI protocol (default: ECDH); memoized."""
    cache: dict[tuple[Mode, PsiProtocol], Job] = {}

    def get(mode: Mode, psi: PsiProtocol = PsiProtocol.ECDH) -> Job:
        if (mode, psi) not in cache:
            grid, bank = make_data(SMALL_ROWS, 4, 3, seed=1, extra_ids=SMALL_EXTRA)
            cache[mode, psi] = run_job(grid, bank, small_settings(mode, psi=psi))
        return cache[mode, psi]

    return get


@pytest.fixture(scope="session")
def big_job() -> Callable[[Mode], Job]:
    """A 16,000-row job of a mode, without PSI; memoized per mode."""
    cache: dict[Mode, Job] = {}

    def get(mode: Mode) -> Job:
        if mode not in cache:
            grid, bank = make_data(BIG_ROWS, 4, 3, seed=2)
            cache[mode] = run_job(grid, bank, small_settings(mode, batch_size=256), psi=False)
        return cache[mode]

    return get
