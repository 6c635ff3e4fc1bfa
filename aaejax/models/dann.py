"""Domain-adversarial training, DANN (Ganin et al. 2016, "Domain-Adversarial Training of
Neural Networks", JMLR 17(59)).

Three networks: a feature extractor G_f, a label predictor G_y on the features of
labelled **source** images (the run's own data set, MNIST) and a domain critic G_d that
tells source features from **target** features (unlabelled images of another domain,
:data:`TARGET_DATASET`, the MNIST-M-style set of :mod:`aaejax.data.mnistm`, drawn each step by
the stream ``"target"``: ``batch["target_image"]``). Between G_f and G_d sits the
gradient-reversal layer R_λ (:func:`grad_reverse`): the identity forward, −λ × the
gradient backward. The step is one phase, ``dann``, one Adam update of all three networks
on

    L = CE(G_y(G_f(x_s)), y_s) + BCE(G_d(R_λ(G_f([x_s, x_t]))), [0…0, 1…1])

(domain 0 = source, 1 = target): G_d descends the domain loss, G_f descends the label loss
and *ascends* λ × the domain loss, which pushes the two domains' features together. λ and
the learning rate follow the paper's schedules over training progress p = step /
``num_steps`` (:attr:`aaejax.core.StepInputs.progress`):

    λ_p = domain_weight · (2 / (1 + exp(−γ p)) − 1),      γ = ``grl_gamma`` = 10
    μ_p = μ0 / (1 + α p)^β,                              α = 10, β = 0.75

``domain_weight = 0`` is source-only training: G_f gets no gradient from G_d, which still
trains (at full rate) on the features, so ``eval/domain_critic_accuracy`` tells how far
apart source-only features are. The weight multiplies λ, not the domain loss, for that
reason: the critic's own loss is never scaled.

Differences from the paper, on purpose:

- **Grey source, colour target.** MNIST is 28×28×1, MNIST-M 28×28×3: the model tiles grey
  images to 3 channels before G_f (in training, :meth:`DANN.classify` and the evaluators),
  so one G_f reads both domains (the paper does the same).
- **Adam** (the core's optimizer, β1 0.9) with μ0 = 1e-3 instead of SGD with momentum 0.9
  and μ0 = 0.01; the annealing μ_p is the paper's.
- **Features.** ``network="conv"`` is the paper's MNIST extractor (conv 32 5×5, ReLU, max
  pool 2, conv 48 5×5, ReLU, max pool 2), with VALID padding (4·4·48 = 768 features; the
  paper does not say); ``network="mlp"`` flattens and applies ReLU layers (faster on CPU).
  The label predictor is 100-100-10 and the domain critic 100-1, the paper's MNIST sizes.
- The target set is MNIST-M-*style* (6 scikit-image photos instead of BSDS500): numbers
  on it are not the paper's MNIST-M numbers.

Evaluators of this family (:data:`EVALUATORS`): ``eval/target_accuracy`` and
``eval/source_accuracy`` (% on the target and source test sets),
``eval/domain_critic_accuracy`` (balanced accuracy in [0, 1] of G_d telling source test
features from target test features; 0.5: the domains are aligned); the shared
``classification`` evaluator adds ``eval/error_rate`` on the source test set. Figure
``features_pca.png`` (:data:`FIGURES`): a 2-D PCA of source and target test features.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from aaejax import core, evaluation
from aaejax.data import batching
from aaejax.evaluation import figures, plots
from aaejax.nets import networks

TARGET_DATASET = "mnist_m_style"
TARGET_SHAPE = (28, 28, 3)
PAPER_CHANNELS = (32, 48)     # the paper's MNIST feature extractor
LABEL_HIDDEN = (100, 100)     # the paper's MNIST label predictor: 100-100-10
DOMAIN_HIDDEN = (100,)        # the paper's MNIST domain critic: 100-1
FEATURE_NETWORKS = ("conv", "mlp")
PCA_POINTS = 2000             # test images of each domain in features_pca.png


# ---- the gradient-reversal layer and the schedules -------------------------------------------


@jax.custom_vjp
def grad_reverse(x: jax.Array, lam: jax.Array) -> jax.Array:
  """R_λ: the identity forward; the gradient −λ·g backward (λ gets none). ``lam`` is an
  array (an hparam, scheduled), not a trace constant.

  >>> float(jax.grad(lambda x: grad_reverse(x, jnp.float32(0.5)) * 3.0)(1.0))
  -1.5
  """
  del lam
  return x


def _grad_reverse_fwd(x, lam):
  return x, lam


def _grad_reverse_bwd(lam, g):
  return -lam.astype(g.dtype) * g, jnp.zeros_like(lam)


grad_reverse.defvjp(_grad_reverse_fwd, _grad_reverse_bwd)


def grl_schedule(progress, gamma=10.0):
  """The paper's reversal weight 2 / (1 + exp(−γ p)) − 1: 0 at p = 0, → 1 as p grows."""
  return 2.0 / (1.0 + jnp.exp(-gamma * progress)) - 1.0


