"""Flax linen networks: MLP and DCGAN-style encoders/decoders, latent and image critics.

Encoders return a dict of heads: ``"z"`` (the code, or the posterior mean),
``"z_logvar"`` (only with ``gaussian=True``) and ``"y_logits"`` (only with
``num_categories > 0``, for the categorical heads of the label-aware AAEs).
Decoders return logits with the image's shape; :func:`reconstruction_loss` turns
them into a Bernoulli or gaussian negative log-likelihood. The GAN family's
generators are these decoders (noise in, image logits out); its critics
(:class:`ImageCritic`, :class:`ConvCritic`) return one logit per image.

Sizes follow the papers: the AAE paper's MNIST MLPs have two hidden layers of
1000 ReLU units (:data:`AAE_HIDDEN`); the WAE paper's conv nets use 4×4 kernels
and 128→1024 channels on 28×28 MNIST, 5×5 kernels on 64×64 CelebA.

Mixed precision: every module takes ``dtype``, the dtype of its activations and of its
matmuls and convolutions (float32 by default, or bfloat16: :func:`compute_dtype` maps a
config's ``compute_dtype`` name to it). Parameters and batch-norm statistics stay float32
(flax's ``param_dtype``; batch norm reduces in float32), and every module returns float32
outputs, so that losses are computed in float32 whatever ``dtype`` is.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from aaejax.nets import conv

AAE_HIDDEN = (1000, 1000)
WAE_CHANNELS = (128, 256, 512, 1024)
RECON_LOSSES = ("bernoulli", "gaussian")
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(name: str):
  """The jnp dtype of compute dtype ``name`` ("float32" or "bfloat16"), else a clear error.

  >>> compute_dtype("bfloat16")
  <class 'jax.numpy.bfloat16'>
  """
  if name not in COMPUTE_DTYPES:
    raise ValueError(f"unknown compute_dtype {name!r}; expected one of {tuple(COMPUTE_DTYPES)}.")
  return COMPUTE_DTYPES[name]


def _f32(tree):
  """Network outputs as float32 (losses are computed in float32)."""
  return jax.tree.map(lambda x: x.astype(jnp.float32), tree)


class MLP(nn.Module):
  """Dense ReLU layers (LeakyReLU with ``negative_slope`` > 0), then a linear output layer.

  With ``batch_norm``, batch norm before the activation of every hidden layer but the
  first; with ``dropout`` > 0 and ``train``, dropout after every hidden layer (rng
  ``"dropout"``).
  """

  hidden: Sequence[int]
  out: int
  negative_slope: float = 0.0
  dropout: float = 0.0
  batch_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    act = nn.relu if not self.negative_slope else lambda h: nn.leaky_relu(h, self.negative_slope)
    for i, h in enumerate(self.hidden):
      x = nn.Dense(h, dtype=self.dtype, name=f"hidden_{i}")(x)
      if self.batch_norm and i:
        x = _norm(True, train, f"bn_{i}", self.dtype)(x)
      x = act(x)
      if self.dropout:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return _f32(nn.Dense(self.out, dtype=self.dtype, name="out")(x))


class _Heads(nn.Module):
  """Maps features to the encoder's output heads."""

  latent_dim: int
  gaussian: bool = False
  num_categories: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h):
    dense = lambda n, name: nn.Dense(n, dtype=self.dtype, name=name)(h)
    out = {"z": dense(self.latent_dim, "z")}
    if self.gaussian:
      out["z_logvar"] = dense(self.latent_dim, "z_logvar")
    if self.num_categories:
      out["y_logits"] = dense(self.num_categories, "y_logits")
    return _f32(out)


class MLPEncoder(nn.Module):
  """Flattens images, applies ``hidden`` ReLU layers, then the output heads.

  ``dropout`` > 0: dropout after every hidden layer when training (rng ``"dropout"``; no
  parameters, so checkpoints are the same with and without).
  """

  latent_dim: int
  hidden: Sequence[int] = AAE_HIDDEN
  gaussian: bool = False
  num_categories: int = 0
  dtype: Any = jnp.float32
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool = True):
    h = x.reshape(x.shape[0], -1)
    for i, w in enumerate(self.hidden):
      h = nn.relu(nn.Dense(w, dtype=self.dtype, name=f"hidden_{i}")(h))
      if self.dropout:
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
    return _Heads(self.latent_dim, self.gaussian, self.num_categories, self.dtype,
                  name="heads")(h)


