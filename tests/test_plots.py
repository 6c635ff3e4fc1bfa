"""Tests for aaejax.evaluation.plots."""

from __future__ import annotations

import numpy as np
import pytest

from aaejax.evaluation import plots

import matplotlib.pyplot as plt  # noqa: E402  (after plots chose the Agg backend)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _read_png(path, size):
    """Checks ``path`` is a PNG of ``size`` = (width, height) inches at plots.DPI; returns it."""
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    image = plt.imread(path)
    width, height = size
    assert image.shape[:2] == (round(height * plots.DPI), round(width * plots.DPI))
    return image


# --- scatters ----------------------------------------------------------------------


@pytest.mark.parametrize("num_classes", [10, 15])
def test_latent_scatter(tmp_path, num_classes):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(500, 3))  # Only the first two coordinates are drawn.
    path = tmp_path / "sub" / "latent.png"  # The parent directory is created.
    labels = rng.integers(0, num_classes, 500)
    assert plots.latent_scatter(path, z, labels, title="q(z)", num_classes=num_classes) == path
    _read_png(path, (6, 5))


def test_latent_scatter_without_labels_and_max_points(tmp_path):
    z = np.random.default_rng(0).normal(size=(100, 2))
    _read_png(plots.latent_scatter(tmp_path / "a.png", z, max_points=10), (6, 5))


def test_prior_scatter(tmp_path):
    z = np.random.default_rng(0).normal(size=(200, 2))
    _read_png(plots.prior_scatter(tmp_path / "p.png", z, labels=np.arange(200) % 10), (6, 5))


def test_latent_scatter_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="d >= 2"):
        plots.latent_scatter(tmp_path / "a.png", np.zeros((5, 1)))
    with pytest.raises(ValueError, match="labels"):
        plots.latent_scatter(tmp_path / "a.png", np.zeros((5, 2)), labels=np.zeros(4, int))


# --- image grids ---------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_image_grid(tmp_path, channels):
    images = np.random.default_rng(0).uniform(size=(7, 8, 8, channels))
    path = plots.image_grid(tmp_path / "grid.png", images, ncol=3, title="samples")
    _read_png(path, (plots.CELL_INCHES * 3 + 0.5, plots.CELL_INCHES * 3 + 0.5))


def test_image_grid_titles(tmp_path):
    images = np.random.default_rng(0).uniform(size=(6, 8, 8, 1))
    path = plots.image_grid(tmp_path / "style.png", images, ncol=3, row_titles=["z1", "z2"],
                            col_titles=["0", "1", "2"])
    _read_png(path, (plots.CELL_INCHES * 3 + 1.0, plots.CELL_INCHES * 2 + 1.0))


@pytest.mark.parametrize("shape, message", [
    ((4, 8, 8), r"\(N, H, W, C\)"),
    ((4, 8, 8, 2), "C 1 or 3"),
])
def test_image_grid_bad_images(tmp_path, shape, message):
    with pytest.raises(ValueError, match=message):
        plots.image_grid(tmp_path / "g.png", np.zeros(shape), ncol=2)


def test_image_grid_bad_titles(tmp_path):
    with pytest.raises(ValueError, match="row_titles needs 2 entries"):
        plots.image_grid(tmp_path / "g.png", np.zeros((4, 8, 8, 1)), ncol=2, row_titles=["a"])


# --- manifold grids ------------------------------------------------------------------


def _check_grid_order(grid, n):
    x, y = grid[:, 0].reshape(n, n), grid[:, 1].reshape(n, n)
    assert np.all(np.diff(x, axis=1) > 0) and np.all(np.diff(x, axis=0) == 0)
    assert np.all(np.diff(y, axis=0) < 0) and np.all(np.diff(y, axis=1) == 0)


def test_gaussian_percentile_grid():
    grid = plots.gaussian_percentile_grid(5, dim=4, std=2.0)
    assert grid.shape == (25, 4)
    _check_grid_order(grid, 5)
    np.testing.assert_allclose(grid[0, :2], [-2 * 1.6448536, 2 * 1.6448536], rtol=1e-5)
    np.testing.assert_allclose(grid[12, :2], [0.0, 0.0], atol=1e-6)  # The median at the centre.
    np.testing.assert_array_equal(grid[:, 2:], 0.0)