def lr_annealing(progress, alpha=10.0, beta=0.75):
  """The paper's learning-rate multiplier 1 / (1 + α p)^β (μ_p = μ0 · this)."""
  return (1.0 + alpha * progress) ** (-beta)


# ---- networks --------------------------------------------------------------------------------


class FeatureExtractor(nn.Module):
  """G_f: images (n, H, W, 3) in [0, 1] -> (n, d) features (after a ReLU).

  ``network="conv"``: per entry of ``channels`` a 5×5 conv (``padding``), ReLU and 2×2
  max pool, then flatten (the paper's MNIST net with ``(32, 48)``); ``"mlp"``: flatten, then
  ReLU layers of ``hidden``. Inputs are centred (x − 0.5) first.
  """

  network: str = "conv"
  channels: Sequence[int] = PAPER_CHANNELS
  hidden: Sequence[int] = (256,)
  kernel_size: int = 5
  padding: str = "VALID"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = True):
    del train
    h = (x - 0.5).astype(self.dtype)
    if self.network == "conv":
      for i, c in enumerate(self.channels):
        h = nn.Conv(c, (self.kernel_size, self.kernel_size), padding=self.padding,
                    dtype=self.dtype, name=f"conv_{i}")(h)
        h = nn.max_pool(nn.relu(h), (2, 2), strides=(2, 2))
      h = h.reshape(h.shape[0], -1)
    elif self.network == "mlp":
      h = h.reshape(h.shape[0], -1)
      for i, w in enumerate(self.hidden):
        h = nn.relu(nn.Dense(w, dtype=self.dtype, name=f"hidden_{i}")(h))
    else:
      raise ValueError(f"unknown feature network {self.network!r}; expected one of "
                       f"{FEATURE_NETWORKS}.")
    return h.astype(jnp.float32)


def to_rgb(x: jax.Array) -> jax.Array:
  """Grey images (…, 1) tiled to 3 channels; colour images unchanged."""
  return jnp.tile(x, (1,) * (x.ndim - 1) + (3,)) if x.shape[-1] == 1 else x


def drop_labels(arrays, seed):
  """The target stream's source: the images only (the target domain is unlabelled)."""
  del seed
  return {"image": np.asarray(arrays["image"])}


