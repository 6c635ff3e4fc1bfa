"""Orbax checkpoints of the train state, restorable onto any device layout.

Typed PRNG keys are stored as their raw ``uint32`` key data. Restoring takes a
template state (e.g. a freshly initialised one) whose shardings say where the
arrays go, so a run saved on 8 devices resumes on 1 and vice versa. With several
processes (:mod:`aaejax.run.distributed`) saving and restoring are collective: every
process calls them, each writes and reads the shards it holds, and the directory
must be one that every process sees; a multi-process checkpoint restores on one
process and vice versa.

Failures never pass silently: a directory that cannot be written fails at
construction; a background save that fails is raised, as
:class:`~aaejax.run.guards.CheckpointFailed` naming the directory, by the next
:meth:`Checkpointer.check` (the loop asks at every step while a save is in
flight) or :meth:`Checkpointer.wait`; :meth:`Checkpointer.restore_latest`
skips checkpoints that do not restore (saying which and why) and falls back to
the newest one that does.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import jax
import orbax.checkpoint as ocp

from aaejax.errors import ConfigError
from aaejax.run.guards import CheckpointFailed


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
    if max_to_keep < 1:
      raise ValueError(f"max_checkpoints must be >= 1, got {max_to_keep}: a run without "
                       "checkpoints could not resume.")
    self.directory = os.path.abspath(directory)
    _probe(self.directory)
    try:
      self.manager = ocp.CheckpointManager(
          self.directory,
          options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                               save_interval_steps=every, create=True))
    except OSError as e:
      raise CheckpointFailed(f"cannot use checkpoint directory {self.directory}: {e}") from e
    self._saving: int | None = None  # the step of a save that may still be in flight

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state, force: bool = False) -> bool:
    """Saves ``state`` if ``step`` is due (or ``force``); returns whether it did.

    The write goes on in the background; :meth:`check` or :meth:`wait` raise its error.
    """
    self.check()
    try:
      saved = self.manager.save(step, args=ocp.args.StandardSave(_unwrap_keys(state)),
                                force=force)
    except Exception as e:  # noqa: BLE001 — any I/O error of the synchronous part
      raise self._failed(step, e) from e
    if saved:
      self._saving = step
    return saved

  def check(self) -> None:
    """Raises :class:`CheckpointFailed` if a background save has failed (no wait)."""
    if self._saving is None:
      return
    step = self._saving
    try:
      self.manager.check_for_errors()
      if not self.manager.is_saving_in_progress():
        # Finished: returns at once, raising the error of a save that failed (Orbax keeps
        # some, e.g. of creating the step's directory, for the next wait).
        self.manager.wait_until_finished()
        self._saving = None
    except Exception as e:  # noqa: BLE001
      self._saving = None
      raise self._failed(step, e) from e

  def restore(self, template, step: int | None = None):
    """Restores ``step`` (default the latest) with ``template``'s structure and shardings."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}.")
    _check_shapes(self.manager, step, template, self.directory)
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _unwrap_keys(template))
    restored = self.manager.restore(step, args=ocp.args.StandardRestore(target))
    return jax.tree.map(lambda t, r: jax.random.wrap_key_data(r, impl=jax.random.key_impl(t))
                        if _is_key(t) else r, template, restored)

  def restore_latest(self, template, log=None) -> tuple[Any, int | None]:
    """``(state, step)`` of the newest checkpoint that restores; ``(template, None)`` if none.

    A checkpoint that fails to restore (truncated or corrupt files) is skipped
    with a message through ``log`` (default: stderr) naming it and the error;
    if checkpoints exist but none restores, raises :class:`CheckpointFailed`.
    A checkpoint of another model (other parameter shapes) is not skipped: it
    raises ``ValueError`` at once, since older ones hold the same model.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    steps = self.all_steps()
    skipped = []
    for step in reversed(steps):
      try:
        restored = self.restore(template, step)
      except ModelMismatch:
        raise
      except Exception as e:  # noqa: BLE001 — whatever a damaged checkpoint raises
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
        skipped.append((step, why))
        log(f"warning: skipping checkpoint {os.path.join(self.directory, str(step))}, which "
            f"does not restore: {why}")
        continue
      self._set_aside([s for s, _ in skipped], log)
      return restored, step
    if skipped:
      raise CheckpointFailed(
          f"no checkpoint in {self.directory} restores (tried "
          f"{'; '.join(f'{s} ({why})' for s, why in skipped)}). Move the directory away to "
          "start again.")
    return template, None

  def _set_aside(self, steps: list[int], log) -> None:
    """Moves checkpoints that do not restore to ``<directory>_unreadable/`` (the run saves
    those steps again); kept, not deleted, for whoever wants to look at them."""
    if not steps:
      return
    aside = self.directory.rstrip(os.sep) + "_unreadable"
    if jax.process_index() == 0:
      os.makedirs(aside, exist_ok=True)
      for step in steps:
        target, n = os.path.join(aside, str(step)), 1
        while os.path.exists(target):
          target, n = os.path.join(aside, f"{step}.{n}"), n + 1
        os.replace(os.path.join(self.directory, str(step)), target)
        log(f"moved the unreadable checkpoint {step} to {target}")
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices("aaejax_checkpoints_set_aside")
    self.manager.reload()

  def wait(self) -> None:
    """Blocks until saves are written; raises :class:`CheckpointFailed` if one failed."""
    step = self._saving
    try:
      self.manager.wait_until_finished()
      self.manager.check_for_errors()
    except Exception as e:  # noqa: BLE001
      raise self._failed(step, e) from e
    finally:
      self._saving = None

  def close(self) -> None:
    """Waits for saves and releases the manager's threads, even after a failed save."""
    try:
      self.wait()
    finally:
      try:
        self.manager.close()
      except Exception:  # noqa: BLE001 — the failure was already raised by wait()
        pass

  def _failed(self, step, error) -> CheckpointFailed:
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    return CheckpointFailed(f"could not write checkpoint{'' if step is None else f' {step}'} "
                            f"to {self.directory}: {first}")


class ModelMismatch(ConfigError):
  """A checkpoint holds arrays of other shapes than the state it should restore into."""


def _probe(directory: str) -> None:
  """Creates ``directory`` and writes a file there, or raises :class:`CheckpointFailed`."""
  probe = os.path.join(directory, f".write_probe_{jax.process_index()}")
  try:
    os.makedirs(directory, exist_ok=True)
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise CheckpointFailed(f"checkpoint directory {directory} is not writable: "
                           f"{e.strerror or e}") from e


def _check_shapes(manager, step: int, template, directory: str) -> None:
  """Raises :class:`ModelMismatch` if checkpoint ``step`` holds other shapes than ``template``."""
  try:
    saved = manager.item_metadata(step)
    saved = jax.tree_util.tree_flatten_with_path(saved)[0]
  except Exception:  # noqa: BLE001 — unreadable metadata: let restore say what is wrong
    return
  want = {_names(p): tuple(x.shape)
          for p, x in jax.tree_util.tree_flatten_with_path(_unwrap_keys(template))[0]}
  for path, meta in saved:
    key, shape = _names(path), getattr(meta, "shape", None)
    if key in want and shape is not None and tuple(shape) != want[key]:
      raise ModelMismatch(
          f"checkpoint {os.path.join(directory, str(step))} holds another model: "
          f"{'/'.join(key)} has shape {tuple(shape)} there and {want[key]} in this config. "
          "Use a new --workdir for a new model.")


def _names(path) -> tuple[str, ...]:
  """A pytree path as plain names (dataclass fields and dict keys alike)."""
  return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)
