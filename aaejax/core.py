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
  (:mod:`aaejax.evaluation`) and figures (:mod:`aaejax.figures`) are chosen, and
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
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.extend import core as jax_core

Params = Mapping[str, Any]
LossFn = Callable[[Params], tuple[jax.Array, tuple[dict, dict]]]

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


@struct.dataclass
class TrainState:
  """The whole training state: a plain pytree.

  Attributes:
    step: int32 scalar, the number of train steps done.
    params: network name -> parameters.
    opt_state: phase name -> optimizer state of the parameters it trains.
    model_state: network name -> non-parameter variables (batch-norm statistics);
      empty for networks without any.
    hparams: name -> float32 scalar: learning rates ``lr_<phase>``, loss
      weights, prior and kernel scales. Arrays, never trace constants.
    rng: the run's base key; step t uses ``fold_in(rng, t)``.
  """

  step: jax.Array
  params: dict
  opt_state: dict
  model_state: dict
  hparams: dict
  rng: jax.Array


@dataclasses.dataclass(frozen=True)
class Stream:
  """An extra data stream a model's step needs besides the training batch.

  A stream has its own source: the data set ``dataset`` (None: the run's own) and its
  ``split``, transformed by ``select(arrays, seed)`` (host arrays with a common leading axis
  -> the arrays to draw from; None keeps them all), e.g. a labelled subset
  (:func:`aaejax.data.labeled_subset`), the unlabelled rest, or a second domain's images
  with their labels dropped. Each step the loop draws ``batch_size`` examples uniformly
  (with replacement) from them with the key ``fold_in(step_rng, 1 + i)``, ``i`` the
  stream's index in sorted name order, and adds them to the batch as ``<name>_<key>``
  (e.g. ``labeled_image``). The draw depends only on the run's key and the step, so
  resuming is exact. ``image_shape`` is the shape of the stream's images where it differs
  from the model's (a second domain in colour).
  """

  batch_size: int
  select: Callable[[Mapping[str, np.ndarray], int], dict[str, np.ndarray]] | None = None
  dataset: str | None = None
  split: str = "train"
  image_shape: tuple[int, ...] | None = None

  def arrays(self, source: Mapping[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """The arrays the stream draws from, given its source's arrays."""
    return dict(source) if self.select is None else self.select(source, seed)


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


def optimizer_fields(config) -> dict[str, Any]:
  """The :class:`Model` fields a config sets for every model: Adam's betas, the schedule,
  the compute dtype."""
  return dict(adam_b1=config.get("adam_b1", 0.9), adam_b2=config.get("adam_b2", 0.999),
              lr_schedule=lr_schedule(config),
              compute_dtype=config.get("compute_dtype", "float32"))


# ---- parameter paths -------------------------------------------------------------------


def _split(path: str) -> list[str]:
  return [p for p in path.split("/") if p]


def select(params: Params, paths: Sequence[str]) -> dict:
  """The sub-tree of ``params`` named by ``paths`` (``"net"`` or ``"net/sub/..."``), nested."""
  out: dict = {}
  for path in paths:
    keys, node, target = _split(path), params, out
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
    split = [_split(p) for p in paths]
    for s, path in zip(split, paths):
      if not s or s[0] not in network_names:
        raise ValueError(f"phase {phase!r} trains {path!r}, not a network of this model; "
                         f"networks: {sorted(network_names)}.")
    for i, a in enumerate(split):
      for b in split[i + 1:]:
        if a[:len(b)] == b or b[:len(a)] == a:
          raise ValueError(f"phase {phase!r} names overlapping parameters: {paths}.")


# ---- phases --------------------------------------------------------------------------------


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


# ---- the model -------------------------------------------------------------------------


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
    compute_dtype: ``"float32"`` or ``"bfloat16"``: the dtype of the networks' activations,
      matmuls and convolutions (:mod:`aaejax.networks`; from_config builds them so).
      Parameters, optimizer states, batch-norm statistics and losses stay float32.
  """

  adam_b1: float = 0.9
  adam_b2: float = 0.999
  lr_schedule: Callable[[jax.Array], Any] = constant_schedule
  compute_dtype: str = "float32"

  @property
  def dtype(self):
    """The jnp dtype of :attr:`compute_dtype` (a clear error for an unknown name)."""
    from aaejax import networks
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
    """The family's own figures (:class:`aaejax.figures.Figure`), drawn besides the shared
    ones its capabilities pick; none by default."""
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
    """The default hparams with ``overrides``, as float32 arrays; unknown names fail."""
    defaults = self.all_default_hparams()
    unknown = set(overrides) - set(defaults)
    if unknown:
      raise ValueError(f"unknown hparams {sorted(unknown)} for {type(self).__name__}; "
                       f"known: {sorted(defaults)}.")
    return {k: jnp.asarray(v, jnp.float32) for k, v in {**defaults, **overrides}.items()}

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


def check_phases(phases: Sequence[Phase], network_names: Sequence[str]) -> None:
  """Phases are :class:`Phase` objects of distinct names, each training parameters of known
  networks, none twice (:func:`check_paths`)."""
  names = [getattr(p, "name", None) for p in phases]
  if not phases or not all(isinstance(p, Phase) for p in phases):
    raise ValueError(f"phases() must return a non-empty sequence of core.Phase, got {phases!r}.")
  if len(set(names)) != len(names):
    raise ValueError(f"phase names must be distinct, got {names}.")
  check_paths({p.name: p.trains for p in phases}, network_names)


# ---- the phase update --------------------------------------------------------------------


def _phase(model: Model, phase: Phase | str) -> Phase:
  return model.phase(phase) if isinstance(phase, str) else phase


def learning_rate(model: Model, state: TrainState, phase: Phase | str) -> jax.Array:
  """The step size of ``phase`` now: ``lr_<phase>`` × the model's step schedule × the
  phase's progress schedule."""
  phase = _phase(model, phase)
  lr = state.hparams[phase.lr_name] * model.lr_schedule(state.step)
  if phase.schedule is not None:
    lr = lr * phase.schedule(progress(state), state.hparams)
  return lr


def apply_gradients(model: Model, state: TrainState, phase: Phase | str, grads: Params
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


def update(model: Model, state: TrainState, phase: Phase | str, loss_fn: LossFn
           ) -> tuple[TrainState, dict]:
  """One update of ``phase`` on ``loss_fn``: returns ``(new_state, metrics)``.

  ``loss_fn(params) -> (loss, (metrics, model_state))`` sees all parameters,
  those of the phase differentiable; the returned model_state (batch-norm
  statistics) replaces the state's. The update runs under ``jax.named_scope(phase)``,
  which names it in jaxprs, HLO and profiles (:mod:`aaejax.flops` counts per phase).
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
  return sorted({_split(path)[0] for p in phases for path in p.trains})


def _read_by(fn: Callable[[Params], Any], params: Params) -> set[str]:
  """The top-level names of ``params`` whose leaves ``fn(params)`` reads (traced, not run)."""
  jaxpr = jax.make_jaxpr(fn)(params).jaxpr
  used = {v for eqn in jaxpr.eqns for v in eqn.invars if isinstance(v, jax_core.Var)}
  used |= {v for v in jaxpr.outvars if isinstance(v, jax_core.Var)}
  paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  return {path[0].key for path, var in zip(paths, jaxpr.invars) if var in used}


def run_phases(model: Model, state: TrainState, batch: Mapping[str, Any], rng: jax.Array
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
          read = [path for path in phase.trains if _split(path)[0] in nets]
          through = select(pull_back(shared_grads)[0], read)
          grads = merge(grads, jax.tree.map(jnp.add, select(grads, read), through))
        state = apply_gradients(model, state, phase, grads)
        state = state.replace(model_state=model_state)
      metrics.update(m)
  return state, metrics


# ---- inputs ------------------------------------------------------------------------------
#
# What is checked when: dtypes and shapes always, at trace time too (under the caller's
# ``jax.jit`` or ``jax.vmap`` as well as eagerly); values (the float range of images, the range
# of labels) only where the arrays are concrete: numpy arrays or jax arrays outside any trace
# (:func:`is_concrete`). A jitted step therefore costs nothing more and never syncs with the
# host; check the host data once before training with :meth:`Model.check_batch` (or
# :func:`check_batch`), which is what catches bad values there.


def is_concrete(x) -> bool:
  """Whether the values of ``x`` can be read now: not a tracer, and all on this process.

  >>> import jax, numpy as np
  >>> seen = []
  >>> _ = jax.jit(lambda x: seen.append(is_concrete(x)) or x)(np.zeros(2))
  >>> is_concrete(np.zeros(2)), seen
  (True, [False])
  """
  return not isinstance(x, jax.core.Tracer) and getattr(x, "is_fully_addressable", True)


def _as_array(x, label: str):
  if hasattr(x, "shape") and hasattr(x, "dtype"):
    return x
  try:
    return np.asarray(x)
  except (TypeError, ValueError) as e:
    raise TypeError(f"{label} must be an array, got {type(x).__name__} ({e}).") from None


def _label(name: str, where: str | None) -> str:
  return f"{where}['{name}']" if where else name


def _min_max(x) -> tuple[float, float]:
  if isinstance(x, np.ndarray):
    return float(np.min(x)), float(np.max(x))
  lo, hi = jax.device_get((jnp.min(x), jnp.max(x)))
  return float(lo), float(hi)


def check_images(images, image_shape: Sequence[int] | None = None, name: str = "image",
                 where: str | None = "batch"):
  """Checks a batch of images: ``(n, *image_shape)``, n >= 1, uint8 or float in [0, 1].

  Shapes and dtypes are checked always (at trace time under ``jax.jit``/``jax.vmap``), the
  float range only when the values are concrete (:func:`is_concrete`). Returns the images (an
  array). ``name`` and ``where`` name them in errors: ``where['name']``, or ``name`` alone when
  ``where`` is None (an argument).

  >>> check_images(np.full((1, 2, 2, 1), 255.0), (2, 2, 1))
  Traceback (most recent call last):
  ValueError: batch['image']: float images must be in [0, 1], got values up to 255 — divide by 255 (or pass uint8).
  """
  label = _label(name, where)
  images = _as_array(images, label)
  shape = tuple(images.shape)
  if image_shape is not None and (len(shape) != 1 + len(image_shape)
                                  or shape[1:] != tuple(image_shape)):
    raise ValueError(f"{label} has shape {shape}; the model expects "
                     f"(n, {', '.join(map(str, image_shape))}).")
  if not shape:
    raise ValueError(f"{label} is a scalar; expected a batch of images (n, H, W, C).")
  if shape[0] == 0:
    raise ValueError(f"{label} is empty (batch dimension 0); expected at least one image.")
  if images.dtype == jnp.uint8:
    return images
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise ValueError(f"{label} has dtype {images.dtype}; expected uint8 (0..255) or float in "
                     "[0, 1].")
  if is_concrete(images):
    lo, hi = _min_max(images)
    if np.isnan(lo) or np.isnan(hi):
      raise ValueError(f"{label} contains NaN; expected float images in [0, 1].")
    if hi > 1:
      hint = " — divide by 255 (or pass uint8)" if hi <= 255 and lo >= 0 else ""
      raise ValueError(f"{label}: float images must be in [0, 1], got values up to {hi:g}{hint}.")
    if lo < 0:
      hint = " — in [-1, 1]? map them with (x + 1) / 2" if lo >= -1 else ""
      raise ValueError(f"{label}: float images must be in [0, 1], got values down to "
                       f"{lo:g}{hint}.")
  return images


def image_inputs(images: jax.Array, image_shape: Sequence[int], name: str = "image",
                 where: str | None = "batch") -> jax.Array:
  """Float32 images in [0, 1] from uint8 (÷255) or float images of ``image_shape``.

  Checked by :func:`check_images` first: shape, dtype and non-empty batch always, the float
  range where the values are concrete.
  """
  images = check_images(images, image_shape, name, where)
  if images.dtype == jnp.uint8:
    return jnp.asarray(images).astype(jnp.float32) / 255.0
  return jnp.asarray(images).astype(jnp.float32)


def check_labels(labels, num_classes: int, name: str = "label", where: str | None = "batch",
                 n: int | None = None, unlabelled_ok: bool = False):
  """Checks integer labels: shape ``(n,)``, integer dtype, values in [0, num_classes).

  With ``unlabelled_ok``, −1 (unlabelled) is allowed too. Shapes and dtypes are checked
  always, values only when concrete (:func:`is_concrete`). Returns the labels (an array).

  >>> check_labels(np.array([3, 10]), 10)
  Traceback (most recent call last):
  ValueError: batch['label'] holds labels from 3 to 10; expected integers in [0, 10).
  """
  label = _label(name, where)
  labels = _as_array(labels, label)
  if labels.ndim != 1 or (n is not None and labels.shape[0] != n):
    expected = f"({n},), one label per image" if n is not None else "(n,)"
    raise ValueError(f"{label} has shape {tuple(labels.shape)}; expected {expected}.")
  allowed = f"[0, {num_classes})" + (" or -1 (unlabelled)" if unlabelled_ok else "")
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f"{label} has dtype {labels.dtype}; expected integer labels in {allowed}.")
  if labels.shape[0] and is_concrete(labels):
    lo, hi = _min_max(labels)
    if lo < (-1 if unlabelled_ok else 0) or hi >= num_classes:
      raise ValueError(f"{label} holds labels from {lo:.0f} to {hi:.0f}; expected integers in "
                       f"{allowed}.")
  return labels


def check_codes(z, dim: int, name: str = "z"):
  """Checks decoder inputs: float ``(n, dim)``, n >= 1 (shapes and dtypes; trace time too)."""
  z = _as_array(z, name)
  if z.ndim != 2 or z.shape[-1] != dim:
    raise ValueError(f"{name} has shape {tuple(z.shape)}; expected (n, {dim}).")
  if z.shape[0] == 0:
    raise ValueError(f"{name} is empty (batch dimension 0); expected at least one code.")
  if not jnp.issubdtype(z.dtype, jnp.floating):
    raise ValueError(f"{name} has dtype {z.dtype}; expected floats.")
  return z


def check_count(n, name: str = "n") -> int:
  """``n`` as a positive int (a number of samples), else a clear error."""
  if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
    raise ValueError(f"{name} must be a positive int (a number of samples), got {n!r}.")
  return int(n)


LabelFields = Mapping[str, tuple[int, bool]]


def check_batch(batch: Mapping[str, Any], image_shape: Sequence[int] | None = None,
                labels: int | LabelFields | None = None, *, where: str = "batch",
                image_shapes: Mapping[str, Sequence[int]] | None = None) -> None:
  """Checks a batch, or a whole data set (arrays with a common leading axis), before use.

  ``batch["image"]`` is required; it and every ``"<stream>_image"`` are checked by
  :func:`check_images`. ``labels`` says which label arrays to check (:func:`check_labels`,
  against their images' count): an int K checks ``"label"`` and every ``"<stream>_label"``
  against [0, K); a mapping ``{key: (K, unlabelled_ok)}`` checks those keys (if present);
  None checks none. ``image_shapes`` gives the shape of image arrays other than
  ``image_shape`` by key (a stream of another domain). Call it on host data once (at load time) to find bad values before
  training: the jitted steps check shapes and dtypes only.

  >>> check_batch({"image": np.zeros((0, 2, 2, 1), np.uint8)}, (2, 2, 1), where="train")
  Traceback (most recent call last):
  ValueError: train['image'] is empty (batch dimension 0); expected at least one image.
  """
  if not isinstance(batch, Mapping):
    raise TypeError(f"{where} must be a dict of arrays with key 'image', got "
                    f"{type(batch).__name__}.")
  if "image" not in batch:
    raise ValueError(f"{where} has no 'image' (keys: {sorted(batch)}); expected {where}['image']"
                     " of shape (n, H, W, C).")
  counts = {}
  for key in sorted(batch):
    if key == "image" or key.endswith("_image"):
      shape = (image_shapes or {}).get(key, image_shape)
      counts[key[:-len("image")]] = check_images(batch[key], shape, key, where).shape[0]
  if labels is None:
    return
  if isinstance(labels, Mapping):
    fields = dict(labels)
  else:
    fields = {k: (int(labels), False) for k in batch if k == "label" or k.endswith("_label")}
  for key, (num_classes, unlabelled_ok) in sorted(fields.items()):
    if key in batch:
      check_labels(batch[key], num_classes, key, where, n=counts.get(key[:-len("label")]),
                   unlabelled_ok=unlabelled_ok)
