"""What every autoencoder family shares: the train state, networks, phases, evaluation.

A model is a static Python object (networks, prior, loss choices); everything
that changes during training or that a sweep may vary lives in the
:class:`TrainState` pytree. Train steps are pure functions
``(state, batch, rng) -> (state, metrics)``, usable under the caller's own
``jax.jit`` and ``jax.vmap``.

A *phase* is one optimizer update of a subset of the networks on one loss (the
AAE paper alternates a reconstruction phase and a regularization phase made of a
critic phase and a generator phase). Each phase has its own Adam state; its
learning rate is ``state.hparams["lr_<phase>"]`` (an array, so sweepable) times
the model's step schedule.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from aaejax import networks, priors as priors_lib
from aaejax.data import to_float

Params = Mapping[str, Any]
LossFn = Callable[[Params], tuple[jax.Array, tuple[dict, dict]]]

POSTERIORS = ("deterministic", "gaussian")


@struct.dataclass
class TrainState:
  """The whole training state: a plain pytree.

  Attributes:
    step: int32 scalar, the number of train steps done.
    params: network name -> parameters.
    opt_state: phase name -> optimizer state.
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


def constant_schedule(step):
  del step
  return 1.0


@dataclasses.dataclass(frozen=True, eq=False)
class Autoencoder:
  """Base class: an encoder, a decoder, a prior, and the phases of a train step.

  Subclasses set ``PHASES`` (phase name -> trained networks), add networks in
  :meth:`extra_networks`, declare defaults in ``DEFAULT_HPARAMS`` and write
  :meth:`train_step`.

  Attributes:
    image_shape: (H, W, C) of the data.
    latent_dim: code dimension d.
    prior: a prior object (see :mod:`aaejax.priors`) or a prior name.
    encoder, decoder: linen modules; default the AAE paper's MLPs (two hidden
      layers of 1000 ReLU units). The encoder returns a dict of heads (see
      :mod:`aaejax.networks`).
    posterior: ``"deterministic"`` (default) or ``"gaussian"`` (reparameterised
      q(z|x) = N(μ(x), σ²(x))).
    recon_loss: ``"bernoulli"`` (default) or ``"gaussian"``.
    adam_b1, adam_b2: Adam's betas, shared by every phase.
    lr_schedule: ``step -> multiplier`` of every phase's learning rate.
  """

  PHASES: ClassVar[Mapping[str, Sequence[str]]] = {}
  DEFAULT_HPARAMS: ClassVar[Mapping[str, float]] = {}

  image_shape: tuple[int, ...]
  latent_dim: int
  prior: Any = "gaussian"
  encoder: nn.Module | None = None
  decoder: nn.Module | None = None
  posterior: str = "deterministic"
  recon_loss: str = "bernoulli"
  adam_b1: float = 0.9
  adam_b2: float = 0.999
  lr_schedule: Callable[[jax.Array], Any] = constant_schedule
  num_categories: int = 0  # size of the encoder's categorical head (label-aware AAEs)

  def __post_init__(self):
    if len(self.image_shape) != 3:
      raise ValueError(f"image_shape must be (H, W, C), got {self.image_shape}.")
    if self.posterior not in POSTERIORS:
      raise ValueError(f"unknown posterior {self.posterior!r}; expected one of {POSTERIORS}.")
    if self.recon_loss not in networks.RECON_LOSSES:
      raise ValueError(
          f"unknown recon_loss {self.recon_loss!r}; expected one of {networks.RECON_LOSSES}.")
    prior = priors_lib.get(self.prior, dim=self.latent_dim)
    if getattr(prior, "dim", self.latent_dim) != self.latent_dim:
      raise ValueError(f"prior dim {prior.dim} != latent_dim {self.latent_dim}.")
    set_ = lambda k, v: object.__setattr__(self, k, v)
    set_("prior", prior)
    set_("image_shape", tuple(self.image_shape))
    if self.encoder is None:
      set_("encoder", networks.MLPEncoder(self.latent_dim, gaussian=self.posterior == "gaussian",
                                          num_categories=self.num_categories))
    if self.decoder is None:
      set_("decoder", networks.MLPDecoder(self.image_shape))

  # ---- what subclasses customise -------------------------------------------------

  def extra_networks(self) -> dict[str, tuple[nn.Module, tuple]]:
    """Networks besides encoder/decoder: name -> (module, example inputs)."""
    return {}

  def decoder_input_dim(self) -> int:
    return self.latent_dim

  def train_step(self, state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array):
    raise NotImplementedError

  # ---- state ---------------------------------------------------------------------

  def all_networks(self) -> dict[str, tuple[nn.Module, tuple]]:
    """Every network: name -> (module, example inputs for init)."""
    x = jnp.zeros((2, *self.image_shape), jnp.float32)
    z = jnp.zeros((2, self.decoder_input_dim()), jnp.float32)
    return {"encoder": (self.encoder, (x,)), "decoder": (self.decoder, (z,)),
            **self.extra_networks()}

  def hparams(self, **overrides) -> dict[str, jax.Array]:
    """The default hparams with ``overrides``, as float32 arrays; unknown names fail."""
    unknown = set(overrides) - set(self.DEFAULT_HPARAMS)
    if unknown:
      raise ValueError(f"unknown hparams {sorted(unknown)} for {type(self).__name__}; "
                       f"known: {sorted(self.DEFAULT_HPARAMS)}.")
    merged = {**self.DEFAULT_HPARAMS, **overrides}
    return {k: jnp.asarray(v, jnp.float32) for k, v in merged.items()}

  @property
  def optimizer(self) -> optax.GradientTransformation:
    """Adam's direction; the step size -lr is applied by :meth:`phase`."""
    return optax.scale_by_adam(b1=self.adam_b1, b2=self.adam_b2)

  def init(self, rng: jax.Array, hparams: Mapping[str, Any] | None = None) -> TrainState:
    """A fresh state: initialised networks, optimizer states, hparams."""
    hp = self.hparams(**(hparams or {}))
    params, model_state = {}, {}
    nets = self.all_networks()
    init_rng, state_rng = jax.random.split(rng)
    for i, (name, (module, inputs)) in enumerate(sorted(nets.items())):
      variables = module.init(jax.random.fold_in(init_rng, i), *inputs)
      params[name] = variables["params"]
      rest = {k: v for k, v in variables.items() if k != "params"}
      if rest:
        model_state[name] = rest
    opt_state = {}
    for phase, names in self.PHASES.items():
      opt_state[phase] = self.optimizer.init({k: params[k] for k in names})
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state,
                      model_state=model_state, hparams=hp, rng=state_rng)

  # ---- building blocks of train steps ----------------------------------------------

  def apply(self, name: str, params: Params, model_state: Mapping, *inputs, train: bool):
    """Applies network ``name``; returns (output, model_state updated if training)."""
    module = getattr(self, name) if name in ("encoder", "decoder") else self.extra_networks()[name][0]
    variables = {"params": params[name], **model_state.get(name, {})}
    if train and model_state.get(name):
      out, updates = module.apply(variables, *inputs, train=True, mutable=list(model_state[name]))
      return out, {**model_state, name: updates}
    return module.apply(variables, *inputs, train=train), model_state

  def encode_heads(self, params, model_state, x, rng, train=True):
    """Encoder heads with ``"z"`` sampled from q(z|x) (its mean if deterministic)."""
    heads, model_state = self.apply("encoder", params, model_state, x, train=train)
    if self.posterior == "gaussian":
      heads = dict(heads, z_mean=heads["z"], z=heads["z"] + jnp.exp(0.5 * heads["z_logvar"])
                   * jax.random.normal(rng, heads["z"].shape, heads["z"].dtype))
    return heads, model_state

  def reconstruction(self, params, model_state, x, z):
    """Mean reconstruction loss of ``x`` from decoder input ``z`` (not yet weighted)."""
    logits, model_state = self.apply("decoder", params, model_state, z, train=True)
    return jnp.mean(networks.reconstruction_loss(logits, x, self.recon_loss)), model_state

  def critic_logits(self, state, params, z, rng, cond=None, name="critic"):
    """Logits of critic ``name`` on ``z`` plus ``critic_noise`` gaussian noise, given ``cond``."""
    z = z + state.hparams["critic_noise"] * jax.random.normal(rng, z.shape, z.dtype)
    return self.apply(name, params, {}, z, cond, train=True)[0]

  def sample_prior(self, state, rng, n, labels=None):
    return state.hparams["prior_scale"] * self.prior.sample(rng, n, labels)

  def phase(self, state: TrainState, phase: str, loss_fn: LossFn):
    """One update of the networks of ``phase`` on ``loss_fn``.

    ``loss_fn(params) -> (loss, (metrics, model_state))`` sees all params, with
    the phase's networks differentiable; the returned model_state (batch-norm
    statistics) replaces the state's. Returns ``(new_state, metrics)``.
    """
    # The scope names the phase in jaxprs, HLO metadata and profiles (aaejax.flops
    # counts FLOPs per phase with it).
    with jax.named_scope(phase):
      trained = {k: state.params[k] for k in self.PHASES[phase]}
      grad_fn = jax.value_and_grad(lambda p: loss_fn({**state.params, **p}), has_aux=True)
      (_, (metrics, model_state)), grads = grad_fn(trained)
      state = self.apply_gradients(state, phase, grads)
    return state.replace(model_state=model_state), metrics

  def apply_gradients(self, state: TrainState, phase: str, grads: Params) -> TrainState:
    """One Adam update of the networks of ``phase`` with ``grads`` (name -> gradients)."""
    names = self.PHASES[phase]
    if set(grads) != set(names):
      raise ValueError(f"phase {phase!r} trains {sorted(names)}, got gradients of {sorted(grads)}.")
    trained = {k: state.params[k] for k in names}
    direction, opt_state = self.optimizer.update(grads, state.opt_state[phase], trained)
    lr = state.hparams[f"lr_{phase}"] * self.lr_schedule(state.step)
    trained = jax.tree.map(lambda p, u: p - lr * u, trained, direction)
    return state.replace(params={**state.params, **trained},
                         opt_state={**state.opt_state, phase: opt_state})

  def _inputs(self, batch):
    image = batch["image"]
    if tuple(image.shape[1:]) != self.image_shape:
      raise ValueError(f"batch images have shape {image.shape[1:]}, model expects {self.image_shape}.")
    return to_float(image) if image.dtype == jnp.uint8 else image.astype(jnp.float32)

  # ---- inference -------------------------------------------------------------------

  def encode(self, state: TrainState, images: jax.Array) -> dict[str, jax.Array]:
    """Encoder heads in inference mode (``"z"`` is the posterior mean)."""
    batch = {"image": images}
    heads, _ = self.apply("encoder", state.params, state.model_state, self._inputs(batch),
                          train=False)
    return heads

  def latent(self, heads: Mapping[str, jax.Array]) -> jax.Array:
    """The code plotted and evaluated (the representation of x)."""
    return heads["z"]

  def decoder_input(self, heads: Mapping[str, jax.Array], labels: jax.Array | None = None
                    ) -> jax.Array:
    """Decoder input from encoder heads (inference).

    ``labels`` ((n,) class labels) serve decoders conditioned on the label (the
    style AAE); other models ignore them.
    """
    del labels
    return heads["z"]

  def decode(self, state: TrainState, z: jax.Array) -> jax.Array:
    """Mean images in [0, 1] for decoder inputs ``z``."""
    logits, _ = self.apply("decoder", state.params, state.model_state, z, train=False)
    return networks.mean_images(logits)

  def eval_batch(self, state: TrainState, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Per-example test quantities: codes, reconstructions' loss, categorical logits."""
    x = self._inputs(batch)
    heads = self.encode(state, batch["image"])
    logits, _ = self.apply("decoder", state.params, state.model_state,
                           self.decoder_input(heads, batch.get("label")), train=False)
    out = {"z": self.latent(heads),
           "recon_loss": networks.reconstruction_loss(logits, x, self.recon_loss)}
    if "y_logits" in heads:
      out["y_logits"] = heads["y_logits"]
    return out

  def generate(self, state: TrainState, rng: jax.Array, n: int) -> jax.Array:
    """Images decoded from n prior samples."""
    return self.decode(state, self.sample_prior(state, rng, n))
