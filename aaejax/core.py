"""The small core every model family builds on: state, networks, phases, hparams, streams.

A model is a static Python object holding

- named **networks** (:meth:`Model.networks`: name -> linen module and the
  shapes of its example inputs);
- named **phases** (:meth:`Model.phases`: name -> the parameters it trains),
  each one optimizer update per step with its own optimizer state and its own
  learning rate ``hparams["lr_<phase>"]``;
- default **hparams** (:meth:`Model.default_hparams`): every number a sweep may
  vary, stored as float32 arrays in the state, never as trace constants;
- a pure **train step** ``(state, batch, rng) -> (state, metrics)``, usable under
  the caller's own ``jax.jit`` and ``jax.vmap``;
- declared **capabilities** (:meth:`Model.capabilities`), from which evaluators
  (:mod:`aaejax.evaluation`) and figures (:mod:`aaejax.figures`) are chosen, and
  the extra data **streams** it needs besides the training batch.

A phase trains whole networks (``"critic"``) or parts of one, named by a path
into its parameters (``"critic/q_head"``): in the style of
``optax.multi_transform``'s labels, but by name, so that two phases may share a
network and train different parts of it (InfoGAN's Q head on the critic's
trunk). :func:`update` and :func:`apply_gradients` are the phase update every
model uses.

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
  ...   def phases(self): return {"head": ("net/head",)}
  ...   def default_hparams(self): return {"lr_head": 0.1}
  ...   def train_step(self, state, batch, rng):
  ...     loss = lambda p: (jnp.mean(self.apply("net", p, {}, batch["x"], train=True)[0] ** 2),
  ...                       ({}, state.model_state))
  ...     state, metrics = core.update(self, state, "head", loss)
  ...     return state.replace(step=state.step + 1), metrics
  >>> model = Probe()
  >>> state = model.init(jax.random.key(0))
  >>> new, _ = model.train_step(state, {"x": jnp.ones((2, 3))}, jax.random.key(1))
  >>> changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params, new.params)
  >>> changed["net"]["trunk"]["kernel"], changed["net"]["head"]["kernel"]
  (False, True)
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

Params = Mapping[str, Any]
LossFn = Callable[[Params], tuple[jax.Array, tuple[dict, dict]]]

# What a model can do (:meth:`Model.capabilities`); each names the methods it guarantees.
ENCODE = "encode"            # encode(state, images) -> heads; latent(heads) -> (n, d) codes
DECODE = "decode"            # decode(state, codes) -> images; decoder_input_dim()
RECONSTRUCT = "reconstruct"  # reconstruction_loss(state, batch) -> (n,); reconstruct(...)
GENERATE = "generate"        # generate(state, rng, n) -> images in [0, 1]
PRIOR = "prior"              # .prior; sample_prior(state, rng, n, labels=None) -> codes
LIKELIHOOD = "likelihood"    # neg_elbo(state, x, rng) -> (n,); log_weights(state, x, rng, k)
CLASSIFY = "classify"        # encoder heads hold "y_logits" of the labels (trained with labels)
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

  Each step the loop draws ``batch_size`` examples uniformly (with replacement)
  from ``select(train, seed)`` (host arrays with a common leading axis) with the
  key ``fold_in(step_rng, 1 + i)``, ``i`` the stream's index in sorted name
  order, and adds them to the batch as ``<name>_<key>`` (e.g.
  ``labeled_image``). The draw depends only on the run's key and the step, so
  resuming is exact.
  """

  batch_size: int
  select: Callable[[Mapping[str, np.ndarray], int], dict[str, np.ndarray]]


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


