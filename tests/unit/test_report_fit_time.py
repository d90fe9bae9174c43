"""The centralized baseline's fit time in the report is the fit, not the import of
scikit-learn (which alone takes seconds on a cold start)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PROBE = """
import sys, time
import numpy as np
from pathlib import Path
import federation.report as report

folder = Path(sys.argv[1])
rng = np.random.default_rng(0)
ids = [f"e{i}" for i in range(200)]
x = rng.normal(size=(200, 3))
y = (x[:, 0] + rng.normal(size=200) > 0).astype(int)
(folder / "g.csv").write_text("id,a\\n" + "".join(f"{i},{v[0]}\\n" for i, v in zip(ids, x)))
(folder / "b.csv").write_text("id,y,b,c\\n" + "".join(
    f"{i},{t},{v[1]},{v[2]}\\n" for i, t, v in zip(ids, y, x)))
loaded_at_start = []
real = time.perf_counter

def clock():
    loaded_at_start.append("sklearn.linear_model" in sys.modules)
    return real()

assert "sklearn.linear_model" not in sys.modules
split = np.array(["train"] * 150 + ["validation"] * 50)
xj, yj = report._joined(folder / "g.csv", folder / "b.csv", "id", "y", ids)
time.perf_counter = clock
report._centralized_lr(xj, yj, split, 1e-3, 0)
print("LOADED" if loaded_at_start and loaded_at_start[0] else "NOT LOADED")
"""


def test_centralized_clock_starts_after_scikit_learn_is_imported(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True,
                            text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "LOADED"
