"""Evaluators: the eval metrics of a run, chosen from what its model can do.

An evaluator is registered under a name with the capabilities it needs
(:mod:`aaejax.core`'s constants); a run evaluates every registered evaluator
whose needs its model declares (:meth:`aaejax.core.Model.capabilities`) and that
applies to its data, except those named in ``config.skip_evaluators``. Adding a
shared metric is one :func:`register` call here; a family's own metrics (DANN's
target-domain accuracy) are :class:`Evaluator` objects listed in its file
(:meth:`aaejax.core.Model.evaluators`), reading the model's other eval splits
(:meth:`aaejax.core.Model.eval_splits`) as :meth:`Context.split`.

========================  =================  ===========================================
evaluator                 needs              metrics
========================  =================  ===========================================
recon_loss                reconstruct        ``eval/recon_loss`` (nats per image, Bernoulli)
mmd_to_prior              encode, prior      ``eval/mmd_to_prior`` (IMQ, test codes vs p(z))
knn_accuracy              encode (labels)    ``eval/knn_accuracy`` (5-NN on training codes)
label_component           label_prior        ``eval/label_component_accuracy``
classification            classify           ``eval/error_rate`` (%), ``eval/y_confidence``
clustering                cluster            ``eval/categories_used``, ``eval/y_confidence``,
                                             ``eval/cluster_error`` (with labels)
likelihood                likelihood         ``eval/nll_elbo``, ``eval/nll_iw``
mode_coverage             generate           ``eval/classes_covered``,
                          (10-class 28×28)   ``eval/rarest_class_share``, ``eval/confident_share``
fd_digits                 generate           ``eval/fd_digits`` (Fréchet distance, digit
                          (10-class 28×28)   classifier features), ``eval/fd_samples``,
                                             ``eval/fd_real_samples``
fd_effnet                 generate           ``eval/fd_effnet`` (EfficientNet-Lite0 features),
                          (not 28×28×1)      ``eval/fd_samples``, ``eval/fd_real_samples``
kid_effnet                generate           ``eval/kid_effnet``, ``eval/kid_effnet_std``
                          (not 28×28×1)      (KID, EfficientNet-Lite0 features)
fid_inception             generate           ``eval/fid_inception`` (FID, Inception-v3),
                          (inception_weights ``eval/fd_samples``, ``eval/fd_real_samples``
                          set)
parzen_ll                 generate           ``eval/parzen_ll``, ``eval/parzen_ll_se``,
                          (10-class 28×28;   ``eval/parzen_sigma`` (Parzen window, nats)
                          final eval only)
========================  =================  ===========================================

The feature distances (:mod:`aaejax.feature_distances`, nets in
:mod:`aaejax.feature_nets`) compare ``config.fd_samples`` generated images with
the first n_real = min(``fd_samples``, test size) test images; ``eval/fd_samples``
and ``eval/fd_real_samples`` log the two counts. The real side's statistics and
features are computed once and cached (``config.cache_dir``, else
``$AAEJAX_CACHE_DIR``, else ``~/.cache/aaejax``), keyed by dataset, split, net,
its weights and n_real. One eval generates its images once (:meth:`Context.generated`)
and embeds them once per net (:meth:`Context.fake_features`), shared by the
evaluators. KID: ``kid_subsets`` subsets of ``kid_subset_size``. Parzen
(:mod:`aaejax.parzen`): ``parzen_samples`` generated images, σ chosen on the last
``parzen_validation`` training images, the log-likelihood of the first
``parzen_test`` test images; it costs seconds, so it runs at the last step's
eval only (``final_only``; ``Evaluation(...)(..., final=True)``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from aaejax import batching, core, data, digits, feature_nets, metrics, parzen
from aaejax import feature_distances as fdist
from aaejax import priors as priors_lib
from aaejax.errors import ConfigError

EVAL_BATCH = 500  # examples per chunk of the per-example pass
GENERATE_CHUNK = 1000  # images per jitted generator call
FD_CACHE_VERSION = 1  # bump when the cached real-data features change meaning


@dataclasses.dataclass(frozen=True)
class Evaluator:
  """A registered evaluator: ``fn(context) -> {metric: float}``.

  Attributes:
    name: what ``config.skip_evaluators`` names.
    needs: capabilities the model must declare.
    fn: the metric computation, given an :class:`Context`.
    applies: ``(model, config) -> bool``, for conditions beyond capabilities
      (e.g. the data set); always by default.
    final_only: runs only at a run's final eval (the costly ones).
    nets: the feature nets (:mod:`aaejax.feature_nets`) it embeds images with; their weights
      are checked when a run's evaluation is set up, before training.
  """

  name: str
  needs: frozenset[str]
  fn: Callable[["Context"], dict[str, float]]
  applies: Callable[[Any, Any], bool] = lambda model, config: True
  final_only: bool = False
  nets: tuple[str, ...] = ()


REGISTRY: dict[str, Evaluator] = {}


def register(name: str, needs, applies=None, final_only: bool = False, nets=()):
  """Decorator: registers ``fn(context) -> metrics`` as evaluator ``name``."""

  def wrap(fn):
    REGISTRY[name] = Evaluator(name, frozenset(needs), fn,
                               applies or (lambda model, config: True), final_only, tuple(nets))
    return fn

  return wrap


def select(model, config) -> list[Evaluator]:
  """The evaluators of a run: the shared ones whose needs ``model`` meets and the model's own
  (:meth:`aaejax.core.Model.evaluators`), less the skipped ones."""
  skip = tuple(config.get("skip_evaluators", ()) or ())
  unknown = sorted(set(skip) - set(REGISTRY) - {e.name for e in model.evaluators()})
  if unknown:
    raise ValueError(f"config.skip_evaluators names unknown evaluators {unknown}; known: "
                     f"{sorted(REGISTRY)}.")
  caps = model.capabilities()
  own = tuple(model.evaluators())
  clash = sorted({e.name for e in own} & set(REGISTRY))
  if clash:
    raise ValueError(f"{type(model).__name__}.evaluators() reuses the shared names {clash}.")
  return [e for e in (*REGISTRY.values(), *own)
          if e.needs <= caps and e.name not in skip and e.applies(model, config)]


def per_example(model, state, batch) -> dict[str, jax.Array]:
  """Per-example test quantities of a batch, as far as the model's capabilities go."""
  caps = model.capabilities()
  out = {}
  if core.ENCODE in caps:
    heads = model.encode(state, batch["image"])
    out["z"] = model.latent(heads)
    if "y_logits" in heads:
      out["y_logits"] = heads["y_logits"]
  if caps & {core.CLASSIFY, core.CLUSTER} and "y_logits" not in out:
    out["y_logits"] = model.classify(state, batch["image"])
  if core.RECONSTRUCT in caps:
    out["recon_loss"] = model.reconstruction_loss(state, batch)
  return out


