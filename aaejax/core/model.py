"""The small core every model family builds on: state, networks, phases, hparams, streams.

A model is a static Python object holding

- named **networks** (:meth:`Model.networks`: name -> linen module and the
  shapes of its example inputs);
- an ordered sequence of **phases** (:meth:`Model.phases`, :class:`Phase`), each
  one optimizer update per step of the parameters it trains, on its own loss,
  with its own optimizer state, learning rate ``hparams["lr_<phase>"]`` (set by
  the config field the phase names), Adam betas, clipping and progress schedule;
  neighbouring phases may share one forward pass;
- default **hparams** (:meth:`Model.default_hparams`): every number a sweep may
  vary, stored as float32 arrays in the state, never as trace constants;
- declared **capabilities** (:meth:`Model.capabilities`), from which evaluators
  (:mod:`aaejax.evaluation`) and figures (:mod:`aaejax.evaluation.figures`) are chosen, and
  the extra data **streams** it needs besides the training batch, each with its
  own source (:class:`Stream`).

The train step ``(state, batch, rng) -> (state, metrics)`` is the core's
(:meth:`Model.train_step`, :func:`run_phases`): pure, usable under the caller's
own ``jax.jit`` and ``jax.vmap``; it runs the phases in order and advances the
step once. A family adds a phase by declaring it; a loss sees everything the
step's inputs (:meth:`Model.prepare`) and a shared forward pass made.

A phase trains whole networks (``"critic"``) or parts of one, named by a path
into its parameters (``"critic/q_head"``): in the style of
``optax.multi_transform``'s labels, but by name, so that two phases may share a
network and train different parts of it (InfoGAN's Q head on the critic's
trunk). :func:`update` and :func:`apply_gradients` are the phase update, for
steps written by hand.

Example: a one-network model with a phase that trains only the head.

  >>> import dataclasses, jax, jax.numpy as jnp, flax.linen as nn
  >>> from aaejax import core
  >>> class Net(nn.Module):
  ...   @nn.compact
  ...   def __call__(self, x, train=True):
  ...     return nn.Dense(1, name="head")(nn.Dense(4, name="trunk")(x))
  >>> @dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
  ... class Probe(core.Model):
  ...   def networks(self): return {"net": (Net(), ((2, 3),))}
  ...   def phases(self):
  ...     return (core.Phase("head", ("net/head",), self.loss, lr_field="learning_rate"),)
  ...   def default_hparams(self): return {"lr_head": 0.1}
  ...   def loss(self, inputs, params, shared):
  ...     out, _ = self.apply("net", params, {}, inputs.batch["image"], train=True)
  ...     loss = jnp.mean(out ** 2)
  ...     return loss, ({"loss": loss}, inputs.state.model_state)
  >>> model = Probe()
  >>> state = model.init(jax.random.key(0))
  >>> new, metrics = model.train_step(state, {"image": jnp.ones((2, 3))}, jax.random.key(1))
  >>> changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params, new.params)
  >>> changed["net"]["trunk"]["kernel"], changed["net"]["head"]["kernel"], int(new.step)
  (False, True, 1)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from aaejax.core.batch_checks import check_batch
from aaejax.core.phases import Phase, check_phases, constant_schedule, select
from aaejax.core.state import Params, TrainState
from aaejax.core.streams import Stream
from aaejax.core.update import run_phases
from aaejax.nets import networks


# What a model can do (:meth:`Model.capabilities`); each names the methods it guarantees.
ENCODE = "encode"            # encode(state, images) -> heads; latent(heads) -> (n, d) codes
DECODE = "decode"            # decode(state, codes) -> images; decoder_input_dim()
RECONSTRUCT = "reconstruct"  # reconstruction_loss(state, batch) -> (n,); reconstruct(...)
GENERATE = "generate"        # generate(state, rng, n) -> images in [0, 1]
PRIOR = "prior"              # .prior; sample_prior(state, rng, n, labels=None) -> codes
LIKELIHOOD = "likelihood"    # neg_elbo(state, x, rng) -> (n,); log_weights(state, x, rng, k)
CLASSIFY = "classify"        # classify(state, images) -> (n, K) logits of the labels
CLUSTER = "cluster"          # encoder heads hold "y_logits" of learned categories (no labels)
LABEL_PRIOR = "label_prior"  # p(z | label): the prior's classes are the labels
STYLE = "style"              # decode_with_labels(state, z, labels); num_classes
CATEGORICAL = "categorical"  # representation(params, y, z) of one-hot y; num_categories
CAPABILITIES = (ENCODE, DECODE, RECONSTRUCT, GENERATE, PRIOR, LIKELIHOOD, CLASSIFY, CLUSTER,
                LABEL_PRIOR, STYLE, CATEGORICAL)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Model:
  """Base class of every model: networks, phases, hparams; the step is the core's.

  Subclasses define :meth:`networks`, :meth:`phases`, :meth:`default_hparams`, and usually
  :meth:`prepare`, :meth:`capabilities`, :meth:`streams` and :meth:`from_config`. The train
  step (:meth:`train_step`) runs the declared phases in order and advances the step once.
  Models are compared by identity (usable as static jit arguments).

  Attributes:
    adam_b1, adam_b2: Adam's betas of every phase that does not set its own.
    lr_schedule: ``step -> multiplier`` of every phase's learning rate.
    phase_lr_schedules: phase name -> its own ``step -> multiplier``, in place of
      ``lr_schedule`` for that phase (config ``phase_lr_factors``).
    compute_dtype: ``"float32"`` or ``"bfloat16"``: the dtype of the networks' activations,
      matmuls and convolutions (:mod:`aaejax.nets.networks`; from_config builds them so).
      Parameters, optimizer states, batch-norm statistics and losses stay float32.
  """

  adam_b1: float = 0.9
  adam_b2: float = 0.999
  lr_schedule: Callable[[jax.Array], Any] = constant_schedule
  phase_lr_schedules: Mapping[str, Callable[[jax.Array], Any]] = dataclasses.field(
      default_factory=dict)
  compute_dtype: str = "float32"

  @property
  def dtype(self):
    """The jnp dtype of :attr:`compute_dtype` (a clear error for an unknown name)."""
    return networks.compute_dtype(self.compute_dtype)

  # ---- what a model declares -------------------------------------------------------------

  def networks(self) -> dict[str, tuple[nn.Module, tuple[tuple[int, ...], ...]]]:
    """Network name -> (linen module, shapes of float32 example inputs for init)."""
    raise NotImplementedError

  def phases(self) -> tuple[Phase, ...]:
    """The phases of one step, in the order they run (see :class:`Phase`)."""
    raise NotImplementedError

  def default_hparams(self) -> dict[str, float]:
    """Hparam name -> default value; holds ``lr_<phase>`` for every phase."""
    raise NotImplementedError

  def prepare(self, state: TrainState, batch: Mapping[str, Any], rng: jax.Array
              ) -> Mapping[str, Any]:
    """What every phase of a step uses, made once from the batch (e.g. float images);
    ``StepInputs.inputs``. Nothing by default."""
    del state, batch, rng
    return {}

  def capabilities(self) -> frozenset[str]:
    """What this model can do (see the constants of this module)."""
    return frozenset()

  def streams(self) -> dict[str, Stream]:
    """Extra data streams of each step (see :class:`Stream`); none by default."""
    return {}

  def eval_splits(self) -> dict[str, tuple[str | None, str]]:
    """The data a run evaluates on: name -> (data set, split), data set None for the run's
    own. ``"test"`` (the run's test split) always; a family adds others (DANN's target
    domain) and reads them in its evaluators as ``context.split(name)``."""
    return {"test": (None, "test")}

  def evaluators(self) -> tuple:
    """The family's own evaluators (:class:`aaejax.evaluation.Evaluator`), run besides the
    shared ones its capabilities pick; none by default."""
    return ()

  def figures(self) -> tuple:
    """The family's own figures (:class:`aaejax.evaluation.figures.Figure`), drawn besides
    the shared ones its capabilities pick; none by default."""
    return ()

  def train_data(self, train: Mapping[str, np.ndarray], seed: int) -> Mapping[str, np.ndarray]:
    """The training set as the step sees it (e.g. labels hidden as −1); unchanged by default."""
    del seed
    return train

  def label_fields(self) -> dict[str, tuple[int, bool]]:
    """Label arrays this model reads -> (number of classes, whether −1 = unlabelled is allowed).

    ``"label"`` for the training batch (and the data set the streams draw from),
    ``"<stream>_label"`` for a stream's; none by default (the labels are not read).
    """
    return {}

  def check_batch(self, batch: Mapping[str, Any], where: str = "batch") -> None:
    """Checks a training batch, or a whole data set, for this model (see :func:`check_batch`).

    Images (``"image"``, ``"<stream>_image"``) must be ``(n, *image_shape)`` (a stream's own
    :attr:`Stream.image_shape` where it sets one), n >= 1, uint8 or float in [0, 1]; the
    labels the model reads (:meth:`label_fields`) integers of their range. Dtypes and shapes
    are checked always, values when concrete. Every train step calls it on its batch (at
    trace time: dtypes and shapes); the training loop calls it on the host data once,
    before training, where the values are checked.
    """
    shapes = {f"{name}_image": s.image_shape for name, s in self.streams().items()
              if s.image_shape is not None}
    check_batch(batch, getattr(self, "image_shape", None), self.label_fields(), where=where,
                image_shapes=shapes)

  def __init_subclass__(cls, **kwargs):
    """A subclass's own ``train_step`` is checked to advance ``state.step``: a step that
    returns it unchanged would draw every step's randomness from one key (the loop folds
    the step into the state's key) and stall every schedule, silently; it raises instead."""
    super().__init_subclass__(**kwargs)
    own = cls.__dict__.get("train_step")
    if own is None or getattr(own, "_advances_step", False):
      return

    @functools.wraps(own)
    def train_step(self, state, batch, rng):
      new, metrics = own(self, state, batch, rng)
      if getattr(new, "step", None) is state.step:
        raise ValueError(
            f"{type(self).__name__}.train_step returned state.step unchanged; a step must "
            "advance it (state.replace(step=state.step + 1)), or every step reuses one key. "
            "core.Model.train_step does so: override phases() or prepare() instead, or call "
            "super().train_step.")
      return new, metrics

    train_step._advances_step = True
    cls.train_step = train_step

  def train_step(self, state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array
                 ) -> tuple[TrainState, dict[str, jax.Array]]:
    """One step: ``(state, batch, rng) -> (state, metrics)``, pure; jit/vmap it as you like.

    Checks the batch (:meth:`check_batch`: dtypes and shapes at trace time, values when
    concrete), makes :meth:`prepare`'s inputs, runs :meth:`phases` in order (see
    :func:`run_phases`) and advances ``state.step`` by one.
    """
    self.check_batch(batch)
    state, metrics = run_phases(self, state, batch, rng)
    return state.replace(step=state.step + 1), metrics

  @classmethod
  def from_config(cls, config, image_shape: Sequence[int]) -> "Model":
    """Builds the model a config describes, for images of ``image_shape``."""
    raise NotImplementedError(f"{cls.__name__} cannot be built from a config.")

  def phase(self, name: str) -> Phase:
    """The declared phase ``name``."""
    for p in self.phases():
      if p.name == name:
        return p
    raise KeyError(f"{type(self).__name__} has no phase {name!r}; phases: "
                   f"{[p.name for p in self.phases()]}.")

  def phase_paths(self) -> dict[str, tuple[str, ...]]:
    """Phase name -> the parameter paths it trains, in step order."""
    return {p.name: p.trains for p in self.phases()}

  def hparam_fields(self) -> dict[str, str]:
    """Hparam -> the config field that sets it: the sweepable fields of this model.

    A phase's rate ``lr_<phase>`` is set by the field the phase names
    (:attr:`Phase.lr_field`: ``learning_rate`` for the main phase,
    ``<phase>_learning_rate`` by default); every other hparam by the field of its name
    (``num_steps`` by the run's ``num_steps``).
    """
    by_lr = {p.lr_name: p.config_field for p in self.phases()}
    return {name: by_lr.get(name, name) for name in self.all_default_hparams()}

  # ---- state -----------------------------------------------------------------------------

  def all_default_hparams(self) -> dict[str, float]:
    """:meth:`default_hparams` plus ``clip_<phase>`` of the phases that clip."""
    phases = self.phases()
    if not isinstance(phases, (tuple, list)) or not all(isinstance(p, Phase) for p in phases):
      raise TypeError(f"{type(self).__name__}.phases() must return a tuple of core.Phase (name, "
                      f"trained paths, loss, ...), got {phases!r}.")
    return {**{f"clip_{p.name}": p.clip_norm for p in phases
               if p.clip_norm is not None}, **self.default_hparams()}

  def hparams(self, **overrides) -> dict[str, jax.Array]:
    """The default hparams with ``overrides``, as float32 arrays; unknown names fail.

    An override may be named as the hparam or as the config field that sets it
    (:meth:`hparam_fields`): ``learning_rate`` is the main phase's rate whatever the phase
    is called (``lr_recon`` in the AAE, ``lr_ae`` in the WAE and VAE), ``critic_learning_rate``
    the critic's ``lr_critic``.
    """
    defaults = self.all_default_hparams()
    by_field = {f: h for h, f in self.hparam_fields().items() if f != h}
    named = {}
    for k, v in overrides.items():
      h = by_field.get(k, k)
      if h in named:
        raise ValueError(f"hparam {h!r} given twice (as {h!r} and as its config field "
                         f"{self.hparam_fields()[h]!r}); give one.")
      named[h] = v
    unknown = set(named) - set(defaults)
    if unknown:
      aliases = "".join(f", {f} (= {h})" for f, h in sorted(by_field.items()))
      raise ValueError(f"unknown hparams {sorted(unknown)} for {type(self).__name__}; "
                       f"known: {', '.join(sorted(defaults))}{aliases}.")
    return {k: jnp.asarray(v, jnp.float32) for k, v in {**defaults, **named}.items()}

  def optimizer(self, phase: Phase | str | None = None) -> optax.GradientTransformation:
    """Adam's direction for ``phase`` (its betas, else the model's); the step size −lr and
    the clipping are applied by :func:`apply_gradients`."""
    if isinstance(phase, str):
      phase = self.phase(phase)
    b1 = self.adam_b1 if phase is None or phase.b1 is None else phase.b1
    b2 = self.adam_b2 if phase is None or phase.b2 is None else phase.b2
    return optax.scale_by_adam(b1=b1, b2=b2)

  def init(self, rng: jax.Array, hparams: Mapping[str, Any] | None = None) -> TrainState:
    """A fresh state: initialised networks, one optimizer state per phase, hparams.

    Runs op by op unless you jit it (the training loop runs ``jax.jit(model.init)``;
    for conv nets that is much faster than eager init).
    """
    hp = self.hparams(**(hparams or {}))
    nets, phases = self.networks(), self.phases()
    check_phases(phases, list(nets))
    missing = {p.lr_name for p in phases} - set(hp)
    if missing:
      raise ValueError(f"{type(self).__name__} lacks the learning rates {sorted(missing)}.")
    params, model_state = {}, {}
    init_rng, state_rng = jax.random.split(rng)
    for i, (name, (module, shapes)) in enumerate(sorted(nets.items())):
      inputs = [jnp.zeros(s, jnp.float32) for s in shapes]
      variables = module.init(jax.random.fold_in(init_rng, i), *inputs)
      params[name] = variables["params"]
      rest = {k: v for k, v in variables.items() if k != "params"}
      if rest:
        model_state[name] = rest
    opt_state = {p.name: self.optimizer(p).init(select(params, p.trains)) for p in phases}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state,
                      model_state=model_state, hparams=hp, rng=state_rng)

  def apply(self, name: str, params: Params, model_state: Mapping, *inputs, train: bool,
            rngs: Mapping[str, jax.Array] | None = None):
    """Applies network ``name``; returns (output, model_state updated if training).

    ``rngs`` are the module's rngs (e.g. ``{"dropout": key}``).
    """
    module = self.networks()[name][0]
    variables = {"params": params[name], **model_state.get(name, {})}
    if train and model_state.get(name):
      out, updates = module.apply(variables, *inputs, train=True, mutable=list(model_state[name]),
                                  rngs=rngs)
      return out, {**model_state, name: updates}
    return module.apply(variables, *inputs, train=train, rngs=rngs), model_state
