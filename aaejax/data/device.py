"""The on-device input pipeline: a data set held on the accelerator, shuffled and batched there.

:class:`DeviceDataset` puts the whole dataset on the accelerator once; :func:`epoch_permutation`
and :func:`gather_batch` are pure, jittable functions so that shuffling and batching happen on
device, and the data order depends only on ``(key, epoch)``, which makes resuming from a
checkpoint exact; :func:`batches` iterates over them for a loop of your own.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from aaejax.data.loaders import load_numpy


class DeviceDataset:
  """An in-memory dataset held on the accelerator, shuffled there (no per-step host copies).

  Attributes:
    arrays: The dataset arrays on device, all with the same leading dimension.
    num_examples: Size of that leading dimension.

  Example:

    >>> ds = DeviceDataset({"image": np.zeros((10, 28, 28, 1), np.uint8), "label": np.arange(10)})
    >>> ds.num_examples, ds.steps_per_epoch(4)
    (10, 2)
  """

  def __init__(self, arrays: dict[str, np.ndarray], sharding: Any = None):
    """Transfers every array to device once.

    Args:
      arrays: Host arrays with a common leading (example) dimension.
      sharding: ``jax.sharding.Sharding`` for every array (typically a
        replicated ``NamedSharding``); ``None`` uses the default device.

    Raises:
      ValueError: If ``arrays`` is empty or leading dimensions differ.
    """
    sizes = {k: np.shape(v)[0] for k, v in arrays.items()}
    if len(set(sizes.values())) != 1:
      raise ValueError(f"Arrays must share one non-empty leading dimension, got {sizes}")
    self.arrays: dict[str, jax.Array] = {
        k: jax.device_put(v, sharding) for k, v in arrays.items()
    }
    self.num_examples: int = next(iter(sizes.values()))

  def steps_per_epoch(self, batch_size: int) -> int:
    """Returns the number of full batches per epoch (the remainder is dropped).

    Raises:
      ValueError: If ``batch_size`` is not in ``[1, num_examples]``.
    """
    if not 0 < batch_size <= self.num_examples:
      raise ValueError(
          f"batch_size={batch_size} must be in [1, {self.num_examples}]"
      )
    return self.num_examples // batch_size


def epoch_permutation(key: jax.Array, epoch: int | jax.Array, num_examples: int) -> jax.Array:
  """Returns the example order for ``epoch``; depends only on ``(key, epoch)``.

  Pure and jittable with ``num_examples`` static.

  Args:
    key: Data-order PRNG key.
    epoch: Epoch number (may be traced).
    num_examples: Dataset size.

  Returns:
    An int permutation of ``range(num_examples)``.

  Example:

    >>> key = jax.random.key(0)
    >>> perm = epoch_permutation(key, 1, 6)
    >>> sorted(perm.tolist()), bool((perm == epoch_permutation(key, 1, 6)).all())
    ([0, 1, 2, 3, 4, 5], True)
  """
  return jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)


def gather_batch(
    arrays: dict[str, jax.Array], perm: jax.Array, index: int | jax.Array, batch_size: int
) -> dict[str, jax.Array]:
  """Gathers batch ``index`` of an epoch from on-device arrays.

  Pure and jittable with ``batch_size`` static; ``index`` may be traced. As
  with ``lax.dynamic_slice``, an out-of-range ``index`` is clamped, so keep
  ``index < len(perm) // batch_size``.

  Args:
    arrays: Dataset arrays (e.g. ``DeviceDataset.arrays``).
    perm: Epoch permutation from :func:`epoch_permutation`.
    index: Step within the epoch.
    batch_size: Batch size.

  Returns:
    ``{k: v[perm[index * batch_size:(index + 1) * batch_size]]}``.

  Example:

    >>> perm = epoch_permutation(jax.random.key(0), 0, 6)
    >>> batch = gather_batch({"x": 10 * jnp.arange(6)}, perm, 1, 2)
    >>> batch["x"].tolist() == (10 * perm[2:4]).tolist()
    True
  """
  idx = jax.lax.dynamic_slice_in_dim(perm, index * batch_size, batch_size)
  return {k: jnp.take(v, idx, axis=0) for k, v in arrays.items()}


def batches(arrays: Mapping[str, np.ndarray] | DeviceDataset, batch_size: int, key: jax.Array,
            *, start_step: int = 0, num_steps: int | None = None,
            sharding: Any = None) -> Iterator[dict[str, jax.Array]]:
  """The training batches of a data set, as the training loop draws them, for your own loop.

  Step ``s`` is batch ``s % steps_per_epoch`` of epoch ``s // steps_per_epoch`` in the order
  :func:`epoch_permutation` gives ``(key, epoch)``; full batches only (an epoch's remainder
  is dropped). The data go to the device once; each batch is gathered there.

  Args:
    arrays: host arrays with a common leading dimension (e.g. :func:`load_numpy`'s dict),
      or a :class:`DeviceDataset`.
    batch_size: examples per batch.
    key: the data-order key (the loop's is ``jax.random.split(jax.random.key(seed), 3)[1]``).
    start_step: the first step (resume mid-epoch).
    num_steps: stop before this step (None: never).
    sharding: the data's sharding (e.g. replicated over a mesh), for host arrays.

  Example:

    >>> data = {"image": np.zeros((10, 28, 28, 1), np.uint8), "label": np.arange(10)}
    >>> labels = [b["label"] for b in batches(data, 4, jax.random.key(0), num_steps=3)]
    >>> [x.shape for x in labels], len(set(labels[0].tolist() + labels[1].tolist()))
    ([(4,), (4,), (4,)], 8)
  """
  ds = arrays if isinstance(arrays, DeviceDataset) else DeviceDataset(dict(arrays), sharding)
  steps = ds.steps_per_epoch(batch_size)
  gather = jax.jit(gather_batch, static_argnums=3)
  step, epoch, perm = start_step, None, None
  while num_steps is None or step < num_steps:
    if step // steps != epoch:
      epoch = step // steps
      perm = epoch_permutation(key, epoch, ds.num_examples)
    yield gather(ds.arrays, perm, step % steps, batch_size)
    step += 1


def to_float(images: np.ndarray | jax.Array) -> jax.Array:
  """Converts uint8 images in ``[0, 255]`` to float32 in ``[0, 1]``.

  Example:

    >>> to_float(np.array([0, 255], np.uint8)).tolist()
    [0.0, 1.0]
  """
  return jnp.asarray(images, dtype=jnp.float32) / 255.0


def load_device_dataset(
    name: str, split: str, data_dir: str | None = None, sharding: Any = None
) -> DeviceDataset:
  """Loads a dataset split (see :func:`load_numpy`) and puts it on device.

  Args:
    name: Dataset name, one of ``SUPPORTED_DATASETS``.
    split: ``"train"`` or ``"test"``.
    data_dir: Data directory; defaults to ``$AAEJAX_DATA_DIR``.
    sharding: Sharding for the device arrays; ``None`` = default device.

  Returns:
    The :class:`DeviceDataset`.
  """
  return DeviceDataset(load_numpy(name, split, data_dir), sharding)