# ---- the model ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class DANN(core.Model):
  """Domain-adversarial training: source labels, unlabelled target images, one phase.

  Hparams (all sweepable): ``lr_dann`` (Adam, config ``learning_rate``), ``domain_weight``
  (multiplies λ_p; 0 = source-only), ``grl_gamma`` (γ of λ_p), ``anneal_alpha``,
  ``anneal_beta`` (α, β of μ_p), ``num_steps`` (the progress clock; the config's).

  Attributes:
    image_shape: (H, W, C) of the source images, C 1 (tiled to 3) or 3.
    num_classes: classes of the source labels.
    target_batch_size: target images per step (the ``"target"`` stream).
    target_dataset: the target domain's data set (its ``train`` split feeds the stream,
      its ``test`` split the target evaluators).
    target_shape: (H, W, 3) of the target images.
    features: G_f (default the paper's conv net).
    label_hidden, domain_hidden: hidden layers of G_y and G_d (ReLU MLPs).

  Example:

    >>> import jax, jax.numpy as jnp
    >>> from aaejax.models.dann import DANN, FeatureExtractor
    >>> model = DANN(image_shape=(28, 28, 1), features=FeatureExtractor("mlp", hidden=(16,)),
    ...              label_hidden=(8,), domain_hidden=(8,), target_batch_size=4)
    >>> state = model.init(jax.random.key(0))
    >>> batch = {"image": jnp.zeros((4, 28, 28, 1), jnp.uint8), "label": jnp.arange(4),
    ...          "target_image": jnp.zeros((4, 28, 28, 3), jnp.uint8)}
    >>> state, m = jax.jit(model.train_step)(state, batch, jax.random.key(1))
    >>> sorted(m)
    ['class_acc', 'class_loss', 'domain_acc', 'domain_loss', 'grl_lambda', 'loss']
    >>> model.classify(state, batch["image"]).shape
    (4, 10)
  """

  image_shape: tuple[int, ...] = (28, 28, 1)
  num_classes: int = 10
  target_batch_size: int = 100
  target_dataset: str = TARGET_DATASET
  target_shape: tuple[int, ...] = TARGET_SHAPE
  features: nn.Module | None = None
  label_hidden: Sequence[int] = LABEL_HIDDEN
  domain_hidden: Sequence[int] = DOMAIN_HIDDEN

  def __post_init__(self):
    set_ = lambda k, v: object.__setattr__(self, k, v)
    set_("image_shape", tuple(self.image_shape))
    set_("target_shape", tuple(self.target_shape))
    set_("label_hidden", tuple(self.label_hidden))
    set_("domain_hidden", tuple(self.domain_hidden))
    if len(self.image_shape) != 3 or self.image_shape[-1] not in (1, 3):
      raise ValueError(f"image_shape must be (H, W, 1) or (H, W, 3), got {self.image_shape}.")
    if len(self.target_shape) != 3 or self.target_shape[-1] != 3:
      raise ValueError(f"target_shape must be (H, W, 3), got {self.target_shape}.")
    if self.image_shape[:2] != self.target_shape[:2]:
      raise ValueError(f"source images {self.image_shape} and target images "
                       f"{self.target_shape} differ in size.")
    if self.target_batch_size < 1:
      raise ValueError(f"target_batch_size must be >= 1, got {self.target_batch_size}.")
    if self.features is None:
      set_("features", FeatureExtractor(dtype=self.dtype))
    shape = jax.eval_shape(lambda x: self.features.init_with_output(jax.random.key(0), x)[0],
                           jax.ShapeDtypeStruct((2, *self.feature_input_shape), jnp.float32))
    set_("_feature_dim", int(shape.shape[-1]))
    set_("_classifier", networks.MLP(self.label_hidden, self.num_classes, dtype=self.dtype))
    set_("_critic", networks.MLP(self.domain_hidden, 1, dtype=self.dtype))

  @classmethod
  def from_config(cls, config, image_shape, **fields):
    """Fields: ``network`` ("conv" or "mlp"), ``feature_channels`` (conv),
    ``feature_hidden`` (mlp), ``feature_padding``, ``label_hidden``, ``domain_hidden``,
    ``batch_size`` (also the target batch); ``learning_rate`` and ``domain_weight`` set
    hparams."""
    dtype = networks.compute_dtype(config.get("compute_dtype", "float32"))
    kind = config.get("network", "conv")
    if kind not in FEATURE_NETWORKS:
      raise ValueError(f"unknown network {kind!r} for dann; expected one of "
                       f"{FEATURE_NETWORKS}.")
    features = FeatureExtractor(kind, tuple(config.get("feature_channels", PAPER_CHANNELS)),
                                tuple(config.get("feature_hidden", (256,))),
                                padding=config.get("feature_padding", "VALID"), dtype=dtype)
    return cls(image_shape=tuple(image_shape), num_classes=int(config.get("num_classes", 10)),
               target_batch_size=int(config.batch_size), features=features,
               label_hidden=tuple(config.get("label_hidden", LABEL_HIDDEN)),
               domain_hidden=tuple(config.get("domain_hidden", DOMAIN_HIDDEN)),
               **core.optimizer_fields(config), **fields)

  # ---- declarations ----------------------------------------------------------------------

  @property
  def feature_input_shape(self) -> tuple[int, ...]:
    return (*self.image_shape[:2], 3)

  @property
  def feature_dim(self) -> int:
    return self._feature_dim

  def networks(self):
    d = self._feature_dim
    return {"features": (self.features, ((2, *self.feature_input_shape),)),
            "classifier": (self._classifier, ((2, d),)),
            "domain": (self._critic, ((2, d),))}

  def phases(self):
    return (core.Phase("dann", ("features", "classifier", "domain"), self.loss,
                       lr_field="learning_rate", schedule=self.lr_multiplier),)

  def default_hparams(self):
    return {"lr_dann": 1e-3, "domain_weight": 1.0, "grl_gamma": 10.0, "anneal_alpha": 10.0,
            "anneal_beta": 0.75, "num_steps": 10_000.0}

  def capabilities(self):
    return frozenset({core.CLASSIFY})

  def streams(self):
    return {"target": core.Stream(self.target_batch_size, select=drop_labels,
                                  dataset=self.target_dataset, split="train",
                                  image_shape=self.target_shape)}

  def label_fields(self):
    return {"label": (self.num_classes, False)}

  def eval_splits(self):
    return {"test": (None, "test"), "target_test": (self.target_dataset, "test")}

  def evaluators(self):
    return EVALUATORS

  def figures(self):
    return FIGURES

  # ---- schedules -------------------------------------------------------------------------

  def grl_lambda(self, progress, hparams):
    """λ_p = domain_weight · (2 / (1 + exp(−γ p)) − 1)."""
    return hparams["domain_weight"] * grl_schedule(progress, hparams["grl_gamma"])

  def lr_multiplier(self, progress, hparams):
    """μ_p / μ0 = 1 / (1 + α p)^β (:attr:`aaejax.core.Phase.schedule`)."""
    return lr_annealing(progress, hparams["anneal_alpha"], hparams["anneal_beta"])

  # ---- the step ---------------------------------------------------------------------------

  def prepare(self, state, batch, rng):
    """Float source images tiled to RGB, the target images, the source labels."""
    del state, rng
    for key in ("label", "target_image"):
      if key not in batch:
        raise ValueError(f"DANN needs batch[{key!r}] (source labels; target images, drawn "
                         f"by the training loop from the 'target' stream); the batch has "
                         f"{sorted(batch)}.")
    x = to_rgb(core.image_inputs(batch["image"], self.image_shape))
    xt = core.image_inputs(batch["target_image"], self.target_shape, "target_image")
    return {"x": x, "x_target": xt, "labels": batch["label"]}

  def loss(self, inputs, params, shared=None):
    """CE(G_y(G_f(x_s)), y_s) + BCE(G_d(R_λ(G_f([x_s, x_t]))), domain), one G_f pass."""
    del shared
    x, xt, labels = inputs.inputs["x"], inputs.inputs["x_target"], inputs.inputs["labels"]
    n = x.shape[0]
    ms = inputs.state.model_state
    feats, _ = self.apply("features", params, ms, jnp.concatenate([x, xt]), train=True)
    logits, _ = self.apply("classifier", params, ms, feats[:n], train=True)
    lam = self.grl_lambda(inputs.progress, inputs.hparams)
    d_logits, _ = self.apply("domain", params, ms, grad_reverse(feats, lam), train=True)
    d_logits = d_logits[:, 0]
    domain = jnp.concatenate([jnp.zeros(n), jnp.ones(xt.shape[0])])
    class_loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
    domain_loss = jnp.mean(optax.sigmoid_binary_cross_entropy(d_logits, domain))
    loss = class_loss + domain_loss
    metrics = {"loss": loss, "class_loss": class_loss, "domain_loss": domain_loss,
               "class_acc": jnp.mean(jnp.argmax(logits, -1) == labels),
               "domain_acc": jnp.mean((d_logits > 0) == (domain > 0.5)),
               "grl_lambda": lam}
    return loss, (metrics, ms)

  # ---- inference --------------------------------------------------------------------------

  def _rgb_inputs(self, images, name="images"):
    """Float RGB inputs of source (grey or colour) or target images."""
    images = core.check_images(images, None, name, where=None)
    shape = tuple(images.shape[1:])
    if shape not in (self.image_shape, self.target_shape):
      raise ValueError(f"{name} has shape {tuple(images.shape)}; expected (n, "
                       f"{', '.join(map(str, self.image_shape))}) (source) or (n, "
                       f"{', '.join(map(str, self.target_shape))}) (target).")
    return to_rgb(core.image_inputs(images, shape, name, where=None))

  def extract(self, state, images):
    """(n, d) features G_f of source or target images (grey ones tiled to RGB)."""
    x = self._rgb_inputs(images)
    return self.apply("features", state.params, state.model_state, x, train=False)[0]

  def classify(self, state, images):
    """(n, num_classes) label logits G_y(G_f(x)) of source (or target) images."""
    return self.apply("classifier", state.params, state.model_state,
                      self.extract(state, images), train=False)[0]

  def domain_outputs(self, state, images) -> dict[str, jax.Array]:
    """Label logits, domain logits (> 0: target) and features of ``images``."""
    feats = self.extract(state, images)
    logits = self.apply("classifier", state.params, state.model_state, feats, train=False)[0]
    d = self.apply("domain", state.params, state.model_state, feats, train=False)[0][:, 0]
    return {"logits": logits, "domain_logits": d, "features": feats}