class MLPDecoder(nn.Module):
  """Maps codes (optionally concatenated with a condition) to image logits.

  Also the GAN family's MLP generator, there with ``negative_slope`` 0.2 (LeakyReLU)
  and ``batch_norm`` (after every hidden layer but the first).
  """

  image_shape: Sequence[int]
  hidden: Sequence[int] = AAE_HIDDEN
  negative_slope: float = 0.0
  batch_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z, train: bool = True):
    out = MLP(self.hidden, math.prod(self.image_shape), self.negative_slope,
              batch_norm=self.batch_norm, dtype=self.dtype, name="mlp")(z, train)
    return out.reshape(z.shape[0], *self.image_shape)


class Critic(nn.Module):
  """Latent critic: an MLP logit of a code, optionally with a one-hot condition.

  ``dropout`` > 0: dropout after every hidden layer when training (rng ``"dropout"``).
  """

  hidden: Sequence[int] = AAE_HIDDEN
  dtype: Any = jnp.float32
  dropout: float = 0.0

  @nn.compact
  def __call__(self, z, cond=None, train: bool = True):
    if cond is not None:
      z = jnp.concatenate([z, cond.astype(z.dtype)], axis=-1)
    mlp = MLP(self.hidden, 1, dropout=self.dropout, dtype=self.dtype, name="mlp")
    return mlp(z, train)[:, 0]


class ImageCritic(nn.Module):
  """Image critic of the GAN family: flattened image -> LeakyReLU MLP -> one logit.

  ``dropout`` after each hidden layer in training, as the GAN paper's MNIST
  discriminator (Goodfellow et al. 2014); it needs a ``"dropout"`` rng then.
  ``minibatch_std`` > 0: the last hidden layer's features get one more, the
  :func:`minibatch_stddev` over groups of that many examples (0: off, and the parameters
  keep the plain MLP's layout).
  """

  hidden: Sequence[int] = AAE_HIDDEN
  negative_slope: float = 0.2
  dropout: float = 0.0
  minibatch_std: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = True):
    h = x.reshape(x.shape[0], -1)
    if not self.minibatch_std:
      return MLP(self.hidden, 1, self.negative_slope, self.dropout, dtype=self.dtype,
                 name="mlp")(h, train)[:, 0]
    h = MLP(self.hidden[:-1], self.hidden[-1], self.negative_slope, self.dropout,
            dtype=self.dtype, name="trunk")(h, train)
    h = nn.leaky_relu(h, self.negative_slope)
    if self.dropout:
      h = nn.Dropout(self.dropout, deterministic=not train)(h)
    h = jnp.concatenate([h, minibatch_stddev(h, self.minibatch_std)], -1)
    return _f32(nn.Dense(1, dtype=self.dtype, name="out")(h)[:, 0])


