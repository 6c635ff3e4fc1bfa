"""Multi-process training (TPU pod slices, multi-node GPU) through JAX's own runtime.

Every process runs the same program (``experiments/main.py --multiprocess``):

1. :func:`initialize` calls ``jax.distributed.initialize()``: on TPU VMs and
   under SLURM/Open MPI the coordinator, process count and process id are
   detected; elsewhere pass them. ``jax.devices()`` then lists every
   process's devices and :func:`aaejax.run.parallel.make_mesh` builds one global mesh.
2. Each process keeps the dataset on host (:class:`ProcessShardedDataset`),
   computes the same global permutation from the seed, and for each step
   transfers to its devices only its rows of the global batch; the global batch
   is assembled with ``jax.make_array_from_process_local_data``. The step is the
   same global computation as on one process: results equal a single-process
   run up to the order of floating-point sums.
3. Orbax checkpoints are written collectively (every process calls save and
   restore; each writes the shards it owns) into a directory all processes see.
4. Evaluation and plots run on each process's local copy of the replicated
   state, without collectives; only process 0 writes ``metrics.jsonl``,
   TensorBoard events, ``config.json`` and plots.
"""

from __future__ import annotations

from typing import Mapping

import jax
import numpy as np

from aaejax import data
from aaejax.run import parallel


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, cpu_collectives: str | None = None,
               timeout_s: int = 300) -> None:
  """Starts JAX's distributed runtime; call first, before any other JAX call.

  Args:
    coordinator_address: ``host:port`` of process 0; ``None`` to auto-detect
      (TPU VMs, SLURM, Open MPI).
    num_processes, process_id: likewise, ``None`` to auto-detect.
    cpu_collectives: cross-process collectives of the CPU backend, used when the
      processes compute on CPUs: ``"gloo"`` (the default of jax 0.10, and what the
      tests use) or ``"mpi"`` (needs an MPI library); ``None`` keeps
      ``jax.config.jax_cpu_collectives_implementation``.
    timeout_s: how long to wait for every process to connect.
  """
  if cpu_collectives:
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id,
                             initialization_timeout=timeout_s)


# Computed by each process on its own first device: no collective.
_epoch_permutation = jax.jit(data.epoch_permutation, static_argnums=2)


class ProcessShardedDataset:
  """A host-resident dataset from which each process builds its part of global batches.

  The multi-process counterpart of :class:`aaejax.data.DeviceDataset` with the
  same data order: batch ``index`` of ``epoch`` holds examples
  ``perm[index * batch_size:(index + 1) * batch_size]`` of
  ``perm = data.epoch_permutation(key, epoch, num_examples)``.

  Attributes:
    arrays: the host arrays, with a common leading dimension.
    num_examples: size of that leading dimension.

  Example:

    >>> ds = ProcessShardedDataset({"x": 10 * np.arange(10)}, parallel.make_mesh(1))  # one process
    >>> key = jax.random.key(0)
    >>> perm = ds.permutation(key, 0)
    >>> bool((perm == data.epoch_permutation(key, 0, 10)).all())  # the DeviceDataset order
    True
    >>> ds.steps_per_epoch(4), ds.batch(perm, 1, 4)["x"].tolist() == (10 * perm[4:8]).tolist()
    (2, True)
  """

  def __init__(self, arrays: Mapping[str, np.ndarray], mesh):
    sizes = {k: np.shape(v)[0] for k, v in arrays.items()}
    if len(set(sizes.values())) != 1:
      raise ValueError(f"Arrays must share one non-empty leading dimension, got {sizes}")
    self.arrays = dict(arrays)
    self.num_examples: int = next(iter(sizes.values()))
    self.mesh = mesh

  def steps_per_epoch(self, batch_size: int) -> int:
    if not 0 < batch_size <= self.num_examples:
      raise ValueError(f"batch_size={batch_size} must be in [1, {self.num_examples}]")
    return self.num_examples // batch_size

  def permutation(self, key: jax.Array, epoch: int) -> np.ndarray:
    """The epoch's global example order (the same on every process), on host."""
    return np.asarray(_epoch_permutation(key, epoch, self.num_examples))

  def batch(self, perm: np.ndarray, index: int, batch_size: int) -> dict[str, jax.Array]:
    """Global batch ``index`` of ``perm``, sharded over the mesh's batch axis."""
    rows = parallel.process_rows(self.mesh, batch_size)
    idx = perm[index * batch_size + rows]
    return parallel.global_batch({k: v[idx] for k, v in self.arrays.items()}, self.mesh,
                                 batch_size)
