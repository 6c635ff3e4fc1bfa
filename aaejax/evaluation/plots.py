"""PNG figures in the style of the AAE paper: latent scatters, image grids, manifolds, curves.

Every plotting function takes numpy or jax arrays and a ``path``, creates the
parent directory, writes a PNG of a fixed size (``figsize`` · :data:`DPI`
pixels), closes the figure and returns ``path``.

Grid convention (:func:`gaussian_percentile_grid`, :func:`box_grid`,
:func:`manifold`): point ``i = r · n + c`` of an n × n grid lies in row ``r``
and column ``c``; the first coordinate increases with the column (left to
right), the second decreases with the row, so row 0, drawn at the top, holds the
largest second coordinate, as on a plot's y-axis.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402
from jax.scipy.special import ndtri  # noqa: E402

DPI = 100
CELL_INCHES = 0.6  # side of one image of an image grid


def _save(fig, path: str | os.PathLike) -> str | os.PathLike:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=DPI, format="png")
  plt.close(fig)
  return path


def latent_scatter(path, z, labels=None, title: str = "", num_classes: int = 10,
                   max_points: int = 10_000):
  """Scatter of codes (first two coordinates), coloured by label; 600 × 500 pixels.

  Args:
    path: output PNG path.
    z: (n, d) codes, d >= 2 (only the first two coordinates are drawn).
    labels: optional (n,) integer labels in [0, num_classes), shown with a
      discrete colormap (tab10, or tab20 for more than 10 classes) and a colorbar.
    title: figure title.
    num_classes: number of label values.
    max_points: draw at most the first ``max_points`` codes.

  Example:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "z.png")
    >>> path = latent_scatter(path, np.zeros((3, 2)), labels=[0, 1, 2])
    >>> plt.imread(path).shape  # (height, width, RGBA)
    (500, 600, 4)
  """
  z = np.asarray(z)
  if z.ndim != 2 or z.shape[1] < 2:
    raise ValueError(f"z must be (n, d) with d >= 2, got shape {z.shape}.")
  z = z[:max_points, :2]
  fig, ax = plt.subplots(figsize=(6, 5), layout="constrained")
  if labels is None:
    ax.scatter(z[:, 0], z[:, 1], s=2, alpha=0.6, linewidths=0)
  else:
    labels = np.asarray(labels)[:max_points]
    if labels.shape != z.shape[:1]:
      raise ValueError(f"labels must have shape ({len(z)},), got {labels.shape}.")
    cmap = plt.get_cmap("tab10" if num_classes <= 10 else "tab20", num_classes)
    points = ax.scatter(z[:, 0], z[:, 1], c=labels, s=2, alpha=0.8, linewidths=0, cmap=cmap,
                        vmin=-0.5, vmax=num_classes - 0.5)
    fig.colorbar(points, ax=ax, ticks=range(num_classes), label="label")
  ax.set_aspect("equal", adjustable="datalim")
  ax.set_title(title)
  return _save(fig, path)


def prior_scatter(path, z, labels=None, title: str = "p(z)", num_classes: int = 10):
  """Scatter of prior samples, in the style of :func:`latent_scatter`."""
  return latent_scatter(path, z, labels, title=title, num_classes=num_classes)


def _check_images(images) -> np.ndarray:
  images = np.asarray(images, np.float32)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"images must be (N, H, W, C) with C 1 or 3, got shape {images.shape}.")
  return np.clip(images, 0.0, 1.0)


def _tile(images: np.ndarray, ncol: int, gap: int) -> np.ndarray:
  """Tiles (N, H, W, C) images into rows of ``ncol``, ``gap`` white pixels apart."""
  n, h, w, c = images.shape
  nrow = math.ceil(n / ncol)
  canvas = np.ones((nrow * (h + gap) - gap, ncol * (w + gap) - gap, c), np.float32)
  for i, image in enumerate(images):
    r, col = divmod(i, ncol)
    canvas[r * (h + gap):r * (h + gap) + h, col * (w + gap):col * (w + gap) + w] = image
  return canvas


def _show(path, canvas: np.ndarray, figsize, title: str, ax_setup=None):
  fig, ax = plt.subplots(figsize=figsize, layout="constrained")
  if canvas.shape[-1] == 1:
    ax.imshow(canvas[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
  else:
    ax.imshow(canvas, interpolation="nearest")
  ax.set_xticks([])
  ax.set_yticks([])
  for spine in ax.spines.values():
    spine.set_visible(False)
  if ax_setup is not None:
    ax_setup(ax)
  ax.set_title(title)
  return _save(fig, path)


def image_grid(path, images, ncol: int, title: str = "",
               row_titles: Sequence[str] | None = None, col_titles: Sequence[str] | None = None):
  """Images tiled ``ncol`` per row (rows = ceil(N / ncol)), without ticks.

  The figure is about ``CELL_INCHES`` · DPI pixels per image, plus room for titles.

  Args:
    path: output PNG path.
    images: (N, H, W, C) floats in [0, 1], C = 1 (grey) or 3 (RGB).
    ncol: images per row.
    title: figure title.
    row_titles: optional label per row, written on the left (e.g. "z₁" for a
      style grid whose rows share z and whose columns are classes).
    col_titles: optional label per column, written on top (e.g. the classes).
  """
  images = _check_images(images)
  if ncol < 1:
    raise ValueError(f"ncol must be >= 1, got {ncol}.")
  ncol = min(ncol, len(images))
  nrow = math.ceil(len(images) / ncol)
  for name, titles, count in (("row_titles", row_titles, nrow), ("col_titles", col_titles, ncol)):
    if titles is not None and len(titles) != count:
      raise ValueError(f"{name} needs {count} entries, got {len(titles)}.")
  _, h, w, _ = images.shape
  gap = 2

  def label_axes(ax):
    if row_titles is not None:
      ax.set_yticks(np.arange(nrow) * (h + gap) + h / 2, row_titles)
    if col_titles is not None:
      ax.set_xticks(np.arange(ncol) * (w + gap) + w / 2, col_titles)
      ax.xaxis.tick_top()
    ax.tick_params(length=0)

  margin = 0.5 + 0.5 * (row_titles is not None)
  figsize = (CELL_INCHES * ncol + margin, CELL_INCHES * nrow + margin)
  return _show(path, _tile(images, ncol, gap), figsize, title, label_axes)


def _grid(x_values: np.ndarray, y_values: np.ndarray) -> np.ndarray:
  """(n·n, 2) points in the module's grid order (x along columns, y descending down rows)."""
  x, y = np.meshgrid(x_values, y_values[::-1])
  return np.stack([x.ravel(), y.ravel()], axis=1).astype(np.float32)