# ---- metrics and evaluators ---------------------------------------------------------------------


def accuracy_percent(logits, labels) -> float:
  """% of ``labels`` that argmax ``logits`` gets right."""
  logits, labels = np.asarray(logits), np.asarray(labels)
  return float(100.0 * np.mean(np.argmax(logits, axis=-1) == labels))


def domain_accuracy(source_logits, target_logits) -> float:
  """Balanced accuracy in [0, 1] of a domain critic (logit > 0: target): the mean of its
  accuracy on source and on target examples. 0.5: it cannot tell them apart."""
  s, t = np.asarray(source_logits), np.asarray(target_logits)
  return float(0.5 * (np.mean(s <= 0) + np.mean(t > 0)))


@functools.partial(jax.jit, static_argnums=0)
def _eval_outputs(model, state, images):
  """Label and domain logits of ``images``, chunked over :data:`aaejax.evaluation.EVAL_BATCH`."""
  fn = lambda b: {k: v for k, v in model.domain_outputs(state, b["image"]).items()
                  if k != "features"}
  return batching.chunked(fn, {"image": images}, evaluation.EVAL_BATCH)


def _split_outputs(ctx, split: str) -> dict[str, np.ndarray]:
  """:func:`_eval_outputs` over eval split ``split``, once per eval (the evaluators share it)."""
  key = ("dann_outputs", split)
  if key not in ctx._cache:
    ctx._cache[key] = jax.device_get(_eval_outputs(ctx.model, ctx.state,
                                                   ctx.split(split)["image"]))
  return ctx._cache[key]