def minibatch_stddev(h: jax.Array, group: int) -> jax.Array:
  """(n, 1): the mean over features of the standard deviation of ``h`` (n, f) within each
  group of ``group`` consecutive examples (Karras et al. 2018's minibatch-stddev feature).

  A critic that sees it can tell a batch of near-identical fakes from real data, so a
  generator that drops modes is penalised. Groups are consecutive, so a batch of real
  examples followed by as many fakes never mixes the two when ``group`` divides their count
  (a batch it does not divide is grouped by their greatest common divisor).

  Example:

    >>> import jax.numpy as jnp
    >>> std = minibatch_stddev(jnp.array([[0.0, 0.0], [2.0, 4.0], [1.0, 1.0], [1.0, 1.0]]), 2)
    >>> [round(float(v), 3) for v in std[:, 0]]   # groups (0, 1) and (2, 3)
    [1.5, 1.5, 0.0, 0.0]
  """
  n = h.shape[0]
  group = math.gcd(n, group)  # a batch that ``group`` does not divide: smaller groups
  g = h.reshape(n // group, group, -1).astype(jnp.float32)
  std = jnp.sqrt(jnp.var(g, axis=1) + 1e-8).mean(-1)
  return jnp.repeat(std, group)[:, None].astype(h.dtype)


class ConvCritic(nn.Module):
  """DCGAN discriminator (Radford et al. 2016): stride-2 convs, LeakyReLU 0.2, one logit.

  Batch norm after every conv but the first (as in DCGAN); 28×28 inputs with
  ``channels=(64, 128)`` end at 7×7, 64×64 inputs with ``(64, 128, 256, 512)`` at
  4×4; a dense layer gives the logit. ``dropout``: the rate of dropout after every
  LeakyReLU when training (the "dropout" rng; no parameters, so checkpoints are the same).
  """

  channels: Sequence[int] = (64, 128, 256, 512)
  kernel_size: int = 4
  batch_norm: bool = True
  dtype: Any = jnp.float32
  conv_impl: str = "auto"  # aaejax.nets.conv: "auto", "subpixel" or "xla"
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool = True):
    h = _conv_stack(x, self.channels, self.kernel_size, self.batch_norm, train,
                    lambda h: nn.leaky_relu(h, 0.2), norm_first=False, dtype=self.dtype,
                    impl=self.conv_impl, dropout=self.dropout)
    return _f32(nn.Dense(1, dtype=self.dtype, name="out")(h)[:, 0])


class ConvTrunk(nn.Module):
  """The DCGAN critic's convs without its output layer: stride-2 convs, LeakyReLU 0.2, batch
  norm after every conv but the first; returns the flattened features (a trunk that heads
  share, e.g. InfoGAN's D and Q)."""

  channels: Sequence[int] = (64, 128)
  kernel_size: int = 4
  batch_norm: bool = True
  dtype: Any = jnp.float32
  conv_impl: str = "auto"  # aaejax.nets.conv: "auto", "subpixel" or "xla"

  @nn.compact
  def __call__(self, x, train: bool = True):
    return _conv_stack(x, self.channels, self.kernel_size, self.batch_norm, train,
                       lambda h: nn.leaky_relu(h, 0.2), norm_first=False, dtype=self.dtype,
                       impl=self.conv_impl)


def _norm(use_bn: bool, train: bool, name: str, dtype: Any = jnp.float32):
  """Batch norm in ``dtype`` (statistics and parameters float32), or the identity."""
  if not use_bn:
    return lambda x: x
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=dtype, name=name)


def _conv_stack(h, channels, kernel_size, batch_norm, train, activation, norm_first=True,
                dtype: Any = jnp.float32, impl: str = "auto", dropout: float = 0.0):
  """Stride-2 convs ``conv_i`` (:class:`aaejax.nets.conv.Conv`, ``impl``), each with batch
  norm ``bn_i`` (not the first unless ``norm_first``), ``activation`` and, when training with
  ``dropout`` > 0, dropout, computed in ``dtype``; returns the flattened features.
  Call inside a ``nn.compact`` method (the layers belong to that module)."""
  k = (kernel_size, kernel_size)
  for i, c in enumerate(channels):
    h = conv.Conv(c, k, strides=(2, 2), dtype=dtype, impl=impl, name=f"conv_{i}")(h)
    if i or norm_first:
      h = _norm(batch_norm, train, f"bn_{i}", dtype)(h)
    h = activation(h)
    if dropout:
      h = nn.Dropout(dropout, deterministic=not train)(h)
  return h.reshape(h.shape[0], -1)


