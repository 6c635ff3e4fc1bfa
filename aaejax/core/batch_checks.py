"""Checks of a batch's images, labels and codes: dtypes and shapes always, values when concrete."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
  """Whether the values of ``x`` can be read now: not a tracer, and all on this process.

  >>> import jax, numpy as np
  >>> seen = []
  >>> _ = jax.jit(lambda x: seen.append(is_concrete(x)) or x)(np.zeros(2))
  >>> is_concrete(np.zeros(2)), seen
  (True, [False])
  """
  return not isinstance(x, jax.core.Tracer) and getattr(x, "is_fully_addressable", True)


def _as_array(x, label: str):
  if hasattr(x, "shape") and hasattr(x, "dtype"):
    return x
  try:
    return np.asarray(x)
  except (TypeError, ValueError) as e:
    raise TypeError(f"{label} must be an array, got {type(x).__name__} ({e}).") from None


def _label(name: str, where: str | None) -> str:
  return f"{where}['{name}']" if where else name


def _min_max(x) -> tuple[float, float]:
  if isinstance(x, np.ndarray):
    return float(np.min(x)), float(np.max(x))
  lo, hi = jax.device_get((jnp.min(x), jnp.max(x)))
  return float(lo), float(hi)


def check_images(images, image_shape: Sequence[int] | None = None, name: str = "image",
                 where: str | None = "batch"):
  """Checks a batch of images: ``(n, *image_shape)``, n >= 1, uint8 or float in [0, 1].

  Shapes and dtypes are checked always (at trace time under ``jax.jit``/``jax.vmap``), the
  float range only when the values are concrete (:func:`is_concrete`). Returns the images (an
  array). ``name`` and ``where`` name them in errors: ``where['name']``, or ``name`` alone when
  ``where`` is None (an argument).

  >>> check_images(np.full((1, 2, 2, 1), 255.0), (2, 2, 1))
  Traceback (most recent call last):
  ValueError: batch['image']: float images must be in [0, 1], got values up to 255 — divide by 255 (or pass uint8).
  """
  label = _label(name, where)
  images = _as_array(images, label)
  shape = tuple(images.shape)
  if image_shape is not None and (len(shape) != 1 + len(image_shape)
                                  or shape[1:] != tuple(image_shape)):
    raise ValueError(f"{label} has shape {shape}; the model expects "
                     f"(n, {', '.join(map(str, image_shape))}).")
  if not shape:
    raise ValueError(f"{label} is a scalar; expected a batch of images (n, H, W, C).")
  if shape[0] == 0:
    raise ValueError(f"{label} is empty (batch dimension 0); expected at least one image.")
  if images.dtype == jnp.uint8:
    return images
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise ValueError(f"{label} has dtype {images.dtype}; expected uint8 (0..255) or float in "
                     "[0, 1].")
  if is_concrete(images):
    lo, hi = _min_max(images)
    if np.isnan(lo) or np.isnan(hi):
      raise ValueError(f"{label} contains NaN; expected float images in [0, 1].")
    if hi > 1:
      hint = " — divide by 255 (or pass uint8)" if hi <= 255 and lo >= 0 else ""
      raise ValueError(f"{label}: float images must be in [0, 1], got values up to {hi:g}{hint}.")
    if lo < 0:
      hint = " — in [-1, 1]? map them with (x + 1) / 2" if lo >= -1 else ""
      raise ValueError(f"{label}: float images must be in [0, 1], got values down to "
                       f"{lo:g}{hint}.")
  return images


def image_inputs(images: jax.Array, image_shape: Sequence[int], name: str = "image",
                 where: str | None = "batch") -> jax.Array:
  """Float32 images in [0, 1] from uint8 (÷255) or float images of ``image_shape``.

  Checked by :func:`check_images` first: shape, dtype and non-empty batch always, the float
  range where the values are concrete.
  """
  images = check_images(images, image_shape, name, where)
  if images.dtype == jnp.uint8:
    return jnp.asarray(images).astype(jnp.float32) / 255.0
  return jnp.asarray(images).astype(jnp.float32)


def check_labels(labels, num_classes: int, name: str = "label", where: str | None = "batch",
                 n: int | None = None, unlabelled_ok: bool = False):
  """Checks integer labels: shape ``(n,)``, integer dtype, values in [0, num_classes).

  With ``unlabelled_ok``, −1 (unlabelled) is allowed too. Shapes and dtypes are checked
  always, values only when concrete (:func:`is_concrete`). Returns the labels (an array).

  >>> check_labels(np.array([3, 10]), 10)
  Traceback (most recent call last):
  ValueError: batch['label'] holds labels from 3 to 10; expected integers in [0, 10).
  """
  label = _label(name, where)
  labels = _as_array(labels, label)
  if labels.ndim != 1 or (n is not None and labels.shape[0] != n):
    expected = f"({n},), one label per image" if n is not None else "(n,)"
    raise ValueError(f"{label} has shape {tuple(labels.shape)}; expected {expected}.")
  allowed = f"[0, {num_classes})" + (" or -1 (unlabelled)" if unlabelled_ok else "")
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f"{label} has dtype {labels.dtype}; expected integer labels in {allowed}.")
  if labels.shape[0] and is_concrete(labels):
    lo, hi = _min_max(labels)
    if lo < (-1 if unlabelled_ok else 0) or hi >= num_classes:
      raise ValueError(f"{label} holds labels from {lo:.0f} to {hi:.0f}; expected integers in "
                       f"{allowed}.")
  return labels


def check_codes(z, dim: int, name: str = "z"):
  """Checks decoder inputs: float ``(n, dim)``, n >= 1 (shapes and dtypes; trace time too)."""
  z = _as_array(z, name)
  if z.ndim != 2 or z.shape[-1] != dim:
    raise ValueError(f"{name} has shape {tuple(z.shape)}; expected (n, {dim}).")
  if z.shape[0] == 0:
    raise ValueError(f"{name} is empty (batch dimension 0); expected at least one code.")
  if not jnp.issubdtype(z.dtype, jnp.floating):
    raise ValueError(f"{name} has dtype {z.dtype}; expected floats.")
  return z


def check_count(n, name: str = "n") -> int:
  """``n`` as a positive int (a number of samples), else a clear error."""
  if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
    raise ValueError(f"{name} must be a positive int (a number of samples), got {n!r}.")
  return int(n)


LabelFields = Mapping[str, tuple[int, bool]]


def check_batch(batch: Mapping[str, Any], image_shape: Sequence[int] | None = None,
                labels: int | LabelFields | None = None, *, where: str = "batch",
                image_shapes: Mapping[str, Sequence[int]] | None = None) -> None:
  """Checks a batch, or a whole data set (arrays with a common leading axis), before use.

  ``batch["image"]`` is required; it and every ``"<stream>_image"`` are checked by
  :func:`check_images`. ``labels`` says which label arrays to check (:func:`check_labels`,
  against their images' count): an int K checks ``"label"`` and every ``"<stream>_label"``
  against [0, K); a mapping ``{key: (K, unlabelled_ok)}`` checks those keys (if present);
  None checks none. ``image_shapes`` gives the shape of image arrays other than
  ``image_shape`` by key (a stream of another domain). Call it on host data once (at load time) to find bad values before
  training: the jitted steps check shapes and dtypes only.

  >>> check_batch({"image": np.zeros((0, 2, 2, 1), np.uint8)}, (2, 2, 1), where="train")
  Traceback (most recent call last):
  ValueError: train['image'] is empty (batch dimension 0); expected at least one image.
  """
  if not isinstance(batch, Mapping):
    raise TypeError(f"{where} must be a dict of arrays with key 'image', got "
                    f"{type(batch).__name__}.")
  if "image" not in batch:
    raise ValueError(f"{where} has no 'image' (keys: {sorted(batch)}); expected {where}['image']"
                     " of shape (n, H, W, C).")
  counts = {}
  for key in sorted(batch):
    if key == "image" or key.endswith("_image"):
      shape = (image_shapes or {}).get(key, image_shape)
      counts[key[:-len("image")]] = check_images(batch[key], shape, key, where).shape[0]
  if labels is None:
    return
  if isinstance(labels, Mapping):
    fields = dict(labels)
  else:
    fields = {k: (int(labels), False) for k in batch if k == "label" or k.endswith("_label")}
  for key, (num_classes, unlabelled_ok) in sorted(fields.items()):
    if key in batch:
      check_labels(batch[key], num_classes, key, where, n=counts.get(key[:-len("label")]),
                   unlabelled_ok=unlabelled_ok)
