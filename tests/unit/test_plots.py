"""parties.evaluation.plots: each function writes one readable PNG and leaves no figure open."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.image
import numpy as np
import numpy.typing as npt
import pytest

from parties.evaluation import plots
from parties.evaluation.scorecard import Scorecard

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FloatArray = npt.NDArray[np.float64]


@pytest.fixture(scope="module")
def data() -> tuple[FloatArray, FloatArray, FloatArray]:
    """Labels, a model's probabilities and a weaker model's probabilities."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, 2))
    p = 1.0 / (1.0 + np.exp(-(-1.5 + x[:, 0] + 0.8 * x[:, 1])))
    weak = 1.0 / (1.0 + np.exp(-(-1.5 + x[:, 0])))
    y = (rng.random(20_000) < p).astype(np.float64)
    return y, p, weak


def assert_png(path: Path, width: int, height: int) -> None:
    assert path.is_file()
    raw = path.read_bytes()
    assert raw.startswith(PNG_MAGIC)
    assert len(raw) > 5_000, "a labelled plot is more than a few bytes"
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == (height, width)  # figure inches * dpi 120
    assert image[..., :3].std() > 0.05, "the image is not blank"


def all_plots(
    data: tuple[FloatArray, FloatArray, FloatArray],
) -> list[tuple[str, Callable[[Path], Path], tuple[int, int]]]:
    y, p, weak = data
    return [
        ("roc", lambda f: plots.plot_roc({"federated": (y, p), "bank only": (y, weak)}, f),
         (720, 720)),
        ("ks", lambda f: plots.plot_ks(y, p, f), (768, 576)),
        ("calibration", lambda f: plots.plot_calibration(y, p, f), (720, 720)),
        ("distribution", lambda f: plots.plot_score_distribution(y, p, f), (768, 576)),
        (
            "points",
            lambda f: plots.plot_score_distribution(
                y, Scorecard().points(p), f, xlabel="Score (points)"
            ),
            (768, 576),
        ),
        ("loss", lambda f: plots.plot_loss([0.69, 0.52, 0.47, 0.45, 0.44], f), (768, 576)),
        (
            "loss_series",
            lambda f: plots.plot_loss({"train": [0.69, 0.5], "validation": [0.7, 0.55]}, f),
            (768, 576),
        ),
    ]  # fmt: skip


def test_every_plot_writes_a_non_empty_png(
    tmp_path: Path, data: tuple[FloatArray, FloatArray, FloatArray]
) -> None:
    for name, draw, (width, height) in all_plots(data):
        target = tmp_path / f"{name}.png"
        assert draw(target) == target
        assert_png(target, width, height)


def test_plots_leave_no_pyplot_figure_open(
    tmp_path: Path, data: tuple[FloatArray, FloatArray, FloatArray]
) -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    for name, draw, _ in all_plots(data):
        draw(tmp_path / f"{name}.png")
    assert plt.get_fignums() == before


def test_plot_roc_handles_a_million_rows_quickly(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    p = rng.random(1_000_000)
    y = (rng.random(1_000_000) < p).astype(np.float64)
    assert_png(plots.plot_roc({"big": (y, p)}, tmp_path / "big.png"), 720, 720)


def test_calibration_plot_without_enough_groups_still_draws(tmp_path: Path) -> None:
    # Two distinct probabilities: Hosmer-Lemeshow is undefined, the plot is not.
    y = np.tile([0.0, 1.0], 50)
    p = np.repeat([0.2, 0.7], 50)
    assert_png(plots.plot_calibration(y, p, tmp_path / "two.png"), 720, 720)


def test_plot_errors(tmp_path: Path, data: tuple[FloatArray, FloatArray, FloatArray]) -> None:
    y, p, _ = data
    with pytest.raises(ValueError, match=".png"):
        plots.plot_ks(y, p, tmp_path / "ks.jpg")
    with pytest.raises(ValueError, match="at least one"):
        plots.plot_roc({}, tmp_path / "roc.png")
    with pytest.raises(ValueError, match="both classes"):
        plots.plot_roc({"one class": (np.zeros(10), np.linspace(0, 1, 10))}, tmp_path / "r.png")
    with pytest.raises(ValueError, match="finite"):
        plots.plot_loss({"train": [0.5, float("nan")]}, tmp_path / "loss.png")
    with pytest.raises(ValueError, match="non-empty"):
        plots.plot_loss([], tmp_path / "loss.png")
    with pytest.raises(ValueError, match="length mismatch"):
        plots.plot_score_distribution(y, p[:-1], tmp_path / "d.png")
    assert not list(tmp_path.iterdir()), "a failed call must not leave a file behind"


def _captured(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Figures handed to ``plots._save`` (so a test can read titles and labels)."""
    figures: list[object] = []
    original = plots._save

    def keep(fig: object, path: Path) -> Path:
        figures.append(fig)
        return original(fig, path)  # type: ignore[arg-type]

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def test_calibration_title_never_prints_a_zero_p_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A badly calibrated model: Hosmer-Lemeshow p is far below 0.001.
    rng = np.random.default_rng(3)
    p = rng.uniform(0.05, 0.95, 5_000)
    y = (rng.random(5_000) < p**3).astype(np.float64)
    figures = _captured(monkeypatch)
    plots.plot_calibration(y, p, tmp_path / "cal.png")
    title = figures[0].axes[0].get_title()  # type: ignore[attr-defined]
    assert "p = 0.000" not in title and ("p = " in title or "p < " in title), title
    assert plots.format_p_value(0.0003) == "p = 3.0e-04"
    assert plots.format_p_value(0.25) == "p = 0.250"
    assert plots.format_p_value(0.0) == "p < 1e-300"


def test_loss_plot_names_the_loss_it_draws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = _captured(monkeypatch)
    plots.plot_loss([0.7, 0.6], tmp_path / "a.png")
    plots.plot_loss([0.7, 0.6], tmp_path / "b.png", ylabel="Taylor loss (mean per row)")
    labels = [fig.axes[0].get_ylabel() for fig in figures]  # type: ignore[attr-defined]
    assert labels == ["loss", "Taylor loss (mean per row)"]
