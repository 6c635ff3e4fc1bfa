"""Data parallelism with ``jax.jit`` over a device ``Mesh``, on one or many processes.

The batch axis of every batch is sharded over the mesh axis ``"batch"``;
parameters and optimizer states are replicated. Under ``jax.jit`` the arrays are
global, so every statistic of a step (the MMD, the critic's loss, batch-norm
moments) is computed over the whole global batch, exactly as on one device; XLA
inserts the cross-device reductions. Results differ from a one-device run only by
the order of floating-point sums (about 1e-7 relative per step).

This is the modern form of ``jax.pmap`` data parallelism. A per-device variant
(``pmap``/``shard_map`` with ``lax.pmean`` of the gradients) is not offered: there
each device would estimate the MMD and the critic's loss from its own
``batch_size / num_devices`` examples, a different (noisier, for the MMD's
U-statistic also differently biased) estimator whose results change with the
device count.

One process (the default): the whole dataset lives replicated on every device and
each step gathers its batch on device (:func:`aaejax.run.builder.make_train_fn`).

Several processes (TPU pod slices, multi-node GPU; see :mod:`aaejax.run.distributed`):
after ``jax.distributed.initialize()`` the mesh spans every process's devices.
Each process computes the same global permutation, takes on host only the rows of
each global batch that its devices hold (:func:`process_rows`) and the global
batch is assembled with ``jax.make_array_from_process_local_data``
(:func:`global_batch`).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

BATCH_AXIS = "batch"


def is_multiprocess() -> bool:
  return jax.process_count() > 1


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh over the first ``num_devices`` devices (default: all of them).

  With several processes (after ``jax.distributed.initialize()``),
  ``num_devices`` must be left ``None``: the mesh spans every process's devices.

  Example:

    >>> dict(make_mesh(1).shape)
    {'batch': 1}
  """
  devices = jax.devices()
  if num_devices is None or num_devices == 0:
    num_devices = len(devices)
  if not 1 <= num_devices <= len(devices):
    raise ValueError(f"num_devices={num_devices} but {len(devices)} devices are available: "
                     f"{devices}.")
  if jax.process_count() > 1 and num_devices != len(devices):
    raise ValueError("multi-process runs must use every device (num_devices=None).")
  return Mesh(np.array(devices[:num_devices]), (BATCH_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Shards the leading (batch) axis over the mesh."""
  return NamedSharding(mesh, P(BATCH_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  n = mesh.devices.size
  if batch_size % n:
    raise ValueError(f"batch_size={batch_size} is not divisible by the {n} devices of the mesh; "
                     f"use a multiple of {n} or set config.num_devices.")


def _is_key(x) -> bool:
  return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Puts every leaf of ``tree`` on every device of ``mesh``.

  Like ``jax.device_put(tree, replicated(mesh))``, but also valid with several
  processes for typed PRNG keys (moved as their raw key data). With several
  processes every process must pass the same values.

  Example:

    >>> import jax.numpy as jnp
    >>> state = replicate({"w": jnp.ones(2), "rng": jax.random.key(0)}, make_mesh(1))
    >>> state["w"].is_fully_replicated, local_copy(state)["w"].tolist()
    (True, [1.0, 1.0])
  """
  sharding = replicated(mesh)

  def put(x):
    if _is_key(x):
      data = jax.device_put(jax.random.key_data(x), sharding)
      return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    return jax.device_put(x, sharding)

  return jax.tree.map(put, tree)


def local_copy(tree: Any) -> Any:
  """The process-local copy (on this process's first device) of replicated arrays.

  Computations on the result involve no other process: this is how a
  multi-process run evaluates and plots without collective calls.
  """

  def local(x):
    if not isinstance(x, jax.Array):
      return x
    if not x.is_fully_replicated:
      raise ValueError(f"local_copy needs replicated arrays, got sharding {x.sharding}.")
    if _is_key(x):
      return jax.random.wrap_key_data(jax.random.key_data(x).addressable_data(0),
                                      impl=jax.random.key_impl(x))
    return x.addressable_data(0)

  return jax.tree.map(local, tree)


def process_rows(mesh: Mesh, batch_size: int) -> np.ndarray:
  """Indices of the rows of a global batch held by this process's devices, in order.

  They are what ``jax.make_array_from_process_local_data`` expects as this
  process's data for the batch sharding: the union of its devices' slices.
  One process: ``arange(batch_size)``.

  Example:

    >>> process_rows(make_mesh(1), 4).tolist()  # one process holds every row
    [0, 1, 2, 3]
  """
  check_batch_size(batch_size, mesh)
  slices = batch_sharding(mesh).addressable_devices_indices_map((batch_size,)).values()
  spans = sorted({(s[0].start or 0, batch_size if s[0].stop is None else s[0].stop)
                  for s in slices})
  return np.concatenate([np.arange(a, b) for a, b in spans])


def global_batch(local: Mapping[str, np.ndarray], mesh: Mesh, batch_size: int) -> dict:
  """A global batch sharded over ``mesh`` from this process's rows (host arrays).

  ``local[k]`` holds the rows :func:`process_rows` names, in that order.

  Example:

    >>> mesh = make_mesh(1)
    >>> rows = process_rows(mesh, 4)
    >>> global_batch({"x": np.arange(10)[rows]}, mesh, 4)["x"].tolist()
    [0, 1, 2, 3]
  """
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v),
                                                    (batch_size, *np.shape(v)[1:]))
          for k, v in local.items()}
