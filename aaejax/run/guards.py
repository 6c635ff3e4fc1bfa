"""What stops a run early, and how: divergence, preemption signals, failed checkpoints.

A run that has to stop raises a :class:`RunStopped` whose message says why, at
which step, and what is on disk; ``experiments/main.py`` prints that one line
and exits with the error's ``exit_code``:

==================  =====================  ============================================
error               exit code              raised when
==================  =====================  ============================================
:class:`Diverged`   3                      a train metric is non-finite or absurd
                                           (``|value| > config.divergence_limit``),
                                           or the state holds a non-finite number
                                           when it is about to be saved
:class:`Preempted`  128 + signal (143 for  SIGTERM or SIGINT arrived: the state of
                    SIGTERM, 130 SIGINT)   the step in progress was saved first
:class:`CheckpointFailed`  4               a checkpoint could not be written or
                                           none of the saved ones restores
==================  =====================  ============================================

The checks cost no host sync of their own: metrics are checked when the loop
fetches them anyway (one step late, every ``log_every`` steps) and the state
(:func:`finite_leaves`, one reduction) just before each save, so a non-finite
state is never written and checkpoint rotation never deletes the last good one.

Example:

  >>> import math
  >>> bad_metric({"recon_loss": 3.0, "critic_loss": math.nan}, limit=1e8)
  ('critic_loss', nan)
  >>> bad_metric({"recon_loss": 7e30}, limit=1e8)
  ('recon_loss', 7e+30)
  >>> bad_metric({"recon_loss": 7e30}, limit=math.inf) is None
  True
"""

from __future__ import annotations

import math
import signal
import threading
from typing import Any, Mapping

import jax
import jax.numpy as jnp


# |metric| above this counts as diverged (config.divergence_limit; inf turns it off). Far
# above any loss of these models (a summed Bernoulli loss of a 64x64x3 image is ~1e4).
DEFAULT_DIVERGENCE_LIMIT = 1e8


class RunStopped(RuntimeError):
  """A run stopped before its last step; the message says why and what is on disk."""
  exit_code = 1


class Diverged(RunStopped):
  """A non-finite or absurd metric, or a non-finite state before a save."""
  exit_code = 3


class CheckpointFailed(RunStopped):
  """A checkpoint could not be written, or no saved checkpoint restores."""
  exit_code = 4


class Preempted(RunStopped):
  """A stop signal arrived; the state of the step in progress was saved first."""

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.signum = signum
    self.exit_code = 128 + signum


def bad_metric(row: Mapping[str, float], limit: float) -> tuple[str, float] | None:
  """The first ``(name, value)`` of ``row`` that is non-finite or above ``limit`` in size."""
  for name, value in row.items():
    value = float(value)
    if not math.isfinite(value) or abs(value) > limit:
      return name, value
  return None


def divergence_message(step: int, name: str, value: float, limit: float,
                       member: int | None = None) -> str:
  who = "" if member is None else f"member {member}: "
  what = ("is non-finite" if not math.isfinite(value) else
          f"exceeds config.divergence_limit={limit:g} (treated as non-finite)")
  return (f"{who}training diverged at step {step}: {name} = {value:g} {what}. "
          "Lower the learning rates or check the data; the last finite state is the last "
          "checkpoint.")


def _finite_unjitted(tree) -> dict[str, jax.Array]:
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {jax.tree_util.keystr(path): jnp.all(jnp.isfinite(x)) for path, x in flat
          if jnp.issubdtype(x.dtype, jnp.inexact)}


_finite = jax.jit(_finite_unjitted)
_finite_per_member = jax.jit(jax.vmap(_finite_unjitted))  # compiled once per state structure


def finite_leaves(state: Any) -> dict[str, bool]:
  """``{leaf path: all its entries finite}`` for the float leaves of ``state`` (one sync)."""
  return {k: bool(v) for k, v in jax.device_get(_finite(state)).items()}


def finite_members(states: Any) -> list[bool]:
  """Per member of stacked states (leading axis K): are all its float entries finite?"""
  per_leaf = jax.device_get(_finite_per_member(states))
  k = jax.tree.leaves(states)[0].shape[0]
  return [all(bool(v[i]) for v in per_leaf.values()) for i in range(k)]


def check_state(state: Any, step: int) -> None:
  """Raises :class:`Diverged`, naming the first non-finite leaf, unless ``state`` is finite."""
  bad = [k for k, ok in finite_leaves(state).items() if not ok]
  if bad:
    raise Diverged(f"training diverged at step {step}: the state holds non-finite values "
                   f"(first: {bad[0]}; {len(bad)} leaves); it was not saved, the last "
                   "checkpoint is the last finite state.")


class StopSignals:
  """Turns SIGTERM and SIGINT into a request to stop at the next step boundary.

  Use it as a context manager around the loop and ask :meth:`stop_requested`
  once per step. In one process, Python handlers record the signal (a second
  SIGINT interrupts at once). With several processes JAX's preemption service
  (started by ``jax.distributed.initialize``) owns SIGTERM and tells every
  process to stop at the same step
  (``multihost_utils.reached_preemption_sync_point``), so all of them save the
  same step together; no Python handler is installed there (SIGINT interrupts).
  """

  def __init__(self, multiprocess: bool = False):
    self.multiprocess = multiprocess
    self.signum: int | None = None
    self._previous: dict[int, Any] = {}

  def _handle(self, signum, frame):
    del frame
    if self.signum == signal.SIGINT and signum == signal.SIGINT:
      raise KeyboardInterrupt  # a second Ctrl-C: stop now
    self.signum = signum

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for s in () if self.multiprocess else (signal.SIGTERM, signal.SIGINT):
        self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous.clear()
    return False

  def stop_requested(self, step: int) -> int | None:
    """The signal to stop for at ``step`` (every process gets the same answer), else None."""
    if self.multiprocess:
      from jax.experimental import multihost_utils
      if multihost_utils.reached_preemption_sync_point(step):
        return signal.SIGTERM
      return None
    return self.signum
