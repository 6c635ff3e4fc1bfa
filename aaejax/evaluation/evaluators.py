"""The shared evaluators: the eval metrics of a run, chosen from what its model can do.

An evaluator is registered under a name with the capabilities it needs
(:mod:`aaejax.core`'s constants); a run evaluates every registered evaluator
whose needs its model declares (:meth:`aaejax.core.Model.capabilities`) and that
applies to its data, except those named in ``config.skip_evaluators``. Adding a
shared metric is one :func:`~aaejax.evaluation.registry.register` call here; a family's
own metrics (DANN's target-domain accuracy) are :class:`Evaluator` objects listed in its file
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

import functools

import jax
import jax.numpy as jnp
import numpy as np

from aaejax import core, data, priors as priors_lib
from aaejax.evaluation import digits, feature_nets, metrics, parzen
from aaejax.evaluation import feature_distances as fdist
from aaejax.evaluation.registry import labelled, mnist_like, register


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




def _not_mnist_like(model, config):
  """Images other than 28×28×1 (e.g. CelebA): what EfficientNet's features suit."""
  return tuple(model.image_shape) != (28, 28, 1)


@register("mode_coverage", {core.GENERATE}, applies=mnist_like, nets=("digits",))
def _mode_coverage(ctx):
  """Classes of ``mode_coverage_samples`` generated images, by the project's digit classifier."""

  n = int(ctx.config.get("mode_coverage_samples", 10_000))
  params = feature_nets.digit_classifier(ctx.config)
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


@register("fd_digits", {core.GENERATE}, applies=mnist_like, nets=("digits",))
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


@register("parzen_ll", {core.GENERATE}, applies=mnist_like, final_only=True)
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
