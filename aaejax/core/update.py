"""The phase update and the body of every train step: phases run in order, a shared forward
pass linearised once, one optimizer update per phase."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol, Sequence

import jax
import jax.numpy as jnp
import optax
from jax.extend import core as jax_core

from aaejax.core.phases import Phase, StepInputs, groups, merge, progress, select, split_path
from aaejax.core.state import LossFn, Params, TrainState


class PhasedModel(Protocol):
  """What the phase update reads of a model (:class:`aaejax.core.model.Model` has it all)."""

  lr_schedule: Callable[[jax.Array], Any]
  phase_lr_schedules: Mapping[str, Callable[[jax.Array], Any]]

  def phases(self) -> Sequence[Phase]: ...

  def phase(self, name: str) -> Phase: ...

  def optimizer(self, phase: Phase | str | None = None) -> optax.GradientTransformation: ...

  def prepare(self, state: TrainState, batch: Mapping[str, Any], rng: jax.Array
              ) -> Mapping[str, Any]: ...


def _phase(model: PhasedModel, phase: Phase | str) -> Phase:
  return model.phase(phase) if isinstance(phase, str) else phase


def learning_rate(model: PhasedModel, state: TrainState, phase: Phase | str) -> jax.Array:
  """The step size of ``phase`` now: ``lr_<phase>`` × the model's step schedule (the phase's
  own, if it has one) × the phase's progress schedule."""
  phase = _phase(model, phase)
  schedule = model.phase_lr_schedules.get(phase.name, model.lr_schedule)
  lr = state.hparams[phase.lr_name] * schedule(state.step)
  if phase.schedule is not None:
    lr = lr * phase.schedule(progress(state), state.hparams)
  return lr


def apply_gradients(model: PhasedModel, state: TrainState, phase: Phase | str, grads: Params
                    ) -> TrainState:
  """One optimizer update of the parameters ``phase`` trains, with ``grads`` of them.

  ``grads`` has the structure :func:`select` gives for the phase's paths; they are clipped
  to the global norm ``hparams["clip_<phase>"]`` if the phase clips; the step size is
  :func:`learning_rate`.
  """
  phase = _phase(model, phase)
  trained = select(state.params, phase.trains)
  if jax.tree.structure(grads) != jax.tree.structure(trained):
    raise ValueError(f"phase {phase.name!r} trains {phase.trains}; the gradients have "
                     f"another structure (top-level keys {sorted(grads)}).")
  if phase.clip_norm is not None:
    norm = optax.global_norm(grads)
    bound = state.hparams[f"clip_{phase.name}"]
    scale = jnp.where(norm > bound, bound / jnp.maximum(norm, 1e-12), 1.0)
    grads = jax.tree.map(lambda g: g * scale.astype(g.dtype), grads)
  direction, opt_state = model.optimizer(phase).update(grads, state.opt_state[phase.name],
                                                       trained)
  lr = learning_rate(model, state, phase)
  trained = jax.tree.map(lambda p, u: p - lr * u, trained, direction)
  return state.replace(params=merge(state.params, trained),
                       opt_state={**state.opt_state, phase.name: opt_state})


def update(model: PhasedModel, state: TrainState, phase: Phase | str, loss_fn: LossFn
           ) -> tuple[TrainState, dict]:
  """One update of ``phase`` on ``loss_fn``: returns ``(new_state, metrics)``.

  ``loss_fn(params) -> (loss, (metrics, model_state))`` sees all parameters,
  those of the phase differentiable; the returned model_state (batch-norm
  statistics) replaces the state's. The update runs under ``jax.named_scope(phase)``,
  which names it in jaxprs, HLO and profiles (:mod:`aaejax.run.flops` counts per phase).
  """
  phase = _phase(model, phase)
  with jax.named_scope(phase.name):
    trained = select(state.params, phase.trains)
    grad_fn = jax.value_and_grad(lambda p: loss_fn(merge(state.params, p)), has_aux=True)
    (_, (metrics, model_state)), grads = grad_fn(trained)
    state = apply_gradients(model, state, phase, grads)
  return state.replace(model_state=model_state), metrics


def _networks_of(phases: Sequence[Phase]) -> list[str]:
  """The networks whose parameters ``phases`` train."""
  return sorted({split_path(path)[0] for p in phases for path in p.trains})


def _read_by(fn: Callable[[Params], Any], params: Params) -> set[str]:
  """The top-level names of ``params`` whose leaves ``fn(params)`` reads (traced, not run)."""
  jaxpr = jax.make_jaxpr(fn)(params).jaxpr
  used = {v for eqn in jaxpr.eqns for v in eqn.invars if isinstance(v, jax_core.Var)}
  used |= {v for v in jaxpr.outvars if isinstance(v, jax_core.Var)}
  paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  return {path[0].key for path, var in zip(paths, jaxpr.invars) if var in used}


def run_phases(model: PhasedModel, state: TrainState, batch: Mapping[str, Any], rng: jax.Array
               ) -> tuple[TrainState, dict]:
  """Runs ``model.phases()`` once, in order: the body of :meth:`Model.train_step`.

  Each phase is one optimizer update (:func:`apply_gradients`) of its parameters on its
  loss, seeing the parameters and model state as the phases before it left them. Phases
  that share a ``forward`` run it once: its output is linearised at the parameters before
  the first of them (``jax.vjp``), and each phase's gradient is that of its loss's direct
  use of the parameters plus the loss's gradient with respect to the shared output pulled
  back through the one pass. Returns the state (``step`` not advanced) and the phases'
  metrics, merged in order.
  """
  inputs = model.prepare(state, batch, rng)
  metrics: dict = {}
  for group in groups(model.phases()):
    first = group[0]
    shared = pull_back = None
    if first.forward is not None:
      with jax.named_scope(first.name):
        ins = StepInputs(state, batch, rng, inputs)
        params = state.params

        def forward(p, ins=ins, params=params):
          return first.forward(ins, merge(params, p))

        # Linearised only in the trained networks the pass reads (the critic's are not).
        nets = sorted(_read_by(forward, select(params, _networks_of(group))))
        shared, pull_back, model_state = jax.vjp(forward, select(params, nets), has_aux=True)
        state = state.replace(model_state=model_state)
    for phase in group:
      with jax.named_scope(phase.name):
        ins = StepInputs(state, batch, rng, inputs)
        trained = select(state.params, phase.trains)

        def loss(p, shared, phase=phase, ins=ins):
          return phase.loss(ins, merge(ins.state.params, p), shared)

        if pull_back is None or not set(_networks_of([phase])) & set(nets):
          (_, (m, model_state)), grads = jax.value_and_grad(loss, has_aux=True)(trained, shared)
        else:
          (_, (m, model_state)), (grads, shared_grads) = jax.value_and_grad(
              loss, argnums=(0, 1), has_aux=True)(trained, shared)
          read = [path for path in phase.trains if split_path(path)[0] in nets]
          through = select(pull_back(shared_grads)[0], read)
          grads = merge(grads, jax.tree.map(jnp.add, select(grads, read), through))
        state = apply_gradients(model, state, phase, grads)
        state = state.replace(model_state=model_state)
      metrics.update(m)
  return state, metrics
