"""Adversarial autoencoder (Makhzani et al. 2015): the whole training math.

One train step is the paper's phases on one mini-batch, each one Adam update of
its own networks (its own optimizer state and ``lr_<phase>``), each seeing the
networks as the previous phase left them. With r(x) the decoder input, c the
critics' condition (if any) and D_k the critics:

1. ``recon`` (encoder, decoder, and any extra trained networks):
   recon_weight · L_rec(x, dec(r(x))) + :meth:`AAE.recon_regularizer`;
2. ``critic`` (every critic; one update of their disjoint parameters, the same as
   one update per critic with a shared learning rate):
   Σ_k −log D_k(p_k, c) − log(1 − D_k(q_k(x), c)), p_k a prior sample (real),
   q_k(x) the matching encoder output (fake), both with ``critic_noise``
   gaussian noise added (real and fake go through D_k as one batch); with ``r1_weight`` γ
   > 0, plus γ/2 · Σ_k E‖∇D_k(p_k, c)‖², the R1 penalty on the real inputs
   (:func:`aaejax.penalties.logits_and_r1`, from the same pass);
3. ``gen`` (encoder, as the generator): gen_weight · Σ_k −log D_k(q_k(x), c)
   (non-saturating), with the critics as phase 2 left them. Phase 2 does not
   train the encoder, so q_k(x) is the same in both: phases 2 and 3 share one
   forward pass (:meth:`AAE.adversarial_forward`, :class:`aaejax.core.Phase`'s
   ``forward``) and phase 3 pulls the critics' gradient back through it;
4. ``supervised`` (only for models that declare that phase): the cross-entropy
   of :meth:`AAE.loss_supervised` on a labelled mini-batch.

The phases are data (:meth:`AAE.phases`): a family adds one by declaring it, and
the core (:meth:`aaejax.core.Model.train_step`) runs them and counts the step.

Phases 2 and 3 see the examples of :meth:`AAE.regularization_batch` (the batch
itself, or more: the supervised prior adds a labelled mini-batch). The
unsupervised AAE has one critic on z, no condition, no supervised phase. The
label-aware models (:mod:`aaejax.models.aae_supervised_prior`,
:mod:`aaejax.models.aae_categorical`, :mod:`aaejax.models.aae_dimreduction`,
:mod:`aaejax.models.aae_style`) override the hooks only.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp

from aaejax import core, penalties
from aaejax.nets import networks
from aaejax.models.autoencoder import Autoencoder, critic_networks


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class AAE(Autoencoder):
  """AAE with any prior; unsupervised as it stands, label-aware through its hooks.

  Hparams (all sweepable): ``lr_recon``, ``lr_critic``, ``lr_gen`` (Adam
  learning rates of the three phases), ``recon_weight`` (multiplies the
  reconstruction loss), ``gen_weight`` (multiplies the encoder's adversarial
  loss), ``prior_scale`` (multiplies prior samples), ``critic_noise`` (std of
  gaussian noise added to both critic inputs; 0 disables it); ``r1_weight`` (γ of the
  critics' R1 penalty) when the model has one.

  Attributes (besides the autoencoder's): ``critic_hidden``, the latent critics' hidden
  layers; ``critic_dropout``, dropout after them in training (as public reproductions of
  the semi-supervised AAE use; the encoder's is config ``encoder_dropout``); ``r1_weight``,
  the default γ of the R1 penalty on the critics' real inputs: 0 builds a step without it,
  and then the hparam does not exist (a sweep over γ needs a base config with γ > 0).

  Example:

    >>> import jax, jax.numpy as jnp
    >>> from aaejax.models import AAE
    >>> model = AAE(image_shape=(28, 28, 1), latent_dim=2, prior="gaussian_mixture",
    ...             critic_hidden=(64,))
    >>> state = model.init(jax.random.key(0))
    >>> batch = {"image": jnp.zeros((8, 28, 28, 1), jnp.uint8), "label": jnp.zeros(8, jnp.int32)}
    >>> state, metrics = jax.jit(model.train_step)(state, batch, jax.random.key(1))
    >>> sorted(metrics)
    ['critic_acc', 'critic_loss', 'gen_loss', 'recon_loss']
  """

  critic_hidden: Sequence[int] = networks.AAE_HIDDEN
  critic_dropout: float = 0.0
  r1_weight: float = 0.0

  @classmethod
  def from_config(cls, config, image_shape, **fields):
    return super().from_config(config, image_shape, **fields,
                               critic_hidden=tuple(config.get("critic_hidden",
                                                              networks.AAE_HIDDEN)),
                               critic_dropout=float(config.get("critic_dropout", 0.0)),
                               r1_weight=float(config.get("r1_weight", 0.0)))

  def phases(self):
    forward = self.adversarial_forward
    return (core.Phase("recon", ("encoder", "decoder"), self.loss_recon, lr_field="learning_rate"),
            core.Phase("critic", tuple(self.critic_sizes()), self.loss_critic, forward=forward),
            core.Phase("gen", ("encoder",), self.loss_gen, forward=forward))

  def default_hparams(self):
    return {"lr_recon": 1e-3, "lr_critic": 1e-4, "lr_gen": 1e-4, "recon_weight": 1.0,
            "gen_weight": 1.0, "prior_scale": 1.0, "critic_noise": 0.0,
            **({"r1_weight": self.r1_weight} if self.r1_weight > 0 else {})}

  # ---- hooks -------------------------------------------------------------------------

  def critic_sizes(self) -> dict[str, int]:
    """Critic name -> size of the code it judges."""
    return {"critic": self.latent_dim}

  def critic_condition_size(self) -> int:
    """Size of the critics' condition (0: unconditioned)."""
    return 0

  def critic_condition(self, batch: Mapping[str, jax.Array]) -> jax.Array | None:
    """What every critic is conditioned on, for both its real and its fake inputs."""
    del batch
    return None

  def regularization_batch(self, batch: Mapping[str, jax.Array]) -> Mapping[str, jax.Array]:
    """The examples the critic and generator phases see (by default the batch itself)."""
    return batch

  def derived_heads(self, params, heads: dict) -> dict:
    """Heads computed from the encoder's (e.g. y = softmax(y_logits)), in training and inference."""
    del params
    return heads

  def adversarial_codes(self, heads: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Critic name -> the encoder output it sees as fake."""
    return {"critic": heads["z"]}

  def prior_codes(self, state, batch, rng, n: int) -> dict[str, jax.Array]:
    """Critic name -> n prior samples it sees as real."""
    del batch
    return {"critic": self.sample_prior(state, rng, n)}

  def recon_regularizer(self, inputs: core.StepInputs, params, heads: Mapping[str, jax.Array]
                        ) -> tuple[jax.Array, dict]:
    """Extra loss of the reconstruction phase and its metrics (none by default); sees the
    step's inputs (batch, labels), the parameters and the encoder's heads of the batch."""
    del inputs, params, heads
    return jnp.zeros(()), {}

  # ---- networks ----------------------------------------------------------------------

  def networks(self):
    return {**super().networks(), **critic_networks(self.critic_sizes(), self.critic_hidden,
                                                    self.critic_condition_size(), self.dtype,
                                                    self.critic_dropout)}

  def encode_heads(self, params, model_state, x, rng, train=True):
    heads, model_state = super().encode_heads(params, model_state, x, rng, train)
    return self.derived_heads(params, heads), model_state

  def encode(self, state, images):
    return self.derived_heads(state.params, super().encode(state, images))

  # ---- the step ----------------------------------------------------------------------

  def loss_supervised(self, inputs: core.StepInputs, params, shared=None):
    """``(loss, (metrics, model_state))`` of the ``supervised`` phase, for models with one."""
    raise NotImplementedError(f"{type(self).__name__} has no supervised phase.")

  def prepare(self, state, batch, rng):
    """The images of the batch and of the regularization phases, the critics' condition, the
    step's keys (every phase draws from its own)."""
    x = self.inputs(batch)
    reg = self.regularization_batch(batch)
    return {"x": x, "labels": batch.get("label"), "reg": reg,
            "x_reg": x if reg is batch else self.inputs(reg), "cond": self.critic_condition(reg),
            "keys": jax.random.split(rng, 6)}

  def loss_recon(self, inputs, params, shared=None):
    """Phase 1: recon_weight · L_rec(x, dec(r(x))) + :meth:`recon_regularizer`."""
    del shared
    x, keys, hp = inputs.inputs["x"], inputs.inputs["keys"], inputs.hparams
    heads, ms = self.encode_heads(params, inputs.state.model_state, x, keys[0])
    recon, ms = self.reconstruction(params, ms, x, self.decoder_input(heads,
                                                                      inputs.inputs["labels"]))
    extra, extra_metrics = self.recon_regularizer(inputs, params, heads)
    return hp["recon_weight"] * recon + extra, ({"recon_loss": recon, **extra_metrics}, ms)

  def adversarial_forward(self, inputs, params):
    """The pass the critic and generator phases share: the encoder's codes of the
    regularization batch (critic name -> code). The critic phase trains the critics only,
    so both see the same encoder, and the generator phase pulls the critics' gradient back
    through this one pass."""
    heads, _ = self.encode_heads(params, inputs.state.model_state, inputs.inputs["x_reg"],
                                 inputs.inputs["keys"][1])
    return self.adversarial_codes(heads), inputs.state.model_state

  def loss_critic(self, inputs, params, codes):
    """Phase 2: Σ_k −log D_k(p_k, c) − log(1 − D_k(q_k(x), c)), real and fake in one pass
    (plus γ/2 · R1 of the real inputs with ``r1_weight``)."""
    state, keys, cond = inputs.state, inputs.inputs["keys"], inputs.inputs["cond"]
    n = inputs.inputs["x_reg"].shape[0]
    reals = self.prior_codes(state, inputs.inputs["reg"], keys[2], n)
    cond2 = None if cond is None else jnp.concatenate([cond, cond])
    total, penalty, out = 0.0, 0.0, {}
    for i, (name, fake) in enumerate(codes.items()):
      def critic(z, key=jax.random.fold_in(keys[3], i), name=name):
        return self.latent_critic_logits(state, params, z, key, cond2, name)

      z = jnp.concatenate([reals[name], fake])
      if self.r1_weight > 0:
        logits, out[f"{name}_r1"] = penalties.logits_and_r1(critic, z, jnp.arange(2 * n) < n)
        penalty = penalty + 0.5 * state.hparams["r1_weight"] * out[f"{name}_r1"]
      else:
        logits = critic(z)
      real, fake = logits[:n], logits[n:]
      loss = penalties.critic_loss(real, fake)
      out[f"{name}_loss"] = loss
      out[f"{name}_acc"] = penalties.critic_accuracy(real, fake)
      total = total + loss
    out["critic_loss"] = total  # the cross-entropies; the R1 terms are the *_r1 metrics
    return (total + penalty if self.r1_weight > 0 else total), (out, state.model_state)

  def loss_gen(self, inputs, params, codes):
    """Phase 3: gen_weight · Σ_k −log D_k(q_k(x), c), the critics as phase 2 left them."""
    state, keys, cond = inputs.state, inputs.inputs["keys"], inputs.inputs["cond"]
    total, out = 0.0, {}
    for i, (name, code) in enumerate(codes.items()):
      logits = self.latent_critic_logits(state, params, code, jax.random.fold_in(keys[5], i),
                                         cond, name)
      out[name.replace("critic", "gen") + "_loss"] = loss = penalties.generator_loss(logits)
      total = total + loss
    out["gen_loss"] = total
    return state.hparams["gen_weight"] * total, (out, state.model_state)


def check_num_labeled(num_labeled: int, num_classes: int) -> None:
  """A ``ValueError`` unless ``num_labeled`` is a positive multiple of ``num_classes``."""
  if num_labeled <= 0 or num_labeled % num_classes:
    raise ValueError(f"num_labeled must be a positive multiple of the {num_classes} classes "
                     f"(a class-balanced subset), got {num_labeled}.")


def require_labels(model, batch, key: str) -> None:
  """A clear ``ValueError`` when a model that reads ``batch[key]`` gets a batch without it."""
  if isinstance(batch, Mapping) and key not in batch:
    k, unlabelled_ok = model.label_fields()[key]
    raise ValueError(f"{type(model).__name__} needs batch[{key!r}]: integer labels in [0, {k})"
                     + (" or -1 (unlabelled)" if unlabelled_ok else "")
                     + f"; the batch has {sorted(batch)}.")