def gaussian_percentile_grid(n: int, dim: int = 2, std: float = 1.0) -> np.ndarray:
  """(n·n, dim) codes at the gaussian percentiles 5 %, …, 95 % of the first two coordinates.

  Each of the first two coordinates takes the values std · Φ⁻¹(linspace(0.05,
  0.95, n)), in the module's grid order (the AAE paper's Fig. 2 manifold for a
  gaussian prior); the other coordinates are 0 (the mean).

  Example:

    >>> grid = gaussian_percentile_grid(3, dim=4)
    >>> grid.shape, grid[4].tolist()  # the centre of the grid is the mean
    ((9, 4), [0.0, 0.0, 0.0, 0.0])
  """
  if dim < 2:
    raise ValueError(f"dim must be >= 2, got {dim}.")
  values = std * np.asarray(ndtri(np.linspace(0.05, 0.95, n)), np.float32)
  return np.pad(_grid(values, values), ((0, 0), (0, dim - 2)))


def box_grid(n: int, low, high) -> np.ndarray:
  """(n·n, 2) evenly spaced codes over the box [low, high]², in the module's grid order.

  ``low`` and ``high`` are scalars or per-coordinate pairs (e.g. percentiles of
  prior samples).

  Example:

    >>> box_grid(2, -1.0, 1.0).tolist()  # row 0 (top) first, x increasing along each row
    [[-1.0, 1.0], [1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]]
  """
  low, high = np.broadcast_to(low, (2,)), np.broadcast_to(high, (2,))
  return _grid(np.linspace(low[0], high[0], n), np.linspace(low[1], high[1], n))


