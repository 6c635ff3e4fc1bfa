"""Input handling shared by the frozen ImageNet feature networks (:mod:`aaejax.nets.effnet`,
:mod:`aaejax.nets.inception`).

Both take float images in [0, 1], NHWC, of any size, with 1 (grey) or 3 channels, and resize
them bilinearly to their own square input size the way PyTorch's
``F.interpolate(x, size, mode="bilinear", align_corners=False)`` does (half-pixel centres, no
antialiasing, edge pixels repeated), so that features computed here match those of the PyTorch
models the weights come from.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util


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


def random_variables(shapes, rng: jax.Array):
  """Random variables for a tree of conv/dense/BatchNorm leaves (shapes from ``jax.eval_shape``).

  Kernels are He-normal (std ``sqrt(2 / fan_in)``, fan_in = all but the last axis, so the
  activations of ReLU nets stay O(1)); biases 0; BatchNorm scale 1, mean 0, var 1. Drawn with
  numpy, seeded by the key's bits: cheap, unlike compiling flax's initialisers for a large
  net. For tests and shape checks; real weights come from the nets' ``load_variables``.

  Example:
    >>> shapes = {"params": {"c": {"kernel": jax.ShapeDtypeStruct((3, 3, 2, 4), jnp.float32)}}}
    >>> random_variables(shapes, jax.random.key(0))["params"]["c"]["kernel"].shape
    (3, 3, 2, 4)
  """
  if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    rng = jax.random.key_data(rng)
  gen = np.random.default_rng(np.asarray(rng).astype(np.uint64).ravel().tolist())
  out = {}
  for keys, leaf in traverse_util.flatten_dict(shapes).items():
    shape, name = tuple(leaf.shape), keys[-1]
    if name == "kernel":
      value = gen.standard_normal(shape, np.float32) * np.sqrt(2.0 / np.prod(shape[:-1]))
    elif name in ("scale", "var"):
      value = np.ones(shape, np.float32)
    elif name in ("bias", "mean"):
      value = np.zeros(shape, np.float32)
    else:
      raise ValueError(f"random_variables: no rule for the leaf {'/'.join(keys)}")
    out[keys] = jnp.asarray(value, leaf.dtype)
  return traverse_util.unflatten_dict(out)