# ---- the model -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Model:
  """Base class of every model: networks, phases, hparams, a train step.

  Subclasses define :meth:`networks`, :meth:`phases`, :meth:`default_hparams`,
  :meth:`train_step`, and usually :meth:`capabilities`, :meth:`streams` and
  :meth:`from_config`. Models are compared by identity (usable as static jit
  arguments).

  Attributes:
    adam_b1, adam_b2: Adam's betas, shared by every phase.
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

  def phases(self) -> dict[str, tuple[str, ...]]:
    """Phase name -> the parameter paths it trains; the first phase is the main one."""
    raise NotImplementedError

  def default_hparams(self) -> dict[str, float]:
    """Hparam name -> default value; holds ``lr_<phase>`` for every phase."""
    raise NotImplementedError

  def capabilities(self) -> frozenset[str]:
    """What this model can do (see the constants of this module)."""
    return frozenset()

  def streams(self) -> dict[str, Stream]:
    """Extra data streams of each step (see :class:`Stream`); none by default."""
    return {}

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

    Images (``"image"``, ``"<stream>_image"``) must be ``(n, *image_shape)``, n >= 1, uint8 or
    float in [0, 1]; the labels the model reads (:meth:`label_fields`) integers of their
    range. Dtypes and shapes are checked always, values when concrete. Every train step
    calls it on its batch (at trace time: dtypes and shapes); the training loop calls it on
    the host data once, before training, where the values are checked.
    """
    check_batch(batch, getattr(self, "image_shape", None), self.label_fields(), where=where)

  def train_step(self, state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array
                 ) -> tuple[TrainState, dict[str, jax.Array]]:
    """One step: ``(state, batch, rng) -> (state, metrics)``, pure; jit/vmap it as you like.

    The batch is checked by :meth:`check_batch` (dtypes and shapes at trace time, values
    when concrete).
    """
    raise NotImplementedError

  @classmethod
  def from_config(cls, config, image_shape: Sequence[int]) -> "Model":
    """Builds the model a config describes, for images of ``image_shape``."""
    raise NotImplementedError(f"{cls.__name__} cannot be built from a config.")

  def hparam_fields(self) -> dict[str, str]:
    """Hparam -> the config field that sets it: the sweepable fields of this model.

    The first (main) phase's rate is ``learning_rate``, another phase's
    ``<phase>_learning_rate``; every other hparam is set by the field of its name.
    """
    main = next(iter(self.phases()))
    fields = {}
    for name in self.default_hparams():
      if name == f"lr_{main}":
        fields[name] = "learning_rate"
      elif name.startswith("lr_"):
        fields[name] = f"{name[3:]}_learning_rate"
      else:
        fields[name] = name
    return fields

  # ---- state -----------------------------------------------------------------------------

  def hparams(self, **overrides) -> dict[str, jax.Array]:
    """The default hparams with ``overrides``, as float32 arrays; unknown names fail."""
    defaults = self.default_hparams()
    unknown = set(overrides) - set(defaults)
    if unknown:
      raise ValueError(f"unknown hparams {sorted(unknown)} for {type(self).__name__}; "
                       f"known: {sorted(defaults)}.")
    return {k: jnp.asarray(v, jnp.float32) for k, v in {**defaults, **overrides}.items()}

  @property
  def optimizer(self) -> optax.GradientTransformation:
    """Adam's direction; the step size −lr is applied by :func:`apply_gradients`."""
    return optax.scale_by_adam(b1=self.adam_b1, b2=self.adam_b2)

  def init(self, rng: jax.Array, hparams: Mapping[str, Any] | None = None) -> TrainState:
    """A fresh state: initialised networks, one optimizer state per phase, hparams.

    Runs op by op unless you jit it (the training loop runs ``jax.jit(model.init)``;
    for conv nets that is much faster than eager init).
    """
    hp = self.hparams(**(hparams or {}))
    nets, phases = self.networks(), self.phases()
    check_paths(phases, list(nets))
    missing = {f"lr_{p}" for p in phases} - set(hp)
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
    opt_state = {p: self.optimizer.init(select(params, paths)) for p, paths in phases.items()}
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


# ---- the phase update --------------------------------------------------------------------


def apply_gradients(model: Model, state: TrainState, phase: str, grads: Params) -> TrainState:
  """One optimizer update of the parameters ``phase`` trains, with ``grads`` of them.

  ``grads`` has the structure :func:`select` gives for the phase's paths; the
  step size is ``hparams["lr_<phase>"]`` times the model's schedule.
  """
  trained = select(state.params, model.phases()[phase])
  if jax.tree.structure(grads) != jax.tree.structure(trained):
    raise ValueError(f"phase {phase!r} trains {model.phases()[phase]}; the gradients have "
                     f"another structure (top-level keys {sorted(grads)}).")
  direction, opt_state = model.optimizer.update(grads, state.opt_state[phase], trained)
  lr = state.hparams[f"lr_{phase}"] * model.lr_schedule(state.step)
  trained = jax.tree.map(lambda p, u: p - lr * u, trained, direction)
  return state.replace(params=merge(state.params, trained),
                       opt_state={**state.opt_state, phase: opt_state})


def update(model: Model, state: TrainState, phase: str, loss_fn: LossFn
           ) -> tuple[TrainState, dict]:
  """One update of ``phase`` on ``loss_fn``: returns ``(new_state, metrics)``.

  ``loss_fn(params) -> (loss, (metrics, model_state))`` sees all parameters,
  those of the phase differentiable; the returned model_state (batch-norm
  statistics) replaces the state's. The update runs under ``jax.named_scope(phase)``,
  which names it in jaxprs, HLO and profiles (:mod:`aaejax.flops` counts per phase).
  """
  with jax.named_scope(phase):
    trained = select(state.params, model.phases()[phase])
    grad_fn = jax.value_and_grad(lambda p: loss_fn(merge(state.params, p)), has_aux=True)
    (_, (metrics, model_state)), grads = grad_fn(trained)
    state = apply_gradients(model, state, phase, grads)
  return state.replace(model_state=model_state), metrics


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
                labels: int | LabelFields | None = None, *, where: str = "batch") -> None:
  """Checks a batch, or a whole data set (arrays with a common leading axis), before use.

  ``batch["image"]`` is required; it and every ``"<stream>_image"`` are checked by
  :func:`check_images`. ``labels`` says which label arrays to check (:func:`check_labels`,
  against their images' count): an int K checks ``"label"`` and every ``"<stream>_label"``
  against [0, K); a mapping ``{key: (K, unlabelled_ok)}`` checks those keys (if present);
  None checks none. Call it on host data once (at load time) to find bad values before
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
      counts[key[:-len("image")]] = check_images(batch[key], image_shape, key, where).shape[0]
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
