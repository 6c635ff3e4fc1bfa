"""Fréchet distance, KID, the real-statistics cache, feature nets and their evaluators."""

import dataclasses
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from aaejax import core, evaluation
from aaejax.data import batching
from aaejax.evaluation import digits, feature_distances as fdist, feature_nets, registry


def random_cov(rng, d, rank=None):
  a = rng.normal(size=(d, rank or d))
  return a @ a.T / (rank or d) + (0 if rank else 0.1) * np.eye(d)


# ---- Fréchet distance ---------------------------------------------------------------------


def test_gaussian_stats_match_numpy():
  f = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
  mu, sigma = fdist.gaussian_stats(f)
  np.testing.assert_allclose(mu, f.astype(np.float64).mean(0), rtol=1e-12)
  np.testing.assert_allclose(sigma, np.cov(f.astype(np.float64), rowvar=False), rtol=1e-10)
  assert mu.dtype == sigma.dtype == np.float64
  with pytest.raises(ValueError, match="n >= 2"):
    fdist.gaussian_stats(f[:1])


def test_frechet_closed_forms():
  rng = np.random.default_rng(1)
  # 1-D: (μ₁ − μ₂)² + (s₁ − s₂)².
  assert fdist.frechet_distance([1.0], [[9.0]], [-1.0], [[4.0]]) == pytest.approx(4.0 + 1.0)
  # Diagonal covariances: |Δμ|² + Σ (√aᵢ − √bᵢ)²; the same after a common rotation.
  d = 6
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  a, b = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
  want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  assert fdist.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, 1e-10)
  q = np.linalg.qr(rng.normal(size=(d, d)))[0]
  got = fdist.frechet_distance(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T)
  assert got == pytest.approx(want, 1e-9)
  # Identical gaussians: 0, also for singular covariances (fewer samples than dimensions).
  s = random_cov(rng, 20)
  assert abs(fdist.frechet_distance(mu1[:1].repeat(20), s, mu1[:1].repeat(20), s)) < 1e-9
  low = random_cov(rng, 20, rank=5)  # √ of rounding-size eigenvalues: ~1e-8 each
  assert abs(fdist.frechet_distance(np.zeros(20), low, np.zeros(20), low)) < 1e-7 * np.trace(low)


def test_frechet_matches_sqrtm_formula():
  """pytorch-fid's formula (scipy's sqrtm of Σ₁Σ₂) on well-conditioned covariances."""
  rng = np.random.default_rng(2)
  s1, s2 = random_cov(rng, 30), random_cov(rng, 30)
  mu1, mu2 = rng.normal(size=30), rng.normal(size=30)
  ref = (np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
         - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real))
  assert fdist.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-9)
  with pytest.raises(ValueError, match="covariances"):
    fdist.frechet_distance(mu1, s1, mu2[:3], s2)


# ---- KID ----------------------------------------------------------------------------------


