"""Triple-GAN (Li, Xu, Zhu & Zhang 2017): classifier, generator and critic on (x, y) pairs.

Three players share one game over image-label pairs:

- a classifier C(y|x) labels real images: fake pairs (x_u, ŷ), x_u unlabelled;
- a class-conditional generator G(z, y) draws images for labels: fake pairs (G(z, y), y),
  y uniform over the classes;
- a critic D(x, y) tells the real labelled pairs (x_l, y_l) from both kinds of fakes.

One step is three phases, each one Adam update of its own network:

1. ``critic`` (D): −log D(x_l, y_l) − α E_{ŷ~C(·|x_u)} log(1 − D(x_u, ŷ))
   − (1 − α) log(1 − D(G(z, y), y)), G's output and C's probabilities held fixed;
2. ``classifier`` (C), with D as phase 1 left it:
   α · E_{x_u} Σ_c p_c(c|x_u) · (−log D(x_u, c))  (the adversarial term)
   + supervised_weight · CE(C(x_l), y_l)          (R_L, the labelled cross-entropy)
   + α_P(p) · CE(C(G(z', y')), y')                 (R_P, the pseudo-label term);
3. ``gen`` (G): (1 − α) · −log D(G(z', y'), y') (non-saturating).

Phases 2 and 3 train disjoint networks and neither loss reads the other's network after
its update, so they share one forward pass (``forward_cg``): C on x_u, x_l and G's
samples, G(z', y'), D on G's samples and D on x_u with every class. That is the same step
as running them one after the other.

ŷ is discrete, so the paper differentiates C's adversarial term with a score-function
(REINFORCE-style) estimator. Here both the critic's and the classifier's terms on
(x_u, ŷ) take the *exact expectation over C's softmax*: D is evaluated on x_u with each of
the K classes (:class:`PairCritic` shares the image half of its first layer across the
classes, so this costs one image pass plus K label additions) and the K losses are weighted
by p_c(c|x_u). D never sees a soft label (a non-one-hot label would tell fakes apart by
itself). C's term is the non-saturating −log D, as G's, instead of the paper's
log(1 − D).

The pseudo-label weight α_P(p) = ``pseudo_weight`` once training progress p = step /
num_steps reaches ``pseudo_start``, 0 before: C learns from G's samples only after G has
had time to make class-conditional digits (the paper also switches R_P on late). Every
weight (``alpha``, ``pseudo_weight``, ``pseudo_start``, ``supervised_weight``,
``critic_noise``, the learning rates) is an hparam, sweepable.

Data: the training batch is x_u with its labels hidden (:meth:`TripleGAN.train_data` sets
them to −1); the ``"labeled"`` stream draws ``labeled_batch_size`` pairs a step from the
class-balanced subset of ``num_labeled`` examples the seed picks (as the semi-supervised
AAE's).

Networks: MLPs (this CPU's budget; the paper's MNIST nets are a CNN classifier and MLP G/D
with its own schedule): G = the GAN family's MLP generator on [z, one-hot y] (LeakyReLU,
batch norm), D = :class:`PairCritic` on [x, one-hot y], C = :class:`MLPClassifier`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from aaejax import core, data, evaluation, penalties
from aaejax.evaluation import figures, plots
from aaejax.nets import networks
from aaejax import priors as priors_lib
from aaejax.models import gan


DEFAULT_GEN_HIDDEN = (500, 500)
DEFAULT_CRITIC_HIDDEN = (1000, 500)
DEFAULT_CLASSIFIER_HIDDEN = (1000, 1000)


# ---- networks ----------------------------------------------------------------------------


class PairCritic(nn.Module):
  """D(x, y): an MLP logit of [flattened x, one-hot y] (LeakyReLU, optional dropout).

  Called with labels ``y`` of shape (n, K) (one-hot), it returns (n,) logits; with
  ``y=None`` it returns (n, K) logits, D(x, c) for every class c, computing the image half
  of the first layer once: W·[x, e_c] + b = (W_x x + b) + W_y[c].
  """

  hidden: Sequence[int] = DEFAULT_CRITIC_HIDDEN
  num_classes: int = 10
  negative_slope: float = 0.2
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, y=None, train: bool = True):
    if not self.hidden:
      raise ValueError("PairCritic needs at least one hidden layer.")
    n, k = x.shape[0], self.num_classes
    width = self.hidden[0]
    hx = nn.Dense(width, dtype=self.dtype, name="x_in")(x.reshape(n, -1).astype(self.dtype))
    y_in = nn.Dense(width, use_bias=False, dtype=self.dtype, name="y_in")
    if y is None:
      h = (hx[:, None, :] + y_in(jnp.eye(k, dtype=self.dtype))[None]).reshape(n * k, width)
    else:
      h = hx + y_in(y.astype(self.dtype))
    h = nn.leaky_relu(h, self.negative_slope)
    if self.dropout:
      h = nn.Dropout(self.dropout, deterministic=not train)(h)
    out = networks.MLP(tuple(self.hidden[1:]), 1, self.negative_slope, self.dropout,
                       dtype=self.dtype, name="mlp")(h, train)[:, 0]
    return out.reshape(n, k) if y is None else out


class MLPClassifier(nn.Module):
  """C(y|x): flattened image -> ReLU MLP -> (n, K) logits (dropout optional)."""

  num_classes: int = 10
  hidden: Sequence[int] = DEFAULT_CLASSIFIER_HIDDEN
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = True):
    h = x.reshape(x.shape[0], -1).astype(self.dtype)
    return networks.MLP(tuple(self.hidden), self.num_classes, dropout=self.dropout,
                        dtype=self.dtype, name="mlp")(h, train)


# ---- the loss algebra (pure; tested on hand-made logits) -----------------------------------


def critic_loss(real_logits, gen_logits, unl_logits, unl_probs, alpha):
  """D's loss: −log D(x_l, y_l) − α Σ_c p_c log(1 − D(x_u, c)) − (1 − α) log(1 − D(G, y)).

  Args:
    real_logits: (n_l,) D's logits of the labelled pairs.
    gen_logits: (n_g,) D's logits of G's pairs.
    unl_logits: (n_u, K) D(x_u, c) for every class c.
    unl_probs: (n_u, K) C's probabilities p_c(c|x_u) (held fixed).
    alpha: the weight of C's fakes (1/2 in the paper).
  """
  real = jnp.mean(jax.nn.softplus(-real_logits))
  unl = jnp.mean(jnp.sum(unl_probs * jax.nn.softplus(unl_logits), axis=-1))
  fake = jnp.mean(jax.nn.softplus(gen_logits))
  return real + alpha * unl + (1.0 - alpha) * fake


def classifier_adversarial(unl_probs, unl_logits):
  """C's adversarial term E_x Σ_c p_c(c|x) · (−log D(x, c)): the exact expectation over
  C's softmax of the non-saturating loss of the pair (x, ŷ), D's logits held fixed."""
  return jnp.mean(jnp.sum(unl_probs * jax.nn.softplus(-unl_logits), axis=-1))


def pseudo_label_weight(progress, hparams):
  """α_P(p): ``pseudo_weight`` from progress ``pseudo_start`` on, 0 before."""
  on = (progress >= hparams["pseudo_start"]).astype(jnp.float32)
  return hparams["pseudo_weight"] * on


def _ce(logits, labels):
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


# ---- the model ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class TripleGAN(gan.AdversarialGenerator):
  """Triple-GAN for semi-supervised classification and class-conditional generation.

  Hparams (all sweepable): ``lr_critic``, ``lr_classifier``, ``lr_gen`` (Adam), ``alpha``
  (the share of C's fakes in D's fake loss; 1/2), ``supervised_weight`` (R_L),
  ``pseudo_weight`` and ``pseudo_start`` (R_P from progress ``pseudo_start`` on),
  ``critic_noise`` (std of gaussian noise on D's image inputs), ``prior_scale``,
  ``num_steps`` (the progress clock).

  Attributes:
    num_classes: K, the labels' classes.
    num_labeled: size of the class-balanced labelled subset (a multiple of K).
    labeled_batch_size: labelled pairs per step (the ``"labeled"`` stream).
    classifier: linen module, images -> (n, K) logits (default :class:`MLPClassifier`).

  Example:

    >>> import jax, jax.numpy as jnp
    >>> from aaejax.nets import networks
    >>> from aaejax.models import triplegan
    >>> model = triplegan.TripleGAN(
    ...     image_shape=(28, 28, 1), latent_dim=4, labeled_batch_size=4,
    ...     generator=networks.MLPDecoder((28, 28, 1), (16,), 0.2, batch_norm=True),
    ...     critic=triplegan.PairCritic((16,)), classifier=triplegan.MLPClassifier(10, (16,)))
    >>> state = model.init(jax.random.key(0))
    >>> x = jnp.zeros((4, 28, 28, 1), jnp.uint8)
    >>> batch = {"image": x, "label": -jnp.ones(4, jnp.int32), "labeled_image": x,
    ...          "labeled_label": jnp.arange(4)}
    >>> state, m = jax.jit(model.train_step)(state, batch, jax.random.key(1))
    >>> sorted(state.opt_state), model.classify(state, x).shape
    (['classifier', 'critic', 'gen'], (4, 10))
  """

  num_classes: int = 10
  num_labeled: int = 100
  labeled_batch_size: int = 100
  classifier: nn.Module | None = None

  def __post_init__(self):
    k = self.num_classes
    if k < 2:
      raise ValueError(f"num_classes must be >= 2, got {k}.")
    if self.num_labeled <= 0 or self.num_labeled % k:
      raise ValueError(f"num_labeled must be a positive multiple of the {k} classes "
                       f"(a class-balanced subset), got {self.num_labeled}.")
    if self.labeled_batch_size < 1:
      raise ValueError(f"labeled_batch_size must be >= 1, got {self.labeled_batch_size}.")
    set_ = lambda name, v: object.__setattr__(self, name, v)
    shape = tuple(self.image_shape)
    if self.generator is None:
      set_("generator", networks.MLPDecoder(shape, DEFAULT_GEN_HIDDEN, negative_slope=0.2,
                                            batch_norm=True, dtype=self.dtype))
    if self.critic is None:
      set_("critic", PairCritic(DEFAULT_CRITIC_HIDDEN, k, dtype=self.dtype))
    if self.classifier is None:
      set_("classifier", MLPClassifier(k, DEFAULT_CLASSIFIER_HIDDEN, dtype=self.dtype))
    for name, net in (("critic", self.critic), ("classifier", self.classifier)):
      if getattr(net, "num_classes", k) != k:
        raise ValueError(f"the {name} has {net.num_classes} classes, the model {k}.")
    super().__post_init__()

  @classmethod
  def from_config(cls, config, image_shape, **fields):
    image_shape = tuple(image_shape)
    if config.get("network", "mlp") != "mlp":
      raise ValueError(f"triplegan has MLP networks only, got network={config.network!r}.")
    k = int(config.get("num_classes", 10))
    dtype = networks.compute_dtype(config.get("compute_dtype", "float32"))
    generator = networks.MLPDecoder(image_shape, tuple(config.get("hidden", DEFAULT_GEN_HIDDEN)),
                                    negative_slope=0.2, batch_norm=config.get("batch_norm", True),
                                    dtype=dtype)
    critic = PairCritic(tuple(config.get("critic_hidden", DEFAULT_CRITIC_HIDDEN)), k,
                        dropout=float(config.get("critic_dropout", 0.0)), dtype=dtype)
    classifier = MLPClassifier(k, tuple(config.get("classifier_hidden",
                                                   DEFAULT_CLASSIFIER_HIDDEN)),
                               dropout=float(config.get("classifier_dropout", 0.0)), dtype=dtype)
    prior = priors_lib.get(config.prior, dim=config.latent_dim,
                           **dict(config.get("prior_options", {}) or {}))
    return cls(image_shape=image_shape, latent_dim=config.latent_dim, prior=prior,
               generator=generator, critic=critic, classifier=classifier, num_classes=k,
               num_labeled=int(config.get("num_labeled", 100)),
               labeled_batch_size=int(config.get("labeled_batch_size", config.batch_size)),
               **core.optimizer_fields(config), **fields)

  # ---- declarations ----------------------------------------------------------------------

  def networks(self):
    k = self.num_classes
    return {"generator": (self.generator, ((2, self.latent_dim + k),)),
            "critic": (self.critic, ((2, *self.image_shape), (2, k))),
            "classifier": (self.classifier, ((2, *self.image_shape),))}

  def phases(self):
    return (core.Phase("critic", ("critic",), self.loss_critic),
            core.Phase("classifier", ("classifier",), self.loss_classifier,
                       forward=self.forward_cg),
            core.Phase("gen", ("generator",), self.loss_gen, lr_field="learning_rate",
                       forward=self.forward_cg))

  def default_hparams(self):
    return {"lr_critic": 3e-4, "lr_classifier": 1e-3, "lr_gen": 3e-4, "alpha": 0.5,
            "supervised_weight": 1.0, "pseudo_weight": 0.1, "pseudo_start": 0.25,
            "critic_noise": 0.3, "prior_scale": 1.0, "num_steps": 1.0}

  def capabilities(self):
    return frozenset({core.CLASSIFY, core.GENERATE})

  def streams(self):
    return {"labeled": core.Stream(self.labeled_batch_size,
                                   data.labeled_subset(self.num_labeled, self.num_classes))}

  def train_data(self, train, seed):
    """The training set with every label hidden (−1): the step sees labels only through
    the ``"labeled"`` stream, which draws from the set as loaded."""
    del seed
    if "label" not in train:
      return train
    return {**train, "label": np.full_like(np.asarray(train["label"]), -1)}

  def label_fields(self):
    return {"label": (self.num_classes, True), "labeled_label": (self.num_classes, False)}

  def evaluators(self):
    return (evaluation.Evaluator("triplegan_agreement", frozenset({core.CLASSIFY,
                                                                   core.GENERATE}),
                                 _agreement),)

  def figures(self):
    return (figures.Figure("class_grid", frozenset({core.GENERATE}), _class_grid),)

  # ---- networks as functions -------------------------------------------------------------

  def generator_input(self, z, labels):
    """[z, one-hot(labels)]: G's input."""
    return jnp.concatenate([z, jax.nn.one_hot(labels, self.num_classes, dtype=z.dtype)], -1)

  def fake_pairs(self, params, model_state, z, labels, train=True):
    """G(z, y) in [0, 1] for integer ``labels``, and the updated model state."""
    return self.fake_images(params, model_state, self.generator_input(z, labels), train)

  def classifier_logits(self, params, model_state, x, rng=None, train=True):
    rngs = None if rng is None else {"dropout": rng}
    return self.apply("classifier", params, model_state, x, train=train, rngs=rngs)[0]

  def critic_logits(self, state, params, model_state, images, labels_onehot, rng):
    """D's logits of (images + critic_noise noise, labels): (n,), or (n, K) for every class
    when ``labels_onehot`` is None. The critic has no batch norm: model_state unchanged."""
    noise_rng, dropout_rng = jax.random.split(rng)
    noisy = images + state.hparams["critic_noise"] * jax.random.normal(noise_rng, images.shape,
                                                                       images.dtype)
    return self.apply("critic", params, model_state, noisy, labels_onehot, train=True,
                      rngs={"dropout": dropout_rng})[0]

  # ---- the step ----------------------------------------------------------------------------

  def prepare(self, state, batch, rng):
    if "labeled_image" not in batch or "labeled_label" not in batch:
      raise ValueError("TripleGAN needs batch['labeled_image'] and batch['labeled_label'] (the "
                       "training loop draws them from the model's 'labeled' stream).")
    return {"x_u": core.image_inputs(batch["image"], self.image_shape),
            "x_l": core.image_inputs(batch["labeled_image"], self.image_shape,
                                     "labeled_image"),
            "y_l": batch["labeled_label"],
            "keys": jax.random.split(rng, 12)}

  def _gen_draw(self, state, key, n):
    """(z, y): n noise vectors and uniform labels."""
    z_key, y_key = jax.random.split(key)
    return (self.sample_prior(state, z_key, n),
            jax.random.randint(y_key, (n,), 0, self.num_classes))

  def loss_critic(self, inputs, params, shared=None):
    """Phase 1: D on real labelled pairs vs C's pairs (expected over p_c) and G's pairs."""
    del shared
    state, ins, keys = inputs.state, inputs.inputs, inputs.inputs["keys"]
    k = self.num_classes
    x_u, x_l, y_l = ins["x_u"], ins["x_l"], ins["y_l"]
    z, y_g = self._gen_draw(state, keys[0], x_u.shape[0])
    fake, ms = self.fake_pairs(params, state.model_state, z, y_g)
    fake = jax.lax.stop_gradient(fake)
    probs = jax.lax.stop_gradient(jax.nn.softmax(
        self.classifier_logits(params, ms, x_u, train=False)))
    n_l = x_l.shape[0]
    pair_logits = self.critic_logits(
        state, params, ms, jnp.concatenate([x_l, fake]),
        jax.nn.one_hot(jnp.concatenate([y_l, y_g]), k), keys[1])
    real_l, gen_l = pair_logits[:n_l], pair_logits[n_l:]
    unl_l = self.critic_logits(state, params, ms, x_u, None, keys[2])
    loss = critic_loss(real_l, gen_l, unl_l, probs, state.hparams["alpha"])
    unl_fake = jnp.sum(probs * (unl_l < 0), axis=-1)  # C's pairs D calls fake, p_c-weighted
    acc = (jnp.mean(real_l > 0) + jnp.mean(gen_l < 0) + jnp.mean(unl_fake)) / 3.0
    return loss, ({"critic_loss": loss, "critic_acc": acc,
                   "critic_real_prob": jnp.mean(jax.nn.sigmoid(real_l)),
                   "critic_gen_prob": jnp.mean(jax.nn.sigmoid(gen_l)),
                   "critic_unl_prob": jnp.mean(jnp.sum(probs * jax.nn.sigmoid(unl_l), -1))},
                  ms)

  def forward_cg(self, inputs, params):
    """The pass phases 2 (C) and 3 (G) share, with D as phase 1 left it."""
    state, ins, keys = inputs.state, inputs.inputs, inputs.inputs["keys"]
    k = self.num_classes
    x_u, x_l = ins["x_u"], ins["x_l"]
    z, y_g = self._gen_draw(state, keys[3], x_u.shape[0])
    images, ms = self.fake_pairs(params, state.model_state, z, y_g)
    shared = {
        "logits_u": self.classifier_logits(params, ms, x_u, keys[4]),
        "logits_l": self.classifier_logits(params, ms, x_l, keys[5]),
        "logits_g": self.classifier_logits(params, ms, jax.lax.stop_gradient(images), keys[6]),
        "critic_gen": self.critic_logits(state, params, ms, images, jax.nn.one_hot(y_g, k),
                                         keys[7]),
        "critic_unl": jax.lax.stop_gradient(
            self.critic_logits(state, params, ms, x_u, None, keys[8])),
        "y_g": jax.nn.one_hot(y_g, k),  # floats: the core differentiates every shared leaf
    }
    return shared, ms

  def loss_classifier(self, inputs, params, shared):
    """Phase 2: α · adversarial + supervised_weight · R_L + α_P(p) · R_P."""
    del params
    hp, y_l = inputs.hparams, inputs.inputs["y_l"]
    probs = jax.nn.softmax(shared["logits_u"])
    adv = classifier_adversarial(probs, shared["critic_unl"])
    sup = _ce(shared["logits_l"], y_l)
    y_g = jnp.argmax(shared["y_g"], -1)
    pseudo = _ce(shared["logits_g"], y_g)
    w_p = pseudo_label_weight(inputs.progress, hp)
    loss = hp["alpha"] * adv + hp["supervised_weight"] * sup + w_p * pseudo
    acc = jnp.mean(jnp.argmax(shared["logits_l"], -1) == y_l)
    gen_acc = jnp.mean(jnp.argmax(shared["logits_g"], -1) == y_g)
    return loss, ({"classifier_loss": loss, "classifier_adv": adv, "supervised_loss": sup,
                   "supervised_acc": acc, "pseudo_loss": pseudo, "pseudo_weight_now": w_p,
                   "gen_label_acc": gen_acc}, inputs.state.model_state)

  def loss_gen(self, inputs, params, shared):
    """Phase 3: (1 − α) · −log D(G(z, y), y)."""
    del params
    loss = penalties.generator_loss(shared["critic_gen"])
    return ((1.0 - inputs.hparams["alpha"]) * loss,
            ({"gen_loss": loss}, inputs.state.model_state))

  # ---- what a trained model does ---------------------------------------------------------

  def classify(self, state, images):
    """(n, K) logits of C(y | x) (inference mode)."""
    x = core.image_inputs(images, self.image_shape, "images", None)
    return self.classifier_logits(state.params, state.model_state, x, train=False)

  def generate_with_labels(self, state, rng, labels):
    """G(z, y) in [0, 1] for integer ``labels`` (n,), z ~ p(z) (inference mode)."""
    labels = core.check_labels(labels, self.num_classes, "labels", None)
    z = self.sample_prior(state, rng, labels.shape[0])
    return self.fake_pairs(state.params, state.model_state, z, labels, train=False)[0]

  def generate(self, state, rng, n):
    """n images G(z, y), y uniform over the classes."""
    n = core.check_count(n)
    y_rng, z_rng = jax.random.split(rng)
    labels = jax.random.randint(y_rng, (n,), 0, self.num_classes)
    return self.generate_with_labels(state, z_rng, labels)

  def decode(self, state, codes):
    """G([z, one-hot y]) of float codes (n, latent_dim + K) (inference mode)."""
    codes = core.check_codes(codes, self.latent_dim + self.num_classes, "codes")
    return self.fake_images(state.params, state.model_state, codes, train=False)[0]

  def decoder_input_dim(self):
    return self.latent_dim + self.num_classes


# ---- evaluator and figure ----------------------------------------------------------------

AGREEMENT_SAMPLES = 1000


def _agreement(ctx):
  """``eval/gen_label_agreement``: the share of G(z, y) that C labels y (1,000 samples)."""
  labels = jnp.arange(AGREEMENT_SAMPLES) % ctx.model.num_classes
  return {"eval/gen_label_agreement": float(_agreement_fn(ctx.model, ctx.state, ctx.rng,
                                                          labels))}


def _agreement_body(model, state, rng, labels):
  images = model.generate_with_labels(state, rng, labels)
  return jnp.mean(jnp.argmax(model.classify(state, images), -1) == labels)


_agreement_fn = jax.jit(_agreement_body, static_argnums=0)


def class_grid_images(model, state, rng, columns: int = 10) -> np.ndarray:
  """(K · columns, H, W, C): row y holds G(z_j, y) for the same ``columns`` noises z_j."""
  k = model.num_classes
  z = model.sample_prior(state, rng, columns)
  codes = jnp.concatenate([jnp.tile(z, (k, 1)),
                           jnp.repeat(jnp.eye(k, dtype=z.dtype), columns, axis=0)], -1)
  return np.asarray(_decode(model, state, codes))


_decode = jax.jit(lambda model, state, codes: model.decode(state, codes), static_argnums=0)


def _class_grid(c):
  k = c.model.num_classes
  images = class_grid_images(c.model, c.state, jax.random.fold_in(c.rng, 7))
  return [plots.image_grid(c.path("class_grid.png"), images, len(images) // k,
                           title="G(z, y): rows y = 0..9, columns share z",
                           row_titles=[str(j) for j in range(k)])]


__all__ = ["TripleGAN", "PairCritic", "MLPClassifier", "critic_loss", "classifier_adversarial",
           "pseudo_label_weight", "class_grid_images"]