def test_box_grid():
    grid = plots.box_grid(4, low=(-1.0, 0.0), high=(2.0, 3.0))
    assert grid.shape == (16, 2)
    _check_grid_order(grid, 4)
    np.testing.assert_allclose(grid[[0, 3, 12, 15]], [[-1, 3], [2, 3], [-1, 0], [2, 0]])
    np.testing.assert_allclose(plots.box_grid(2, -1.0, 1.0), [[-1, 1], [1, 1], [-1, -1], [1, -1]])


def test_manifold_order(tmp_path):
    images = np.zeros((4, 10, 10, 3))
    images[0, ..., 0] = 1.0  # Grid point 0, the top-left one, in red; the rest blue.
    images[1:, ..., 2] = 1.0
    png = _read_png(plots.manifold(tmp_path / "m.png", images, n=2, title="manifold"), (6, 6))
    r, g, b = png[..., 0], png[..., 1], png[..., 2]
    red = (r > 0.8) & (g < 0.2) & (b < 0.2)
    drawn = red | ((b > 0.8) & (r < 0.2) & (g < 0.2))
    rows, cols = np.nonzero(drawn)
    red_rows, red_cols = np.nonzero(red)
    # The red image fills exactly the top-left quarter of the mosaic: no gaps.
    assert red_rows.max() < (rows.min() + rows.max()) / 2 < red_rows.max() + 2
    assert red_cols.max() < (cols.min() + cols.max()) / 2 < red_cols.max() + 2
    assert red.sum() == pytest.approx(drawn.sum() / 4, rel=0.05)


def test_manifold_bad_count(tmp_path):
    with pytest.raises(ValueError, match="n·n = 9"):
        plots.manifold(tmp_path / "m.png", np.zeros((8, 4, 4, 1)), n=3)


# --- loss curves ---------------------------------------------------------------------


def test_loss_curves(tmp_path):
    rows = [{"step": s, "loss": 1.0 / (s + 1), "mmd": 0.1} for s in range(10)]
    rows.append({"step": 10, "test_error": 5.0})
    path = plots.loss_curves(tmp_path / "c.png", rows, ["loss", "missing", "test_error"])
    _read_png(path, (6, 4))  # Two subplots: "missing" is skipped.


def test_loss_curves_no_keys(tmp_path):
    with pytest.raises(ValueError, match="none of the keys"):
        plots.loss_curves(tmp_path / "c.png", [{"step": 0, "loss": 1.0}], ["mmd"])


def test_side_by_side_tool(tmp_path):
  """experiments/tools/side_by_side.py: a row per figure, a column per run; a missing one is named."""
  import importlib.util
  import os
  path = os.path.join(os.path.dirname(__file__), "..", "experiments", "tools", "side_by_side.py")
  spec = importlib.util.spec_from_file_location("side_by_side", path)
  tool = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tool)
  runs = []
  for i, name in enumerate(("vae", "vaegan")):
    (tmp_path / name / "plots").mkdir(parents=True)
    for fig in ("samples", "reconstructions"):
      plots.image_grid(str(tmp_path / name / "plots" / f"{fig}.png"),
                       np.full((4, 8, 8, 1), 0.3 * i, np.float32), 2)
    runs.append(str(tmp_path / name))
  out = tool.side_by_side(runs, ["VAE", "VAE-GAN"], ["samples", "reconstructions"],
                          str(tmp_path / "both.png"))
  h, w = plt.imread(out).shape[:2]
  assert (h, w) == (1000, 1000)   # 2 x 2 panels of 5 x 5 inches at 100 dpi
  with pytest.raises(FileNotFoundError, match="manifold.png"):
    tool.side_by_side(runs, ["VAE", "VAE-GAN"], ["manifold"], str(tmp_path / "x.png"))
  with pytest.raises(ValueError, match="--labels"):
    tool.side_by_side(runs, ["VAE"], ["samples"], str(tmp_path / "x.png"))