class ConvEncoder(nn.Module):
  """DCGAN-style encoder of the WAE paper: stride-2 convs with batch norm and ReLU.

  28×28 MNIST: 4×4 kernels; 64×64 CelebA: 5×5 kernels (``kernel_size``).
  """

  latent_dim: int
  channels: Sequence[int] = WAE_CHANNELS
  kernel_size: int = 4
  batch_norm: bool = True
  gaussian: bool = False
  num_categories: int = 0
  dtype: Any = jnp.float32
  conv_impl: str = "auto"  # aaejax.nets.conv: "auto", "subpixel" or "xla"
  dropout: float = 0.0     # after every conv's activation when training (rng "dropout")

  @nn.compact
  def __call__(self, x, train: bool = True):
    h = _conv_stack(x, self.channels, self.kernel_size, self.batch_norm, train, nn.relu,
                    dtype=self.dtype, impl=self.conv_impl, dropout=self.dropout)
    return _Heads(self.latent_dim, self.gaussian, self.num_categories, self.dtype,
                  name="heads")(h)


class ConvDecoder(nn.Module):
  """DCGAN-style decoder of the WAE paper: dense to a small map, stride-2 transposed convs.

  The first map has side ``image_side / 2**(len(channels) - 1)`` and
  ``channels[0]`` channels; each later entry of ``channels`` doubles the side;
  a last stride-1 transposed conv gives the image channels.
  MNIST (paper): channels (1024, 512, 256), 7×7 → 28×28, 4×4 kernels.
  CelebA (paper): channels (1024, 512, 256, 128), 8×8 → 64×64, 5×5 kernels.
  """

  image_shape: Sequence[int]
  channels: Sequence[int] = (1024, 512, 256)
  kernel_size: int = 4
  batch_norm: bool = True
  dtype: Any = jnp.float32
  conv_impl: str = "auto"  # aaejax.nets.conv: "auto", "subpixel" or "xla"

  @nn.compact
  def __call__(self, z, train: bool = True):
    h_side, w_side, out_c = self.image_shape
    div = 2 ** (len(self.channels) - 1)
    if h_side % div or w_side % div:
      raise ValueError(f"image side {h_side}x{w_side} is not divisible by {div}.")
    k = (self.kernel_size, self.kernel_size)
    dt = self.dtype
    h = nn.Dense(h_side // div * w_side // div * self.channels[0], dtype=dt, name="fc")(z)
    h = h.reshape(z.shape[0], h_side // div, w_side // div, self.channels[0])
    h = nn.relu(_norm(self.batch_norm, train, "bn_fc", dt)(h))
    for i, c in enumerate(self.channels[1:]):
      h = conv.ConvTranspose(c, k, strides=(2, 2), dtype=dt, impl=self.conv_impl,
                                 name=f"deconv_{i}")(h)
      h = nn.relu(_norm(self.batch_norm, train, f"bn_{i}", dt)(h))
    return _f32(conv.ConvTranspose(out_c, k, strides=(1, 1), dtype=dt, impl=self.conv_impl,
                                     name="out")(h))


def reconstruction_loss(logits: jax.Array, x: jax.Array, kind: str = "bernoulli") -> jax.Array:
  """Per-example reconstruction loss, summed over pixels: shape ``(batch,)``.

  - ``"bernoulli"``: sigmoid cross-entropy of ``logits`` against ``x`` in [0, 1]
    (the negative log-likelihood of a Bernoulli decoder).
  - ``"gaussian"``: squared error ‖x − sigmoid(logits)‖² (a gaussian decoder's
    NLL up to scale and constant; the WAE paper's cost, which it weights by 0.05).
  """
  if kind not in RECON_LOSSES:
    raise ValueError(f"unknown reconstruction loss {kind!r}; expected one of {RECON_LOSSES}.")
  # Flat (batch, pixels): with a trailing channel axis of size 1, XLA's CPU loops
  # would vectorise over that axis only (about 7x slower for MNIST's (n, 28, 28, 1)).
  logits = logits.reshape(logits.shape[0], -1)
  x = x.reshape(x.shape[0], -1)
  if kind == "bernoulli":
    per_pixel = jnp.maximum(logits, 0) - logits * x + jnp.log1p(jnp.exp(-jnp.abs(logits)))
  else:
    per_pixel = jnp.square(x - jax.nn.sigmoid(logits))
  return jnp.sum(per_pixel, axis=1)


def mean_images(logits: jax.Array) -> jax.Array:
  """The decoder's mean image in [0, 1] (both losses use a sigmoid mean)."""
  return jax.nn.sigmoid(logits)