def brute_mmd2(x, y):
  """torch-fidelity's KID of one subset, in numpy float64."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  m, d = x.shape
  a = (x @ x.T / d + 1) ** 3 + (y @ y.T / d + 1) ** 3
  b = (x @ y.T / d + 1) ** 3
  return ((a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m) / m


def test_kid_formula_and_small_n():
  rng = np.random.default_rng(3)
  x, y = rng.normal(size=(50, 8)), rng.normal(size=(50, 8)) + 0.3
  assert float(fdist.mmd2_unbiased(jnp.asarray(x), jnp.asarray(y))) == pytest.approx(
      brute_mmd2(x, y), rel=1e-4)
  # n = 50 < subset_size: every subset is the whole set, the same estimate, spread 0.
  mean, std = fdist.kernel_distance(x, y, subsets=5, subset_size=1000)
  assert mean == pytest.approx(brute_mmd2(x, y), rel=1e-4) and std < 1e-6
  with pytest.raises(ValueError, match="at least 2 rows"):
    fdist.kernel_distance(x[:1], y)


def test_kid_same_and_shifted_distributions():
  rng = np.random.default_rng(4)
  real = rng.normal(size=(1000, 16))
  same = fdist.kernel_distance(real, rng.normal(size=(1000, 16)), subsets=30, subset_size=300,
                               rng=jax.random.key(1))
  shifted = fdist.kernel_distance(real, rng.normal(size=(1000, 16)) + 0.5, subsets=30,
                                  subset_size=300)
  assert abs(same[0]) < 3 * same[1] and same[1] > 0
  assert shifted[0] > 8 * shifted[1] and shifted[0] > 30 * abs(same[0])


def test_kid_estimate_is_unbiased():
  """Over many independent 10-point samples of one distribution, the estimate averages to 0
  (the biased V-statistic, with the diagonal terms, stays clearly positive)."""
  def biased(p):
    k = fdist._poly_kernel
    return k(p[0], p[0]).mean() + k(p[1], p[1]).mean() - 2 * k(p[0], p[1]).mean()

  @jax.jit
  def both(keys):
    xs = jax.vmap(lambda k: jax.random.normal(k, (2, 10, 4)))(keys)
    return jax.vmap(lambda p: fdist.mmd2_unbiased(p[0], p[1]))(xs), jax.vmap(biased)(xs)

  est, v = (np.asarray(a, np.float64) for a in both(jax.random.split(jax.random.key(5), 1000)))
  assert abs(est.mean()) < 3 * est.std() / np.sqrt(est.size)
  assert v.mean() > 10 * v.std() / np.sqrt(v.size)


# ---- the cache ----------------------------------------------------------------------------


def test_cached_computes_once_and_reads_the_file(tmp_path, monkeypatch):
  calls = []

  def compute():
    calls.append(1)
    return {"mu": np.arange(3.0)}

  key = {"kind": "stats", "dataset": "mnist", "split": "test", "net": "digits", "n": 7,
         "weights": "w1"}
  a = fdist.cached(key, compute, str(tmp_path))
  assert fdist.cached(key, compute, str(tmp_path)) is a and len(calls) == 1
  monkeypatch.setattr(fdist, "_MEMORY", {})  # a new process: the file answers
  np.testing.assert_array_equal(fdist.cached(key, compute, str(tmp_path))["mu"], np.arange(3.0))
  assert len(calls) == 1
  path = fdist.cache_path(key, str(tmp_path))
  assert "stats-mnist-test-digits-7" in path
  assert fdist.cache_path({**key, "weights": "w2"}, str(tmp_path)) != path
  monkeypatch.setenv(fdist.CACHE_DIR_ENV, str(tmp_path / "env"))
  assert fdist.cache_dir() == str(tmp_path / "env") and fdist.cache_dir("/x") == "/x"


# ---- feature nets -------------------------------------------------------------------------


@pytest.fixture
def random_digits(monkeypatch):
  """The digits net with an untrained classifier (no training, no data)."""
  variables = jax.jit(digits.DigitClassifier().init)(jax.random.key(0),
                                                     jnp.zeros((1, 28, 28, 1)))
  monkeypatch.setattr(digits, "load_or_train", lambda *a, **k: variables)
  monkeypatch.setattr(feature_nets, "_LOADED", {})
  return variables


def test_digits_net_chunks_and_dtypes(random_digits):
  images = np.random.default_rng(6).integers(0, 256, (7, 28, 28, 1)).astype(np.uint8)
  config = {"dataset": "mnist", "cache_dir": ""}
  embed = feature_nets.embedder("digits", config)
  assert feature_nets.embedder("digits", config) is embed
  f = embed(images)
  assert f.shape == (7, 256) and f.dtype == np.float32
  one = digits.DigitClassifier().apply(random_digits, images[:1] / 255.0, features=True)[1]
  np.testing.assert_allclose(f[:1], one, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(embed(images.astype(np.float32) / 255.0), f, rtol=1e-5, atol=1e-6)
  chunked = batching.batched(
      lambda x: feature_nets._digit_features(random_digits, x), images, chunk=3)
  np.testing.assert_allclose(chunked, f, rtol=1e-5, atol=1e-6)
  assert "digits-mnist-v1" in feature_nets.get("digits").identity(config)
  with pytest.raises(ValueError, match="unknown feature net"):
    feature_nets.get("vgg")


def fake_module(name, dim):
  """A stand-in for aaejax.nets.effnet / aaejax.nets.inception: mean colour, tiled to ``dim``."""
  mod = types.ModuleType(f"aaejax.nets.{name}")
  mod.FEATURE_DIM = dim
  mod.loaded = []

  def load_variables(path=None):
    mod.loaded.append(path)
    return {"scale": jnp.float32(2.0)}

  def features(variables, images):
    pooled = images.mean(axis=(1, 2)).mean(axis=-1, keepdims=True)
    return variables["scale"] * jnp.tile(pooled, (1, dim)) + jnp.arange(dim) / dim

  mod.load_variables, mod.features = load_variables, features
  return mod


@pytest.fixture
def fake_nets(monkeypatch):
  # Few dimensions: the FD's float64 eigendecompositions of 1280-D covariances cost seconds.
  mods = {n: fake_module(n, d) for n, d in (("effnet", 24), ("inception", 32))}
  for n, m in mods.items():
    monkeypatch.setitem(sys.modules, f"aaejax.nets.{n}", m)
  monkeypatch.setattr(feature_nets, "_LOADED", {})
  return mods


def test_module_nets_load_their_weights(fake_nets, tmp_path):
  images = np.full((5, 9, 9, 3), 51, np.uint8)
  f = feature_nets.embedder("effnet", {"effnet_weights": ""})(images)
  assert f.shape == (5, 24) and fake_nets["effnet"].loaded == [None]
  np.testing.assert_allclose(f[:, 0], 2 * 51 / 255, rtol=1e-6)
  weights = tmp_path / "inception.npz"
  weights.write_bytes(b"123")
  f = feature_nets.embedder("inception", {"inception_weights": str(weights)})(images)
  assert f.shape == (5, 32) and fake_nets["inception"].loaded == [str(weights)]
  assert ":3:" in feature_nets.get("inception").identity({"inception_weights": str(weights)})
  with pytest.raises(ValueError, match="config.inception_weights is empty"):
    feature_nets.embedder("inception", {"inception_weights": ""})


# ---- the evaluators -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class ImageBank(core.Model):
  """A 'generator' that draws its images from a fixed bank (uint8), as floats in [0, 1]."""

  bank: np.ndarray

  @property
  def image_shape(self):
    return self.bank.shape[1:]

  def capabilities(self):
    return frozenset({core.GENERATE})

  def generate(self, state, rng, n):
    idx = jax.random.randint(rng, (n,), 0, self.bank.shape[0])
    return jnp.asarray(self.bank)[idx].astype(jnp.float32) / 255.0


def test_effnet_evaluators_share_features_and_cache_real_stats(fake_nets, tmp_path):
  rng = np.random.default_rng(7)
  real = rng.integers(0, 256, (300, 8, 8, 3)).astype(np.uint8)
  other = rng.integers(0, 256, (2000, 8, 8, 3)).astype(np.uint8)  # same distribution
  test = {"image": jnp.asarray(real), "label": jnp.zeros(300, jnp.int32)}
  config = {"dataset": "celeb_a", "fd_samples": 400, "kid_subsets": 10, "kid_subset_size": 100,
            "effnet_weights": "", "cache_dir": str(tmp_path)}
  good, dark = ImageBank(other), ImageBank(other // 4)
  ev = evaluation.Evaluation(good, config, test)
  assert {"fd_effnet", "kid_effnet"} <= set(ev.names)
  assert not {"fd_digits", "parzen_ll", "mode_coverage", "fid_inception"} & set(ev.names)
  counted = []
  embed = feature_nets.embedder("effnet", config)
  feature_nets._LOADED[("effnet", feature_nets.get("effnet").identity(config))] = (
      lambda images: counted.append(images.shape[0]) or embed(images))
  r = ev(None, {}, jax.random.key(0))
  assert counted == [300, 400]  # the real images once, the generated ones once for both
  assert (r["eval/fd_samples"], r["eval/fd_real_samples"]) == (400, 300)
  assert r["eval/fd_effnet"] >= 0 and abs(r["eval/kid_effnet"]) < 3 * r["eval/kid_effnet_std"]
  bad = evaluation.Evaluation(dark, config, test)(None, {}, jax.random.key(0))
  assert counted == [300, 400, 400]  # real features and stats from the cache
  assert bad["eval/fd_effnet"] > 100 * max(r["eval/fd_effnet"], 1e-3)
  assert bad["eval/kid_effnet"] > 10 * bad["eval/kid_effnet_std"]
  (tmp_path / "w").write_bytes(b"")  # a weights file must exist when the run starts
  fid = evaluation.Evaluation(good, {**config, "inception_weights": str(tmp_path / "w")}, test)
  assert "fid_inception" in fid.names


def test_missing_feature_net_weights_fail_before_training(tmp_path):
  from aaejax import evaluation
  from aaejax.errors import ConfigError
  chosen = [evaluation.REGISTRY["fd_effnet"], evaluation.REGISTRY["fid_inception"]]
  missing = str(tmp_path / "none.pth")
  with pytest.raises(ConfigError, match=r"evaluator fd_effnet needs the effnet feature net: "
                     r"config.effnet_weights = .*none.pth' is not a file.*skip_evaluators"):
    registry._check_feature_nets(chosen, {"effnet_weights": missing})
  with pytest.raises(ConfigError, match="evaluator fid_inception needs the inception"):
    registry._check_feature_nets(chosen[1:], {"inception_weights": missing})
  (tmp_path / "w.pth").write_bytes(b"")
  registry._check_feature_nets(chosen[1:], {"inception_weights": str(tmp_path / "w.pth")})