def manifold(path, images, n: int, title: str = ""):
  """Decoded grid codes as an n × n mosaic without gaps.

  Args:
    path: output PNG path.
    images: (n·n, H, W, C) decodings of :func:`gaussian_percentile_grid` or
      :func:`box_grid` points, in the module's grid order (row 0 at the top holds
      the largest second coordinate).
    n: grid side.
    title: figure title.
  """
  images = _check_images(images)
  if len(images) != n * n:
    raise ValueError(f"manifold needs n·n = {n * n} images, got {len(images)}.")
  return _show(path, _tile(images, n, gap=0), (6, 6), title)


def loss_curves(path, metrics_rows: Sequence[Mapping[str, float]], keys: Sequence[str]):
  """One subplot per key of ``keys`` present in ``metrics_rows``, against "step".

  Args:
    path: output PNG path.
    metrics_rows: dicts with a "step" and scalar metrics (lines of metrics.jsonl);
      a row without a key is skipped for that key.
    keys: metric names to plot; those found in no row are skipped.
  """
  present = [k for k in keys if any(k in row for row in metrics_rows)]
  if not present:
    raise ValueError(f"none of the keys {list(keys)} is in the metrics rows.")
  fig, axes = plt.subplots(len(present), 1, figsize=(6, 2 * len(present)), sharex=True,
                           layout="constrained", squeeze=False)
  for ax, key in zip(axes[:, 0], present):
    rows = [row for row in metrics_rows if key in row]
    ax.plot([row["step"] for row in rows], [float(row[key]) for row in rows],
            marker="o" if len(rows) <= 3 else None)  # a final-only metric is one point
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
  axes[-1, 0].set_xlabel("step")
  return _save(fig, path)


def pca_2d(x: np.ndarray) -> np.ndarray:
  """(n, 2) projection of ``x`` (n, d) on its first two principal components."""
  x = np.asarray(x, np.float64)
  x = x - x.mean(axis=0)
  _, _, vt = np.linalg.svd(x, full_matrices=False)
  return x @ vt[:2].T


def features_pca_plot(path, source_features, target_features, source_labels=None,
                      target_labels=None, source_name: str = "source",
                      target_name: str = "target", title: str = "") -> str:
  """Joint 2-D PCA of two sets' features (e.g. two domains): coloured by set (left) and,
  given both label arrays, by class (right; source dots, target crosses). 1100 × 500
  pixels; returns ``path``."""
  ns = len(source_features)
  z = pca_2d(np.concatenate([source_features, target_features]))
  fig, axes = plt.subplots(1, 2, figsize=(11, 5), layout="constrained")
  axes[0].scatter(z[:ns, 0], z[:ns, 1], s=3, alpha=0.5, linewidths=0, label=source_name)
  axes[0].scatter(z[ns:, 0], z[ns:, 1], s=3, alpha=0.5, linewidths=0, label=target_name)
  axes[0].legend(markerscale=4)
  axes[0].set_title("by domain")
  if source_labels is not None and target_labels is not None:
    cmap = plt.get_cmap("tab10", 10)
    kw = dict(cmap=cmap, vmin=-0.5, vmax=9.5, alpha=0.6)
    axes[1].scatter(z[:ns, 0], z[:ns, 1], c=np.asarray(source_labels), s=3, marker="o",
                    linewidths=0, **kw)
    points = axes[1].scatter(z[ns:, 0], z[ns:, 1], c=np.asarray(target_labels), s=6,
                             marker="x", linewidths=0.5, **kw)
    fig.colorbar(points, ax=axes[1], ticks=range(10), label="digit")
    axes[1].set_title("by digit (source o, target x)")
  for ax in axes:
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
  fig.suptitle(title)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100, format="png")
  plt.close(fig)
  return path