def _check_feature_nets(evaluators, config) -> None:
  """A clear error, before training, for an evaluator whose feature net has no weights."""
  for e in evaluators:
    for net in e.nets:
      try:
        feature_nets.get(net).check(config)
      except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"evaluator {e.name} needs the {net} feature net: {err} (or turn it "
                          f"off: --config.skip_evaluators=\"('{e.name}',)\")") from None


class Evaluation:
  """A run's evaluation: its evaluators and compiled functions, reused at every eval.

  Args:
    model: the model.
    config: the run's config (``skip_evaluators``, evaluator options).
    test: the test split's device arrays (``image``, ``label``).
    splits: the other splits of :meth:`aaejax.core.Model.eval_splits` by name (device
      arrays), read by evaluators as :meth:`Context.split`.
  """

  def __init__(self, model, config, test: Mapping[str, jax.Array],
               splits: Mapping[str, Mapping[str, jax.Array]] | None = None):
    self.model, self.config, self.test = model, config, test
    self.splits = {**dict(splits or {}), "test": test}
    missing = sorted(set(model.eval_splits()) - set(self.splits))
    if missing:
      raise ValueError(f"{type(model).__name__} evaluates on the splits {missing}, not given "
                       f"(splits: {sorted(self.splits)}).")
    self.evaluators = select(model, config)
    _check_feature_nets(self.evaluators, config)
    self.outputs = jax.jit(lambda state, arrays: batching.chunked(
        functools.partial(per_example, model, state), arrays, EVAL_BATCH))

  @property
  def names(self) -> list[str]:
    return [e.name for e in self.evaluators]

  def __call__(self, state, train_subset: Mapping[str, jax.Array], rng: jax.Array,
               final: bool = False) -> dict[str, float]:
    """``eval/…`` metrics of ``state``; ``train_subset`` holds training examples (labels −1
    where hidden) for evaluators that need a reference set. ``final``: the run's last
    eval, which adds the ``final_only`` evaluators."""
    ctx = Context(self, state, train_subset, rng)
    result: dict[str, float] = {}
    for i, e in enumerate(self.evaluators):
      if e.final_only and not final:
        continue
      ctx.rng = jax.random.fold_in(rng, i)
      result.update(e.fn(ctx))
    return result


