"""A function over many examples in fixed-size chunks, so that it compiles once.

:func:`batched` runs a jitted embedding from the host, chunk by chunk, zero-padding the
last chunk (feature nets, the digit classifier); :func:`chunked` maps a jittable function
over chunks inside one program with ``jax.lax.map`` (the evaluators' per-example pass).

  >>> import jax.numpy as jnp, numpy as np
  >>> batched(lambda x: x * 2.0, np.ones((5, 3), np.float32), chunk=2).shape
  (5, 3)
  >>> chunked(lambda b: {"s": b["x"].sum(-1)}, {"x": jnp.ones((5, 3))}, 2)["s"].tolist()
  [3.0, 3.0, 3.0, 3.0, 3.0]
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

CHUNK = 250  # examples per jitted call of batched()


def batched(fn: Callable[[jax.Array], jax.Array], images, chunk: int = CHUNK) -> np.ndarray:
  """``fn`` (jitted, (b, ...) → (b, dim)) over ``images`` in chunks of ``chunk``.

  The last chunk is zero-padded to ``chunk`` rows (then cut), so ``fn`` compiles once.
  Images stay where they are (device arrays are sliced on device). Returns float32 numpy.
  """
  n = images.shape[0]
  if n == 0:
    raise ValueError("no images to embed")
  b = max(1, min(chunk, n))
  out = []
  for start in range(0, n, b):
    part = images[start:start + b]
    m = part.shape[0]
    if m < b:
      part = jnp.concatenate([jnp.asarray(part),
                              jnp.zeros((b - m,) + tuple(part.shape[1:]), part.dtype)])
    out.append(np.asarray(fn(part), np.float32)[:m])
  return np.concatenate(out)


def chunked(fn, arrays: Mapping[str, jax.Array], batch_size: int):
  """Applies jittable ``fn(batch) -> pytree`` over the leading axis in chunks, on device.

  The whole chunks go through one ``jax.lax.map``; a remainder shorter than ``batch_size``
  gets one more call of ``fn``. Jittable: call it inside ``jax.jit``.
  """
  n = next(iter(arrays.values())).shape[0]
  usable = n - n % batch_size
  out = None
  if usable:
    chunks = jax.tree.map(lambda a: a[:usable].reshape(-1, batch_size, *a.shape[1:]), arrays)
    out = jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), jax.lax.map(fn, chunks))
  if usable < n:
    rest = fn(jax.tree.map(lambda a: a[usable:], arrays))
    out = rest if out is None else jax.tree.map(lambda a, b: jnp.concatenate([a, b]), out, rest)
  return out
