"""InfoGAN (Chen et al. 2016): a GAN whose generator input carries codes readable from its output.

The generator gets [z, c]: noise z ~ p(z) and codes c = (one ``num_categories``-way categorical
c_cat, ``num_continuous`` uniform(−1, 1) codes c_cont). A head Q on the critic's trunk
(:class:`InfoCritic`: one trunk, a D head and a Q head) reads c back from G(z, c); maximising
the variational lower bound of the mutual information I(c; G(z, c)) is minimising

  L_I = CE(Q_cat(G(z, c)), c_cat) + info_cont_weight · ½ ‖Q_cont(G(z, c)) − c_cont‖²

(Q_cont a gaussian of unit variance; H(c) is a constant and dropped). Two phases per step,
each one Adam update, as in the paper's code (D's optimizer holds D's and Q's weights):

1. ``critic`` (the whole critic: trunk, D head, Q head): −log D(x) − log(1 − D(G(z, c)))
   + info_weight · L_I on G's output held fixed;
2. ``gen`` (G): gen_weight · −log D(G(z', c')) + info_weight · L_I on fresh noise and codes,
   with the critic as phase 1 left it.

The weights ``info_weight`` (λ; the paper's 1 for the categorical code) and
``info_cont_weight`` are hparams (sweepable). The signature metric ``eval/categorical_error``
is the test error of argmax Q_cat used as a digit classifier after the best one-to-one
matching of code values to digits (Hungarian, :func:`aaejax.evaluation.metrics.matched_error`;
the paper reports about 5 % on MNIST); ``infogan_codes.png`` is the paper's figure (rows = the
categorical value, columns = one continuous code swept from −2 to 2, the others 0, one z).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aaejax import core, evaluation, penalties
from aaejax.data import batching
from aaejax.evaluation import figures, metrics, plots
from aaejax.models import gan
from aaejax.nets import networks

CODE_SWEEP = (-2.0, 2.0)  # the range of a continuous code in the figure (trained on ±1)


class InfoCritic(nn.Module):
  """D and Q on one trunk: images in [0, 1] -> (D's logit (n,), Q's outputs (n, K + C)).

  The trunk is an MLP (``hidden``, LeakyReLU, optional dropout) or, with ``channels``, the
  DCGAN critic's stride-2 convs followed by a dense layer of ``hidden[-1]`` units (the
  paper's MNIST D: conv 64, conv 128, FC 1024). Q's head is one hidden layer of
  ``q_hidden`` units, then K categorical logits and C continuous means.
  """

  num_categories: int
  num_continuous: int
  hidden: Sequence[int] = networks.AAE_HIDDEN
  channels: Sequence[int] = ()
  kernel_size: int = 4
  batch_norm: bool = True
  dropout: float = 0.0
  q_hidden: int = 128
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool = True):
    act = lambda h: nn.leaky_relu(h, 0.2)
    if self.channels:
      h = networks.ConvTrunk(self.channels, self.kernel_size, self.batch_norm, self.dtype,
                             self.conv_impl, name="trunk")(x, train)
      h = act(nn.Dense(self.hidden[-1], dtype=self.dtype, name="trunk_fc")(h))
    else:
      h = networks.MLP(self.hidden[:-1], self.hidden[-1], 0.2, self.dropout, dtype=self.dtype,
                       name="trunk")(x.reshape(x.shape[0], -1), train)
      h = act(h)
      if self.dropout:
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
    d = nn.Dense(1, dtype=self.dtype, name="d_head")(h)[:, 0]
    q = networks.MLP((self.q_hidden,), self.num_categories + self.num_continuous, 0.2,
                     dtype=self.dtype, name="q_head")(h, train)
    return d.astype(jnp.float32), q


def info_loss(q: jax.Array, cat: jax.Array, cont: jax.Array, cont_weight) -> dict[str, jax.Array]:
  """L_I of Q's outputs ``q`` (n, K + C) against the codes (``cat`` (n,) ints, ``cont`` (n, C)).

  Example:

    >>> import jax.numpy as jnp
    >>> q = jnp.array([[0.0, 0.0, 1.0]])   # K = 2 equal logits, one continuous mean 1
    >>> out = info_loss(q, jnp.array([1]), jnp.array([[0.0]]), cont_weight=2.0)
    >>> round(float(out["info_cat_loss"]), 4), float(out["info_cont_loss"]), round(float(out["info_loss"]), 4)
    (0.6931, 0.5, 1.6931)
  """
  k = q.shape[-1] - cont.shape[-1]
  logits, means = q[:, :k], q[:, k:]
  cat_loss = jnp.mean(-jnp.take_along_axis(jax.nn.log_softmax(logits), cat[:, None], -1))
  cont_loss = jnp.mean(0.5 * jnp.sum(jnp.square(means - cont), -1)) if cont.shape[-1] else 0.0
  return {"info_loss": cat_loss + cont_weight * cont_loss, "info_cat_loss": cat_loss,
          "info_cont_loss": jnp.asarray(cont_loss, jnp.float32),
          "q_cat_acc": jnp.mean(jnp.argmax(logits, -1) == cat)}


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class InfoGAN(gan.GAN):
  """The GAN with codes c in G's input and a Q head on the critic that reads them back.

  Attributes (besides the GAN's):
    num_categories: values of the categorical code (10 for MNIST's digits).
    num_continuous: continuous codes, each uniform(−1, 1).
    critic: an :class:`InfoCritic` (default: the GAN's MLP sizes).

  Hparams (all sweepable): the GAN's, plus ``info_weight`` (λ) and ``info_cont_weight``.

  Example:

    >>> import jax, jax.numpy as jnp
    >>> from aaejax.nets import networks
    >>> from aaejax.models import InfoGAN
    >>> from aaejax.models.infogan import InfoCritic
    >>> model = InfoGAN(image_shape=(28, 28, 1), latent_dim=4,
    ...                 generator=networks.MLPDecoder((28, 28, 1), (32,)),
    ...                 critic=InfoCritic(10, 2, hidden=(32,), q_hidden=8))
    >>> state = model.init(jax.random.key(0))
    >>> batch = {"image": jnp.zeros((8, 28, 28, 1), jnp.uint8)}
    >>> state, m = jax.jit(model.train_step)(state, batch, jax.random.key(1))
    >>> sorted(m)
    ['critic_acc', 'critic_loss', 'gen_loss', 'info_cat_loss', 'info_cont_loss', 'info_loss', 'q_cat_acc']
    >>> model.generate(state, jax.random.key(2), 3).shape, model.read_codes(state, batch["image"]).shape
    ((3, 28, 28, 1), (8,))
  """

  num_categories: int = 10
  num_continuous: int = 2

  def __post_init__(self):
    if self.num_categories < 2:
      raise ValueError(f"num_categories must be >= 2, got {self.num_categories}.")
    if self.num_continuous < 0:
      raise ValueError(f"num_continuous must be >= 0, got {self.num_continuous}.")
    if self.critic is None:
      object.__setattr__(self, "critic", InfoCritic(self.num_categories, self.num_continuous,
                                                    dtype=self.dtype))
    super().__post_init__()

  @classmethod
  def from_config(cls, config, image_shape, **fields):
    image_shape = tuple(image_shape)
    k, c = int(config.get("num_categories", 10)), int(config.get("num_continuous", 2))
    conv = config.get("network", "mlp") == "conv"
    critic = InfoCritic(
        k, c, hidden=tuple(config.get("critic_hidden", networks.AAE_HIDDEN)),
        channels=tuple(config.get("critic_channels", ()) or gan.DCGAN_CRITIC_CHANNELS.get(
            image_shape[0], ())) if conv else (),
        kernel_size=config.get("conv_kernel", 4), batch_norm=config.get("batch_norm", True),
        dropout=config.get("critic_dropout", 0.0), q_hidden=config.get("q_hidden", 128),
        dtype=networks.compute_dtype(config.get("compute_dtype", "float32")),
        conv_impl=config.get("conv_impl", "auto"))
    return super().from_config(config, image_shape, num_categories=k, num_continuous=c,
                               critic=critic, **fields)

  @property
  def code_dim(self) -> int:
    return self.num_categories + self.num_continuous

  def networks(self):
    return {"generator": (self.generator, ((2, self.latent_dim + self.code_dim),)),
            "critic": (self.critic, ((2, *self.image_shape),))}

  def default_hparams(self):
    return {**super().default_hparams(), "lr_gen": 1e-3, "info_weight": 1.0,
            "info_cont_weight": 0.1}

  def decoder_input_dim(self) -> int:
    return self.latent_dim + self.code_dim

  # ---- codes ---------------------------------------------------------------------------

  def sample_codes(self, rng, n):
    """(c_cat (n,) ints, c_cont (n, C) uniform(−1, 1))."""
    cat_rng, cont_rng = jax.random.split(rng)
    return (jax.random.randint(cat_rng, (n,), 0, self.num_categories),
            jax.random.uniform(cont_rng, (n, self.num_continuous), minval=-1.0, maxval=1.0))

  def generator_input(self, z, cat, cont):
    """[z, one-hot(c_cat), c_cont]: G's input."""
    return jnp.concatenate([z, jax.nn.one_hot(cat, self.num_categories, dtype=z.dtype),
                            cont.astype(z.dtype)], -1)

  def decode(self, state, codes):
    """G([z, c]) in [0, 1] (inference mode) of full generator inputs (n, latent_dim + K + C)."""
    codes = core.check_codes(codes, self.decoder_input_dim())
    return self.fake_images(state.params, state.model_state, codes, train=False)[0]

  def generate(self, state, rng, n):
    n = core.check_count(n)
    z_rng, c_rng = jax.random.split(rng)
    return self.decode(state, self.generator_input(self.sample_prior(state, z_rng, n),
                                                   *self.sample_codes(c_rng, n)))

  def read_codes(self, state, images):
    """argmax Q_cat of ``images`` (inference mode): the categorical code read back, (n,)."""
    x = core.image_inputs(images, self.image_shape)
    (_, q), _ = self.apply("critic", state.params, state.model_state, x, train=False)
    return jnp.argmax(q[:, :self.num_categories], -1)

  # ---- the step ------------------------------------------------------------------------

  def prepare(self, state, batch, rng):
    return {"x": core.image_inputs(batch["image"], self.image_shape),
            "keys": jax.random.split(rng, 7)}

  def _fakes(self, state, params, model_state, rng, n):
    z_rng, c_rng = jax.random.split(rng)
    cat, cont = self.sample_codes(c_rng, n)
    images, ms = self.fake_images(params, model_state, self.generator_input(
        self.sample_prior(state, z_rng, n), cat, cont))
    return images, cat, cont, ms

  def loss_critic(self, inputs, params, shared=None):
    """Phase 1: the GAN's critic loss + info_weight · L_I on G(z, c) held fixed."""
    del shared
    state, x, keys = inputs.state, inputs.inputs["x"], inputs.inputs["keys"]
    hp, n = state.hparams, x.shape[0]
    fake, cat, cont, model_state = self._fakes(state, params, state.model_state, keys[0], n)
    fake = jax.lax.stop_gradient(fake)
    if "critic" in model_state:  # batch norm: real and fake batches apart
      (real_l, _), ms = self.critic_logits(state, params, model_state, x, keys[2])
      (fake_l, q), ms = self.critic_logits(state, params, ms, fake, keys[3])
    else:
      (logits, q), ms = self.critic_logits(state, params, model_state,
                                           jnp.concatenate([x, fake]), keys[2])
      real_l, fake_l, q = logits[:n], logits[n:], q[n:]
    gan_loss = penalties.critic_loss(real_l, fake_l)
    info = info_loss(q, cat, cont, hp["info_cont_weight"])
    loss = gan_loss + hp["info_weight"] * info["info_loss"]
    return loss, ({"critic_loss": gan_loss,
                   "critic_acc": penalties.critic_accuracy(real_l, fake_l)}, ms)

  def loss_gen(self, inputs, params, shared=None):
    """Phase 2: gen_weight · −log D(G(z', c')) + info_weight · L_I, the critic as phase 1
    left it."""
    del shared
    state, keys = inputs.state, inputs.inputs["keys"]
    hp, n = state.hparams, inputs.inputs["x"].shape[0]
    images, cat, cont, ms = self._fakes(state, params, state.model_state, keys[1], n)
    (logits, q), ms = self.critic_logits(state, params, ms, images, keys[4])
    gen = penalties.generator_loss(logits)
    info = info_loss(q, cat, cont, hp["info_cont_weight"])
    loss = hp["gen_weight"] * gen + hp["info_weight"] * info["info_loss"]
    return loss, ({"gen_loss": gen, **info}, ms)

  # ---- what it reports -----------------------------------------------------------------

  def evaluators(self):
    return (evaluation.Evaluator("categorical_error", frozenset({core.GENERATE}),
                                 _categorical_error, applies=evaluation.labelled),)

  def figures(self):
    return (figures.Figure("infogan_codes", frozenset({core.GENERATE}), _codes_figure),)


@functools.partial(jax.jit, static_argnums=0)
def _read_codes(model, state, images):
  return batching.chunked(lambda b: model.read_codes(state, b["image"]), {"image": images},
                          evaluation.EVAL_BATCH)


def _categorical_error(ctx):
  """``eval/categorical_error``: argmax Q_cat on the test split as a digit classifier, after
  the best one-to-one matching of code values to digits (%)."""
  test = ctx.test
  pred = np.asarray(_read_codes(ctx.model, ctx.state, test["image"]))
  labels = np.asarray(test["label"])
  return {"eval/categorical_error": metrics.matched_error(
      pred, labels, ctx.model.num_categories, max(int(labels.max()) + 1, 2))}


def code_grid_inputs(model, state, rng, code: int, columns: int = 10) -> jax.Array:
  """(K · columns, latent_dim + K + C) generator inputs: row k has c_cat = k, column j the
  continuous code ``code`` at the j-th of ``columns`` values over :data:`CODE_SWEEP`, the
  other continuous codes 0, one z for the whole grid."""
  k = model.num_categories
  z = jnp.tile(model.sample_prior(state, rng, 1), (k * columns, 1))
  cat = jnp.repeat(jnp.arange(k), columns)
  cont = jnp.zeros((k * columns, model.num_continuous))
  cont = cont.at[:, code].set(jnp.tile(jnp.linspace(*CODE_SWEEP, columns), k))
  return model.generator_input(z, cat, cont)


def _codes_figure(c):
  model, k = c.model, c.model.num_categories
  paths = []
  for j in range(max(model.num_continuous, 0)):
    images = c.decode(code_grid_inputs(model, c.state, jax.random.fold_in(c.rng, 11), j))
    name = "infogan_codes.png" if j == 0 else f"infogan_codes_c{j + 1}.png"
    paths.append(plots.image_grid(
        c.path(name), images, len(images) // k, row_titles=[str(r) for r in range(k)],
        title=f"G(z, c): rows c_cat = 0..{k - 1}, columns c{j + 1} from {CODE_SWEEP[0]:g} to "
              f"{CODE_SWEEP[1]:g}, one z"))
  return paths


__all__ = ["InfoGAN", "InfoCritic", "info_loss", "code_grid_inputs"]
