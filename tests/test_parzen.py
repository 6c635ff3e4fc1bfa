"""Parzen-window log-likelihood: against brute force, σ selection, the final-only evaluator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from aaejax import evaluation
from aaejax.evaluation import parzen
from test_feature_distances import ImageBank


def brute(samples, x, sigma):
  d2 = ((x[:, None].astype(np.float64) - samples[None]) ** 2).sum(-1)
  return (logsumexp(-d2 / (2 * sigma ** 2), axis=1) - np.log(len(samples))
          - samples.shape[1] * np.log(sigma * np.sqrt(2 * np.pi)))


def test_matches_brute_force_across_blocks():
  rng = np.random.default_rng(0)
  samples, x = rng.random((37, 12)).astype(np.float32), rng.random((23, 12)).astype(np.float32)
  sigmas = np.array([0.1, 0.3, 1.0])
  many = np.asarray(parzen.parzen_log_likelihood(samples, x, sigmas, block_size=8))
  assert many.shape == (3, 23)
  for s, row in zip(sigmas, many):
    np.testing.assert_allclose(row, brute(samples, x, s), rtol=1e-5, atol=1e-3)
    one = parzen.parzen_log_likelihood(samples, x, s, block_size=50)  # one block, no padding
    np.testing.assert_allclose(one, row, rtol=1e-5, atol=1e-3)
  best, means = parzen.select_sigma(samples, x, sigmas, block_size=8)
  np.testing.assert_allclose(means, [brute(samples, x, s).mean() for s in sigmas], rtol=1e-5)
  assert best == sigmas[np.argmax(means)]
  with pytest.raises(ValueError, match="positive widths"):
    parzen.select_sigma(samples, x, [0.1, -1.0])


def test_samples_at_the_test_points_score_high():
  rng = np.random.default_rng(1)
  test = rng.random((200, 50)).astype(np.float32)
  val = rng.random((100, 50)).astype(np.float32)
  on = parzen.parzen_evaluation(np.concatenate([test, val]), val, test, block_size=64)
  off = parzen.parzen_evaluation(rng.random((300, 50)).astype(np.float32), val, test,
                                 block_size=64)
  # Each test point is a kernel centre: log p ≥ −log N − d·log(σ√(2π)) at the chosen σ.
  floor = -np.log(300) - 50 * np.log(on["sigma"] * np.sqrt(2 * np.pi))
  assert on["ll"] >= floor - 1e-3 and on["ll"] > off["ll"] + 10 * (on["se"] + off["se"])
  ll = np.asarray(parzen.parzen_log_likelihood(rng.random((30, 50)), test, on["sigma"]))
  assert parzen.mean_and_stderr(ll) == pytest.approx((ll.mean(), ll.std(ddof=1) / np.sqrt(200)))


def test_parzen_evaluator_runs_at_the_final_eval_only(mnist_small, mnist_dir):
  images = mnist_small["image"]
  test = {"image": jnp.asarray(images[:300]), "label": jnp.asarray(mnist_small["label"][:300])}
  config = {"dataset": "mnist", "parzen_samples": 500, "parzen_validation": 100,
            "parzen_test": 300, "skip_evaluators": ("mode_coverage", "fd_digits")}
  model = ImageBank(images[300:])  # real digits: a good generator
  ev = evaluation.Evaluation(model, config, test)
  assert ev.names == ["parzen_ll"]
  assert ev(None, {}, jax.random.key(0)) == {}
  r = ev(None, {}, jax.random.key(0), final=True)
  assert set(r) == {"eval/parzen_ll", "eval/parzen_ll_se", "eval/parzen_sigma"}
  assert r["eval/parzen_sigma"] in parzen.SIGMA_GRID and 0 < r["eval/parzen_ll_se"] < 50
  noise = ImageBank(np.random.default_rng(2).integers(0, 256, (500, 28, 28, 1), np.uint8))
  worse = evaluation.Evaluation(noise, config, test)(None, {}, jax.random.key(0), final=True)
  assert r["eval/parzen_ll"] > worse["eval/parzen_ll"] + 100
