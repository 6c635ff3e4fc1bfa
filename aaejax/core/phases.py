"""Phases: one optimizer update each (the parameters it trains, its loss, its optimizer
settings), their parameter paths, the step inputs a loss sees, progress schedules."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import optax

from aaejax.core import config_checks
from aaejax.core.state import Params, TrainState


def constant_schedule(step):
  del step
  return 1.0


def lr_schedule(config):
  """Multiplier of every learning rate: piecewise constant at ``lr_boundaries`` (steps)."""
  boundaries = tuple(config.get("lr_boundaries", ()))
  factors = tuple(config.get("lr_factors", ()))
  if len(boundaries) != len(factors):
    raise ValueError(f"lr_boundaries {boundaries} and lr_factors {factors} differ in length.")
  if not boundaries:
    return constant_schedule
  return optax.piecewise_constant_schedule(1.0, dict(zip(boundaries, factors)))


def phase_lr_schedules(config) -> dict[str, Callable]:
  """Phase name -> its own multiplier schedule: ``phase_lr_factors[name]`` (one factor per
  ``lr_boundaries`` entry) in place of ``lr_factors`` for that phase.

  >>> s = phase_lr_schedules({"lr_boundaries": (100,), "lr_factors": (0.5,),
  ...                         "phase_lr_factors": {"recon": (0.25,)}})
  >>> float(s["recon"](99)), float(s["recon"](100))
  (1.0, 0.25)
  """
  own = config.get("phase_lr_factors", {}) or {}
  own = dict(config_checks.plain(own))
  boundaries = tuple(config.get("lr_boundaries", ()))
  out = {}
  for name, factors in own.items():
    if len(tuple(factors)) != len(boundaries):
      raise ValueError(f"phase_lr_factors[{name!r}]={tuple(factors)}: expected one factor per "
                       f"lr_boundaries entry {boundaries}.")
    out[name] = lr_schedule({"lr_boundaries": boundaries, "lr_factors": tuple(factors)})
  return out


def optimizer_fields(config) -> dict[str, Any]:
  """The :class:`Model` fields a config sets for every model: Adam's betas, the schedules,
  the compute dtype."""
  return dict(adam_b1=config.get("adam_b1", 0.9), adam_b2=config.get("adam_b2", 0.999),
              lr_schedule=lr_schedule(config), phase_lr_schedules=phase_lr_schedules(config),
              compute_dtype=config.get("compute_dtype", "float32"))


def split_path(path: str) -> list[str]:
  return [p for p in path.split("/") if p]


def select(params: Params, paths: Sequence[str]) -> dict:
  """The sub-tree of ``params`` named by ``paths`` (``"net"`` or ``"net/sub/..."``), nested."""
  out: dict = {}
  for path in paths:
    keys, node, target = split_path(path), params, out
    for k in keys:
      if not isinstance(node, Mapping) or k not in node:
        raise KeyError(f"parameter path {path!r} not found (at {k!r}).")
      node = node[k]
    for k in keys[:-1]:
      target = target.setdefault(k, {})
    target[keys[-1]] = node
  return out


def merge(params: Params, subtree: Params) -> dict:
  """``params`` with the leaves of ``subtree`` (as :func:`select` returns it) put back."""
  out = dict(params)
  for k, v in subtree.items():
    out[k] = merge(params[k], v) if isinstance(v, Mapping) else v
  return out


def check_paths(phases: Mapping[str, Sequence[str]], network_names: Sequence[str]) -> None:
  """Every phase names parameters of known networks, none twice (nor a path and its prefix)."""
  for phase, paths in phases.items():
    if not paths:
      raise ValueError(f"phase {phase!r} trains nothing.")
    split = [split_path(p) for p in paths]
    for s, path in zip(split, paths):
      if not s or s[0] not in network_names:
        raise ValueError(f"phase {phase!r} trains {path!r}, not a network of this model; "
                         f"networks: {sorted(network_names)}.")
    for i, a in enumerate(split):
      for b in split[i + 1:]:
        if a[:len(b)] == b or b[:len(a)] == a:
          raise ValueError(f"phase {phase!r} names overlapping parameters: {paths}.")


@dataclasses.dataclass(frozen=True)
class StepInputs:
  """What a phase's loss and a shared forward pass see.

  Attributes:
    state: the state as the phases before this one left it (``state.step`` is the step
      being taken: the core advances it once, after the last phase).
    batch: the step's batch (training batch plus the streams' draws).
    rng: the step's key, ``fold_in(state.rng, step)``; split it as the family likes.
    inputs: what :meth:`Model.prepare` made of the batch, once per step.
  """

  state: "TrainState"
  batch: Mapping[str, Any]
  rng: jax.Array
  inputs: Mapping[str, Any]

  @property
  def hparams(self) -> Mapping[str, jax.Array]:
    return self.state.hparams

  @property
  def progress(self) -> jax.Array:
    """Training progress p = step / ``hparams["num_steps"]`` (float32; past 1 when a run is
    extended beyond the steps the state was made for, see :func:`progress`)."""
    return progress(self.state)


def progress(state: "TrainState") -> jax.Array:
  """p = step / ``hparams["num_steps"]``, the clock of progress schedules (float32).

  The config's ``num_steps`` sets the hparam (a model declares it in
  :meth:`Model.default_hparams` to use it). A resumed run takes its hparams from the
  config, so raising ``num_steps`` on resume stretches the schedules: at step 1,000 of a run
  extended from 1,000 to 2,000 steps p drops from 1.0 to 0.5.
  """
  if "num_steps" not in state.hparams:
    raise KeyError("progress schedules need the hparam 'num_steps' (declare it in "
                   "default_hparams; the config's num_steps sets it).")
  return state.step.astype(jnp.float32) / jnp.maximum(state.hparams["num_steps"], 1.0)


# loss(inputs, params, shared) -> (loss, (metrics, model_state))
PhaseLoss = Callable[[StepInputs, Params, Any], tuple[jax.Array, tuple[dict, dict]]]
# forward(inputs, params) -> (shared outputs, model_state)
Forward = Callable[[StepInputs, Params], tuple[Any, dict]]


@dataclasses.dataclass(frozen=True)
class Phase:
  """One optimizer update per step: the parameters it trains, its loss, its optimizer.

  Attributes:
    name: names its optimizer state (``opt_state[name]``), its learning rate
      (``hparams["lr_<name>"]``) and its scope in jaxprs and profiles.
    trains: parameter paths, whole networks (``"critic"``) or parts (``"critic/q_head"``).
    loss: ``loss(inputs, params, shared) -> (loss, (metrics, model_state))``; ``params``
      are all networks' parameters as the previous phases left them, those of ``trains``
      differentiable; ``shared`` is the output of ``forward`` (None without one).
    lr_field: the config field that sets ``lr_<name>``; default ``"<name>_learning_rate"``
      (a model's main phase says ``"learning_rate"``).
    b1, b2: Adam's betas for this phase (None: the model's ``adam_b1``, ``adam_b2``).
    clip_norm: clip the phase's gradient to this global norm (None: no clipping); the bound
      is the hparam ``clip_<name>`` (an array, sweepable), defaulting to this value.
    schedule: ``(progress, hparams) -> multiplier`` of the learning rate over training
      progress p (:func:`progress`), on top of the model's step schedule; None: constant.
    forward: a forward pass shared with the neighbouring phases that name the same
      ``forward``: ``forward(inputs, params) -> (shared, model_state)`` runs once, at the
      parameters before the first of them, and each of these phases gets the gradient of its
      loss through ``shared`` (pulled back through the one pass) plus the gradient of its
      direct use of ``params``. The AAE's critic and generator phases share the encoder's
      codes so; VAE-GAN's three updates share one pass.
  """

  name: str
  trains: tuple[str, ...]
  loss: PhaseLoss
  lr_field: str | None = None
  b1: float | None = None
  b2: float | None = None
  clip_norm: float | None = None
  schedule: Callable[[jax.Array, Mapping[str, jax.Array]], Any] | None = None
  forward: Forward | None = None

  def __post_init__(self):
    object.__setattr__(self, "trains", tuple(self.trains))
    if self.clip_norm is not None and not self.clip_norm > 0:
      raise ValueError(f"phase {self.name!r}: clip_norm must be > 0, got {self.clip_norm}.")

  @property
  def lr_name(self) -> str:
    return f"lr_{self.name}"

  @property
  def config_field(self) -> str:
    return self.lr_field or f"{self.name}_learning_rate"


def groups(phases: Sequence[Phase]) -> list[list[Phase]]:
  """The phases in runs that share one forward pass (a run of one without a ``forward``)."""
  out: list[list[Phase]] = []
  for p in phases:
    if out and p.forward is not None and out[-1][-1].forward == p.forward:
      out[-1].append(p)
    else:
      out.append([p])
  return out


def check_phases(phases: Sequence[Phase], network_names: Sequence[str]) -> None:
  """Phases are :class:`Phase` objects of distinct names, each training parameters of known
  networks, none twice (:func:`check_paths`)."""
  names = [getattr(p, "name", None) for p in phases]
  if not phases or not all(isinstance(p, Phase) for p in phases):
    raise ValueError(f"phases() must return a non-empty sequence of core.Phase, got {phases!r}.")
  if len(set(names)) != len(names):
    raise ValueError(f"phase names must be distinct, got {names}.")
  check_paths({p.name: p.trains for p in phases}, network_names)