def _target_accuracy(ctx):
  return {"eval/target_accuracy": accuracy_percent(_split_outputs(ctx, "target_test")["logits"],
                                                   ctx.split("target_test")["label"])}


def _source_accuracy(ctx):
  return {"eval/source_accuracy": accuracy_percent(_split_outputs(ctx, "test")["logits"],
                                                   ctx.split("test")["label"])}


def _domain_critic_accuracy(ctx):
  return {"eval/domain_critic_accuracy": domain_accuracy(
      _split_outputs(ctx, "test")["domain_logits"],
      _split_outputs(ctx, "target_test")["domain_logits"])}


EVALUATORS = (
    evaluation.Evaluator("target_accuracy", needs=frozenset(), fn=_target_accuracy),
    evaluation.Evaluator("source_accuracy", needs=frozenset(), fn=_source_accuracy),
    evaluation.Evaluator("domain_critic_accuracy", needs=frozenset(),
                         fn=_domain_critic_accuracy),
)


# ---- the figure ---------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=0)
def _features(model, state, images):
  return model.extract(state, images)


def _features_pca(c):
  source, target = c.test, c.splits["target_test"]
  fs = np.asarray(_features(c.model, c.state, source["image"][:PCA_POINTS]))
  ft = np.asarray(_features(c.model, c.state, target["image"][:PCA_POINTS]))
  lam = float(c.model.grl_lambda(core.progress(c.state), c.state.hparams))
  return [plots.features_pca_plot(c.path("features_pca.png"), fs, ft,
                            np.asarray(source["label"][:PCA_POINTS]),
                            np.asarray(target["label"][:PCA_POINTS]),
                            source_name="source (MNIST)", title=f"G_f test features, PCA (step {int(c.state.step)}, "
                                  f"λ = {lam:.2f})")]


FIGURES = (figures.Figure("features_pca", frozenset(), _features_pca),)
