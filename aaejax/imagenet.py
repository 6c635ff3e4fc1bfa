"""Input handling shared by the frozen ImageNet feature networks (:mod:`aaejax.effnet`,
:mod:`aaejax.inception`).

Both take float images in [0, 1], NHWC, of any size, with 1 (grey) or 3 channels, and resize
them bilinearly to their own square input size the way PyTorch's
``F.interpolate(x, size, mode="bilinear", align_corners=False)`` does (half-pixel centres, no
antialiasing, edge pixels repeated), so that features computed here match those of the PyTorch
models the weights come from.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def rgb_resized(images: jax.Array, size: int) -> jax.Array:
  """Grey-to-RGB and bilinear resize to ``size``×``size``.

  Args:
    images: float array (n, h, w, c) with c in {1, 3}, values in [0, 1] (not checked: traced
      values can't be).
    size: output height and width in pixels.

  Returns:
    float32 (n, size, size, 3). Resizing uses ``jax.image.resize(..., "bilinear",
    antialias=False)``, which equals torch's bilinear ``F.interpolate`` with
    ``align_corners=False`` and ``antialias=False`` (also when shrinking: no low-pass filter).

  Example:
    >>> rgb_resized(jnp.ones((2, 28, 28, 1)), 32).shape
    (2, 32, 32, 3)
  """
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"images: expected a float array (n, h, w, 1 or 3), got shape {images.shape}")
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise ValueError(f"images: expected floats in [0, 1], got dtype {images.dtype} (divide uint8 "
                     "images by 255)")
  x = images.astype(jnp.float32)
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  if x.shape[1:3] != (size, size):
    x = jax.image.resize(x, (x.shape[0], size, size, 3), method="bilinear", antialias=False)
  return x