@dataclasses.dataclass
class Context:
  """What an evaluator sees: the model, the state, the data, a key, cached outputs."""

  evaluation: Evaluation
  state: Any
  train: Mapping[str, jax.Array]
  rng: jax.Array
  _cache: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    self.eval_rng = self.rng  # the eval's key (``rng`` becomes each evaluator's own)

  @property
  def model(self):
    return self.evaluation.model

  @property
  def config(self):
    return self.evaluation.config

  @property
  def test(self):
    return self.evaluation.test

  def split(self, name: str) -> Mapping[str, jax.Array]:
    """The device arrays of eval split ``name`` (:meth:`aaejax.core.Model.eval_splits`)."""
    return self.evaluation.splits[name]

  @property
  def test_outputs(self) -> dict[str, jax.Array]:
    """:func:`per_example` over the whole test split (computed once per eval)."""
    if "test" not in self._cache:
      self._cache["test"] = self.evaluation.outputs(self.state, self.test)
    return self._cache["test"]

  @property
  def train_outputs(self) -> dict[str, jax.Array]:
    """:func:`per_example` over the training subset (computed once per eval)."""
    if "train" not in self._cache:
      self._cache["train"] = self.evaluation.outputs(self.state, self.train)
    return self._cache["train"]

  def generated(self, n: int) -> jax.Array:
    """``n`` generated images (float, on device), drawn once per eval and shared.

    Chunk ``i`` of :data:`GENERATE_CHUNK` images uses ``fold_in(key, i)``, so the
    images of a smaller ``n`` are a prefix of those of a larger one.
    """
    chunks = self._cache.setdefault("generated", [])
    key = jax.random.fold_in(self.eval_rng, 0x6E4)
    while len(chunks) * GENERATE_CHUNK < n:
      chunks.append(_generate(self.model, self.state, jax.random.fold_in(key, len(chunks)),
                              GENERATE_CHUNK))
    if ("generated", n) not in self._cache:
      used = chunks[:-(-n // GENERATE_CHUNK)]
      self._cache[("generated", n)] = (used[0] if len(used) == 1
                                       else jnp.concatenate(used))[:n]
    return self._cache[("generated", n)]

  def fake_features(self, net: str, n: int) -> np.ndarray:
    """(n, dim) features of :meth:`generated` images under feature net ``net`` (once per
    eval)."""
    if ("fake", net, n) not in self._cache:
      self._cache[("fake", net, n)] = feature_nets.embedder(net, self.config)(self.generated(n))
    return self._cache[("fake", net, n)]

  def _real_key(self, kind: str, net: str, n: int) -> dict:
    dataset = self.config.get("dataset", "mnist")
    # Where the test images come from (another copy or subset of a data set has other
    # statistics at the same n).
    where = data.source(dataset, "test", self.config.get("data_dir") or None,
                        cache_dir=self.config.get("cache_dir") or None)
    return {"kind": kind, "dataset": dataset, "split": "test", "source": where,
            "net": net, "n": n, "weights": feature_nets.get(net).identity(self.config),
            "version": FD_CACHE_VERSION}

  def _real_test_features(self, net: str, n: int) -> np.ndarray:
    if ("real", net, n) not in self._cache:
      self._cache[("real", net, n)] = feature_nets.embedder(net, self.config)(
          self.test["image"][:n])
    return self._cache[("real", net, n)]

  def real_features(self, net: str, n: int) -> np.ndarray:
    """(n, dim) features of the first ``n`` test images, cached on disk."""
    return fdist.cached(self._real_key("features", net, n),
                        lambda: {"features": self._real_test_features(net, n)},
                        self.config.get("cache_dir") or None)["features"]

  def real_stats(self, net: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`aaejax.feature_distances.gaussian_stats` of :meth:`real_features`, cached on
    disk (without the features themselves)."""

    def compute():
      mu, sigma = fdist.gaussian_stats(self._real_test_features(net, n))
      return {"mu": mu, "sigma": sigma}

    stats = fdist.cached(self._real_key("stats", net, n), compute,
                         self.config.get("cache_dir") or None)
    return stats["mu"], stats["sigma"]


def context(model, state, test, train=None, *, config=None, rng=None, test_outputs=None,
            train_outputs=None, splits=None) -> Context:
  """A :class:`Context` for calling one evaluator directly: ``REGISTRY[name].fn(ctx)``.

  ``test_outputs`` / ``train_outputs`` (dicts as :func:`per_example` returns)
  stand in for the model's own pass, e.g. hand-made codes in a test.
  """
  ctx = Context(Evaluation(model, config or {}, test, splits), state, train or {},
                jax.random.key(0) if rng is None else rng)
  if test_outputs is not None:
    ctx._cache["test"] = test_outputs
  if train_outputs is not None:
    ctx._cache["train"] = train_outputs
  return ctx


# ---- the evaluators ----------------------------------------------------------------------


@register("recon_loss", {core.RECONSTRUCT})
def _recon_loss(ctx):
  return {"eval/recon_loss": float(jnp.mean(ctx.test_outputs["recon_loss"]))}


@functools.partial(jax.jit, static_argnums=(0, 3))
def _prior_samples(model, state, rng, n):
  return model.sample_prior(state, rng, n)


@register("mmd_to_prior", {core.ENCODE, core.PRIOR})
def _mmd_to_prior(ctx):
  z = ctx.test_outputs["z"]
  pz = _prior_samples(ctx.model, ctx.state, ctx.rng, z.shape[0])
  return {"eval/mmd_to_prior": metrics.mmd_imq_blockwise(z, pz)}


def labelled(model, config) -> bool:
  """Whether the run's data set has labels (CelebA has none): an ``applies`` condition."""
  del model
  return data.has_labels(config.get("dataset", "mnist"))


@register("knn_accuracy", {core.ENCODE}, applies=labelled)
def _knn_accuracy(ctx):
  # Training examples whose label is hidden (label < 0) do not vote.
  labelled = np.asarray(ctx.train["label"]) >= 0
  if labelled.sum() < 5:
    return {}
  train_z = np.asarray(ctx.train_outputs["z"])[labelled]
  return {"eval/knn_accuracy": metrics.knn_accuracy(
      train_z, np.asarray(ctx.train["label"])[labelled], ctx.test_outputs["z"],
      ctx.test["label"], k=5)}


@register("label_component", {core.LABEL_PRIOR})
def _label_component(ctx):
  prior = ctx.model.prior
  z = ctx.test_outputs["z"] / ctx.state.hparams["prior_scale"]
  if isinstance(prior, priors_lib.SwissRoll):
    acc = metrics.segment_accuracy(z, ctx.test["label"], prior)
  else:
    acc = metrics.nearest_center_accuracy(z, ctx.test["label"], prior.means())
  return {"eval/label_component_accuracy": acc}


def _y_confidence(logits: np.ndarray) -> float:
  """Mean largest probability of y: 1 for one-hot codes, 1 / K for uniform ones."""
  return float(np.mean(np.asarray(jax.nn.softmax(logits)).max(axis=-1)))


@register("classification", {core.CLASSIFY})
def _classification(ctx):
  logits = np.asarray(ctx.test_outputs["y_logits"])
  return {"eval/error_rate": metrics.error_rate(logits, ctx.test["label"]),
          "eval/y_confidence": _y_confidence(logits)}


@register("clustering", {core.CLUSTER})
def _clustering(ctx):
  """Each category is labelled by the majority label of its training members (data sets
  without labels: the categories used and the confidence only)."""
  logits = np.asarray(ctx.test_outputs["y_logits"])
  test_y = np.argmax(logits, axis=-1)
  k = logits.shape[-1]
  used = np.bincount(test_y, minlength=k) >= 0.005 * len(test_y)
  out = {"eval/categories_used": int(used.sum()), "eval/y_confidence": _y_confidence(logits)}
  if "label" in ctx.test and "label" in ctx.train:
    train_y = np.argmax(np.asarray(ctx.train_outputs["y_logits"]), axis=-1)
    out["eval/cluster_error"] = metrics.cluster_error(train_y, ctx.train["label"], test_y,
                                                      ctx.test["label"], k)
  return out


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _log_weights(model, state, images, k, chunk, rng):
  """(n, k) importance log-weights, ``chunk`` images at a time (the last chunk zero-padded)."""
  n = images.shape[0]
  blocks = -(-n // chunk)
  padded = jnp.pad(images, [(0, blocks * chunk - n)] + [(0, 0)] * (images.ndim - 1))

  def one(args):
    i, block = args
    return model.log_weights(state, block, jax.random.fold_in(rng, i), k)

  out = jax.lax.map(one, (jnp.arange(blocks), padded.reshape(blocks, chunk, *images.shape[1:])))
  return out.reshape(blocks * chunk, k)[:n]


def likelihood_bounds(model, state, images, rng, k: int = 100) -> dict[str, float]:
  """−ELBO and the k-sample importance-weighted bound on −log p(x), mean nats per image.

  Both on the same ``images`` (uint8) with independent samples, jitted, in
  chunks of about 10,000 decoder passes. The IW bound is ≤ the −ELBO in
  expectation (equal for k = 1) and tends to −log p(x) as k grows.
  """
  elbo_rng, iw_rng = jax.random.split(rng)
  return {"nll_elbo": float(jnp.mean(_neg_elbo(model, state, images, elbo_rng))),
          "nll_iw": float(jnp.mean(_neg_iw_bound(model, state, images, k, iw_rng)))}


# Decoder passes per chunk of the likelihood bounds, for 28×28×1 images; larger images get
# proportionally fewer (a 64×64×3 conv decoder's activations for 10,000 passes exceed 10 GB).
_PASSES_PER_CHUNK = 10_000


def _passes(images) -> int:
  """Decoder passes per chunk for images of this size: about 7.8 M pixels' worth."""
  return max(1, _PASSES_PER_CHUNK * 784 // int(np.prod(images.shape[1:])))


def _neg_elbo(model, state, images, rng) -> jax.Array:
  """(n,) −ELBO (one sample, closed-form KL), in chunks of 1,000 MNIST-sized images."""
  chunk = max(1, min(images.shape[0], _passes(images) // 10))
  return -_log_weights(model, state, images, 1, chunk, rng)[:, 0]


def _neg_iw_bound(model, state, images, k, rng) -> jax.Array:
  """(n,) −log (1/k) Σ_i w_i, in chunks of about 10,000 MNIST-sized decoder passes."""
  chunk = max(1, min(images.shape[0], _passes(images) // k))
  log_w = _log_weights(model, state, images, k, chunk, rng)
  return -(jax.scipy.special.logsumexp(log_w, axis=1) - np.log(k))


@register("likelihood", {core.LIKELIHOOD})
def _likelihood(ctx):
  """−ELBO on the whole test split; the IW bound on its first ``iw_examples`` images."""
  k = int(ctx.config.get("iw_samples", 100))
  m = min(int(ctx.config.get("iw_examples", 1000)), ctx.test["image"].shape[0])
  elbo_rng, iw_rng = jax.random.split(ctx.rng)
  neg_elbo = _neg_elbo(ctx.model, ctx.state, ctx.test["image"], elbo_rng)
  iw = _neg_iw_bound(ctx.model, ctx.state, ctx.test["image"][:m], k, iw_rng)
  return {"eval/nll_elbo": float(jnp.mean(neg_elbo)), "eval/nll_iw": float(jnp.mean(iw)),
          "eval/nll_elbo_iw_subset": float(jnp.mean(neg_elbo[:m]))}


def _mnist_like(model, config):
  """28×28×1 images of a 10-class data set: what the digit classifier judges."""
  return (tuple(model.image_shape) == (28, 28, 1)
          and data.NUM_CLASSES.get(config.get("dataset", "mnist"), 10) == 10)


def _not_mnist_like(model, config):
  """Images other than 28×28×1 (e.g. CelebA): what EfficientNet's features suit."""
  return tuple(model.image_shape) != (28, 28, 1)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _generate(model, state, rng, n):
  return model.generate(state, rng, n)


@register("mode_coverage", {core.GENERATE}, applies=_mnist_like)
def _mode_coverage(ctx):
  """Classes of ``mode_coverage_samples`` generated images, by the project's digit classifier."""

  n = int(ctx.config.get("mode_coverage_samples", 10_000))
  params = digits.load_or_train(ctx.config.dataset, ctx.config.get("data_dir") or None,
                                ctx.config.get("cache_dir") or None,
                                **dict(ctx.config.get("classifier_options", {}) or {}))
  coverage = digits.mode_coverage(digits.predict_proba(params, np.asarray(ctx.generated(n))))
  return {f"eval/{k}": v for k, v in coverage.items()}


def _sample_counts(ctx) -> tuple[int, int]:
  """(generated, real) image counts of the feature distances."""
  n_fake = int(ctx.config.get("fd_samples", 10_000))
  return n_fake, min(n_fake, int(ctx.test["image"].shape[0]))


def _frechet(ctx, net: str, metric: str) -> dict[str, float]:
  """Fréchet distance of feature net ``net`` between generated and test images."""
  n_fake, n_real = _sample_counts(ctx)
  mu_r, sigma_r = ctx.real_stats(net, n_real)
  mu_g, sigma_g = fdist.gaussian_stats(ctx.fake_features(net, n_fake))
  return {metric: fdist.frechet_distance(mu_g, sigma_g, mu_r, sigma_r),
          "eval/fd_samples": n_fake, "eval/fd_real_samples": n_real}


@register("fd_digits", {core.GENERATE}, applies=_mnist_like, nets=("digits",))
def _fd_digits(ctx):
  """FD in the digit classifier's 256-D penultimate features (trained on the run's data)."""
  return _frechet(ctx, "digits", "eval/fd_digits")


@register("fd_effnet", {core.GENERATE}, applies=_not_mnist_like, nets=("effnet",))
def _fd_effnet(ctx):
  """FD in EfficientNet-Lite0's 1280-D pooled features (``config.effnet_weights``)."""
  return _frechet(ctx, "effnet", "eval/fd_effnet")


@register("kid_effnet", {core.GENERATE}, applies=_not_mnist_like, nets=("effnet",))
def _kid_effnet(ctx):
  """KID in EfficientNet-Lite0's features: mean and spread over ``kid_subsets`` subsets."""
  n_fake, n_real = _sample_counts(ctx)
  mean, std = fdist.kernel_distance(
      ctx.real_features("effnet", n_real), ctx.fake_features("effnet", n_fake),
      subsets=int(ctx.config.get("kid_subsets", 100)),
      subset_size=int(ctx.config.get("kid_subset_size", 1000)), rng=ctx.rng)
  return {"eval/kid_effnet": mean, "eval/kid_effnet_std": std,
          "eval/fd_samples": n_fake, "eval/fd_real_samples": n_real}


@register("fid_inception", {core.GENERATE},
          applies=lambda model, config: bool(config.get("inception_weights", "")),
          nets=("inception",))
def _fid_inception(ctx):
  """FID: FD in Inception-v3's 2048-D pool3 features (``config.inception_weights``)."""
  return _frechet(ctx, "inception", "eval/fid_inception")


def _flat_unit(images) -> jax.Array:
  """(n, H, W, C) uint8 or [0, 1] float images → (n, H·W·C) float32 in [0, 1]."""
  images = jnp.asarray(images)
  unit = data.to_float(images) if images.dtype == jnp.uint8 else images.astype(jnp.float32)
  return unit.reshape(images.shape[0], -1)


@register("parzen_ll", {core.GENERATE}, applies=_mnist_like, final_only=True)
def _parzen_ll(ctx):
  """Parzen-window log-likelihood (nats) of the test images under generated samples.

  ``parzen_samples`` generated images; σ from :data:`aaejax.parzen.SIGMA_GRID` by the
  mean log-likelihood of the last ``parzen_validation`` training images; the mean and
  standard error over the first ``parzen_test`` test images.
  """
  cfg = ctx.config
  samples = _flat_unit(ctx.generated(int(cfg.get("parzen_samples", 10_000))))
  train = data.load_numpy(cfg.get("dataset", "mnist"), "train", cfg.get("data_dir") or None,
                          cache_dir=cfg.get("cache_dir") or None,
                          download=cfg.get("download", True))
  validation = _flat_unit(jnp.asarray(train["image"][-int(cfg.get("parzen_validation", 1000)):]))
  test = _flat_unit(ctx.test["image"][:int(cfg.get("parzen_test", 10_000))])
  out = parzen.parzen_evaluation(samples, validation, test)
  return {"eval/parzen_ll": out["ll"], "eval/parzen_ll_se": out["se"],
          "eval/parzen_sigma": out["sigma"]}
