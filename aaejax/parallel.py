"""Data parallelism with ``jax.jit`` over a device ``Mesh``.

The batch axis of every batch is sharded over the mesh axis ``"batch"``;
parameters, optimizer states and the device-resident dataset are replicated.
Under ``jax.jit`` the arrays are global, so every statistic of a step (the MMD,
the critic's loss, batch-norm moments) is computed over the whole global batch,
exactly as on one device; XLA inserts the cross-device reductions.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

BATCH_AXIS = "batch"


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh over the first ``num_devices`` devices (default: all of them).

  With several processes (after ``jax.distributed.initialize()``),
  ``num_devices`` must be left ``None``: the mesh spans every process's devices.
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
