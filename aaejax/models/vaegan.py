"""VAE-GAN (Larsen et al. 2016): a VAE whose reconstruction error is measured in a critic's
features, and whose decoder also plays a GAN against that critic.

With E the gaussian encoder, Dec the decoder (the generator), D the image critic and Dis_l(x)
D's features at layer ``feature_layer``, one forward pass per step makes z̃ ~ q(z|x),
x̃ = Dec(z̃) and x_p = Dec(z_p), z_p ~ p(z); three phases take their gradients from it
(:class:`aaejax.core.Phase`'s shared ``forward``, pulled back through the one pass), each one
Adam update, all at the parameters of the step's start (the paper's simultaneous updates):

1. ``encoder``: β · KL(q(z|x) ‖ p(z)) + L_feat, L_feat = ½ ‖Dis_l(x̃) − Dis_l(x)‖² (a unit
   gaussian in feature space, summed over the features, mean over the batch);
2. ``decoder``: γ · L_feat + the non-saturating GAN loss of x̃ and x_p
   (−log D(x̃) − log D(x_p)); γ = ``feature_weight``;
3. ``critic``: −log D(x) − log(1 − D(x̃)) − log(1 − D(x_p)).

``three_way=True`` is the lecture's variant: D tells three classes apart (real,
reconstructed, generated) by a softmax; the decoder makes x̃ and x_p look real to it. β, γ,
the rates and ``critic_noise`` are hparams (sweepable). The signature comparison is
``eval/fd_digits`` of VAE-GAN against the plain VAE at equal budget (lower: samples closer to
the test digits), with mode coverage and Parzen beside it; on CelebA ``eval/fd_effnet`` / KID.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from aaejax import core, penalties
from aaejax.models import gan
from aaejax.models.vae import VAE, gaussian_kl
from aaejax.nets import conv, networks

REAL, RECONSTRUCTED, GENERATED = 0, 1, 2  # the three-way critic's classes


class FeatureCritic(nn.Module):
  """Image critic that also returns its features at one layer: images in [0, 1] ->
  (logits, features (n, f) float32).

  An MLP (``hidden``, LeakyReLU 0.2, optional dropout after each layer) or, with
  ``channels``, stride-2 convs (LeakyReLU, batch norm after every conv but the first if
  ``batch_norm``); ``feature_layer`` indexes its hidden layers (−1: the last), read before
  dropout. ``outputs`` = 1: one logit per image (n,); 3: the three-way critic's (n, 3).
  """

  hidden: Sequence[int] = networks.AAE_HIDDEN
  channels: Sequence[int] = ()
  kernel_size: int = 4
  batch_norm: bool = False
  dropout: float = 0.0
  feature_layer: int = -1
  outputs: int = 1
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool = True):
    act = lambda h: nn.leaky_relu(h, 0.2)
    layers, h = [], x
    if self.channels:
      k = (self.kernel_size, self.kernel_size)
      for i, c in enumerate(self.channels):
        h = conv.Conv(c, k, strides=(2, 2), dtype=self.dtype, impl=self.conv_impl,
                      name=f"conv_{i}")(h)
        if i and self.batch_norm:
          h = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype,
                           name=f"bn_{i}")(h)
        h = act(h)
        layers.append(h.reshape(h.shape[0], -1))
      h = layers[-1]
    else:
      h = h.reshape(h.shape[0], -1)
      for i, w in enumerate(self.hidden):
        h = act(nn.Dense(w, dtype=self.dtype, name=f"hidden_{i}")(h))
        layers.append(h)
        if self.dropout:
          h = nn.Dropout(self.dropout, deterministic=not train)(h)
    logits = nn.Dense(self.outputs, dtype=self.dtype, name="out")(h).astype(jnp.float32)
    return (logits[:, 0] if self.outputs == 1 else logits,
            layers[self.feature_layer].astype(jnp.float32))


def feature_loss(f_rec: jax.Array, f_real: jax.Array) -> jax.Array:
  """L_feat: ½ ‖f_rec − f_real‖² summed over features, mean over the batch (nats of a unit
  gaussian in feature space, up to its constant).

  Example:

    >>> import jax.numpy as jnp
    >>> float(feature_loss(jnp.array([[1.0, 2.0], [0.0, 0.0]]), jnp.zeros((2, 2))))
    1.25
  """
  return jnp.mean(0.5 * jnp.sum(jnp.square(f_rec - f_real), -1))


def three_way_loss(logits: jax.Array, cls: int) -> jax.Array:
  """Mean cross-entropy of (n, 3) logits against class ``cls`` for every row."""
  return jnp.mean(-jax.nn.log_softmax(logits)[:, cls])


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class VAEGAN(VAE):
  """The VAE plus an image critic whose features measure the reconstruction.

  Attributes (besides the VAE's):
    critic: a :class:`FeatureCritic` (default: the MLP 1000-1000, features of its last
      hidden layer).
    three_way: the critic tells real / reconstructed / generated apart (softmax of 3).

  Hparams (all sweepable): ``lr_encoder``, ``lr_decoder``, ``lr_critic`` (Adam), ``beta``
  (KL weight), ``feature_weight`` (γ), ``prior_scale``, ``critic_noise``.

  Example:

    >>> import jax, jax.numpy as jnp
    >>> from aaejax.models import VAEGAN
    >>> from aaejax.models.vaegan import FeatureCritic
    >>> from aaejax.nets import networks
    >>> model = VAEGAN(image_shape=(28, 28, 1), latent_dim=4,
    ...                encoder=networks.MLPEncoder(4, (32,), gaussian=True),
    ...                decoder=networks.MLPDecoder((28, 28, 1), (32,)),
    ...                critic=FeatureCritic((32, 16), feature_layer=0))
    >>> state = model.init(jax.random.key(0))
    >>> batch = {"image": jnp.zeros((8, 28, 28, 1), jnp.uint8)}
    >>> state, m = jax.jit(model.train_step)(state, batch, jax.random.key(1))
    >>> sorted(m)
    ['critic_acc', 'critic_loss', 'feature_loss', 'gen_loss', 'kl', 'recon_loss']
  """

  critic: nn.Module | None = None
  three_way: bool = False

  def __post_init__(self):
    super().__post_init__()
    if self.critic is None:
      object.__setattr__(self, "critic", FeatureCritic(outputs=3 if self.three_way else 1,
                                                       dtype=self.dtype))
    if getattr(self.critic, "outputs", 3 if self.three_way else 1) != (3 if self.three_way else 1):
      raise ValueError(f"three_way={self.three_way} needs a critic with "
                       f"{3 if self.three_way else 1} output(s), got {self.critic.outputs}.")

  @classmethod
  def from_config(cls, config, image_shape, **fields):
    image_shape = tuple(image_shape)
    three_way = bool(config.get("three_way", False))
    conv = config.get("network", "mlp") == "conv"
    critic = FeatureCritic(
        hidden=tuple(config.get("critic_hidden", networks.AAE_HIDDEN)),
        channels=tuple(config.get("critic_channels", ()) or config.get(
            "conv_channels", networks.WAE_CHANNELS)) if conv else (),
        kernel_size=config.get("conv_kernel", 4 if image_shape[0] == 28 else 5),
        batch_norm=config.get("critic_batch_norm", False),
        dropout=config.get("critic_dropout", 0.0),
        feature_layer=config.get("feature_layer", -1), outputs=3 if three_way else 1,
        dtype=networks.compute_dtype(config.get("compute_dtype", "float32")),
        conv_impl=config.get("conv_impl", "auto"))
    return super().from_config(config, image_shape, critic=critic, three_way=three_way,
                               **fields)

  def networks(self):
    return {**super().networks(), "critic": (self.critic, ((2, *self.image_shape),))}

  def phases(self):
    fwd = self.forward
    return (core.Phase("encoder", ("encoder",), self.loss_encoder, lr_field="learning_rate",
                       forward=fwd),
            core.Phase("decoder", ("decoder",), self.loss_decoder, forward=fwd),
            core.Phase("critic", ("critic",), self.loss_critic, forward=fwd))

  def default_hparams(self):
    return {"lr_encoder": 3e-4, "lr_decoder": 3e-4, "lr_critic": 3e-4, "beta": 1.0,
            "feature_weight": 1.0, "prior_scale": 1.0, "critic_noise": 0.0}

  def capabilities(self):
    return frozenset({core.ENCODE, core.DECODE, core.RECONSTRUCT, core.GENERATE, core.PRIOR})

  # ---- the step ------------------------------------------------------------------------

  def prepare(self, state, batch, rng):
    return {"x": self.inputs(batch), "keys": jax.random.split(rng, 6)}

  def forward(self, inputs, params):
    """The step's one pass: z̃ ~ q(z|x), x̃ = Dec(z̃), x_p = Dec(z_p), and the KL."""
    state, x, keys = inputs.state, inputs.inputs["x"], inputs.inputs["keys"]
    n = x.shape[0]
    heads, ms = self.encode_heads(params, state.model_state, x, keys[0])
    z_p = self.sample_prior(state, keys[1], n)
    logits, ms = self.apply("decoder", params, ms, jnp.concatenate([heads["z"], z_p]),
                            train=True)
    images = networks.mean_images(logits)
    kl = jnp.mean(gaussian_kl(heads["z_mean"], heads["z_logvar"], self.prior_std(state)))
    recon = jnp.mean(networks.reconstruction_loss(logits[:n], x, self.recon_loss))
    return {"x_rec": images[:n], "x_p": images[n:], "kl": kl, "recon_loss": recon}, ms

  def critic_out(self, state, params, model_state, images, rng):
    """D's (logits, features) of ``images`` plus ``critic_noise`` noise, and the model state."""
    return gan.noisy_critic(self, state, params, model_state, images, rng)

  def _judged(self, inputs, params, shared, key, names=("x", "x_rec", "x_p")):
    """D's logits and features of x and the shared images ``names`` in one pass, each split
    into one (n, ...) part per name."""
    x = inputs.inputs["x"]
    n = x.shape[0]
    images = [x if name == "x" else shared[name] for name in names]
    (logits, feats), ms = self.critic_out(inputs.state, params, inputs.state.model_state,
                                          jnp.concatenate(images), inputs.inputs["keys"][key])
    split = lambda a: tuple(a[i * n:(i + 1) * n] for i in range(len(names)))
    return split(logits), split(feats), ms

  def loss_encoder(self, inputs, params, shared):
    """Phase 1: β · KL + L_feat (D at the step's parameters, not trained here)."""
    _, (f_x, f_rec), ms = self._judged(inputs, params, shared, 2, ("x", "x_rec"))
    feat = feature_loss(f_rec, jax.lax.stop_gradient(f_x))
    loss = inputs.hparams["beta"] * shared["kl"] + feat
    return loss, ({"kl": shared["kl"], "feature_loss": feat,
                   "recon_loss": shared["recon_loss"]}, ms)

  def loss_decoder(self, inputs, params, shared):
    """Phase 2: γ · L_feat + the GAN loss making x̃ and x_p look real."""
    (_, l_rec, l_p), (f_x, f_rec, _), ms = self._judged(inputs, params, shared, 3)
    feat = feature_loss(f_rec, jax.lax.stop_gradient(f_x))
    if self.three_way:
      gen = three_way_loss(l_rec, REAL) + three_way_loss(l_p, REAL)
    else:
      gen = penalties.generator_loss(l_rec) + penalties.generator_loss(l_p)
    loss = inputs.hparams["feature_weight"] * feat + gen
    return loss, ({"gen_loss": gen}, ms)

  def loss_critic(self, inputs, params, shared):
    """Phase 3: x real against x̃ and x_p (two-way), or the three classes (three-way)."""
    shared = jax.lax.stop_gradient(shared)
    (l_x, l_rec, l_p), _, ms = self._judged(inputs, params, shared, 4)
    if self.three_way:
      loss = (three_way_loss(l_x, REAL) + three_way_loss(l_rec, RECONSTRUCTED)
              + three_way_loss(l_p, GENERATED))
      acc = jnp.mean(jnp.concatenate([jnp.argmax(l_x, -1) == REAL,
                                      jnp.argmax(l_rec, -1) == RECONSTRUCTED,
                                      jnp.argmax(l_p, -1) == GENERATED]))
    else:
      loss = penalties.critic_loss(l_x, l_rec) + jnp.mean(jax.nn.softplus(l_p))
      acc = penalties.critic_accuracy(l_x, jnp.concatenate([l_rec, l_p]))
    return loss, ({"critic_loss": loss, "critic_acc": acc}, ms)


__all__ = ["VAEGAN", "FeatureCritic", "feature_loss", "three_way_loss"]
