"""Orbax checkpoints of the train state, restorable onto any device layout.

Typed PRNG keys are stored as their raw ``uint32`` key data. Restoring takes a
template state (e.g. a freshly initialised one) whose shardings say where the
arrays go, so a run saved on 8 devices resumes on 1 and vice versa. With several
processes (:mod:`aaejax.distributed`) saving and restoring are collective: every
process calls them, each writes and reads the shards it holds, and the directory
must be one that every process sees; a multi-process checkpoint restores on one
process and vice versa.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


def _is_key(x) -> bool:
  return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _unwrap_keys(tree):
  return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


class Checkpointer:
  """Saves every ``every`` steps into ``directory``, keeping the latest ``max_to_keep``.

  Example:

    >>> import tempfile, jax.numpy as jnp
    >>> ckpt = Checkpointer(tempfile.mkdtemp(), every=1)
    >>> ckpt.save(3, {"w": jnp.ones(2)})
    True
    >>> ckpt.latest_step(), ckpt.restore({"w": jnp.zeros(2)})["w"].tolist()
    (3, [1.0, 1.0])
  """

  def __init__(self, directory: str, every: int = 1000, max_to_keep: int = 3):
    if every < 1:
      raise ValueError(f"checkpoint_every must be >= 1, got {every}.")
    self.manager = ocp.CheckpointManager(
        os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, save_interval_steps=every,
                                             create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, force: bool = False) -> bool:
    """Saves ``state`` if ``step`` is due (or ``force``); returns whether it did."""
    return self.manager.save(step, args=ocp.args.StandardSave(_unwrap_keys(state)), force=force)

  def restore(self, template, step: int | None = None):
    """Restores ``step`` (default the latest) with ``template``'s structure and shardings."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.manager.directory}.")
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _unwrap_keys(template))
    restored = self.manager.restore(step, args=ocp.args.StandardRestore(target))
    return jax.tree.map(lambda t, r: jax.random.wrap_key_data(r, impl=jax.random.key_impl(t))
                        if _is_key(t) else r, template, restored)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()
