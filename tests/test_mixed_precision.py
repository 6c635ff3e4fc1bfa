"""config.compute_dtype: bfloat16 activations and matmuls, float32 parameters and losses;
the WAE-GAN critic's log-prior term."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from aaejax import models
from aaejax.nets import networks
from aaejax.errors import ConfigError

SHAPE = (16, 16, 3)


def _config(compute_dtype: str, **fields):
  c = ml_collections.ConfigDict(dict(
      model="wae", penalty="mmd_imq", dataset="celeb_a", latent_dim=4, prior="gaussian",
      network="conv", conv_channels=(8, 16), conv_kernel=3, batch_norm=True,
      recon_loss="gaussian", compute_dtype=compute_dtype))
  c.update(fields)
  return c


def _images(n=32):
  x = np.linspace(0, 1, SHAPE[0])
  base = np.stack([*np.meshgrid(x, x, indexing="ij"), np.full((16, 16), 0.5)], -1)
  shift = np.random.default_rng(0).uniform(0, 1, (n, 1, 1, 3))
  return jnp.asarray(np.uint8(255 * np.abs(np.sin(3 * base[None] + 3 * shift))))


_RUNS: dict = {}


def _run(compute_dtype: str, steps: int = 8):
  if compute_dtype not in _RUNS:
    model = models.create(_config(compute_dtype), SHAPE)
    state = jax.jit(model.init)(jax.random.key(0), {"lr_ae": 3e-3})
    step = jax.jit(model.train_step)
    batch = {"image": _images()}
    losses = []
    for i in range(steps):
      state, m = step(state, batch, jax.random.key(i))
      losses.append(float(m["recon_loss"]))
    _RUNS[compute_dtype] = (model, state, losses)
  return _RUNS[compute_dtype]


def test_bfloat16_trains_with_float32_state_and_losses_near_float32():
  model, state, losses = _run("bfloat16")
  _, _, f32_losses = _run("float32")
  assert losses[-1] < 0.85 * losses[0], losses  # 8 steps: 109 -> 81 measured
  # Close to float32's after the same steps (bf16 has ~3 significant digits).
  np.testing.assert_allclose(losses[:4], f32_losses[:4], rtol=0.03)
  np.testing.assert_allclose(losses[-1], f32_losses[-1], rtol=0.1)
  for tree in (state.params, state.opt_state, state.model_state):
    dtypes = {x.dtype for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)}
    assert dtypes == {jnp.dtype(jnp.float32)}, dtypes
  # The convs really run in bf16, and the outputs come back as float32.
  text = jax.jit(model.train_step).lower(state, {"image": _images()}, jax.random.key(0)).as_text()
  assert "bf16" in text
  heads = model.encode(state, _images(4))
  assert heads["z"].dtype == jnp.float32
  assert model.decode(state, heads["z"]).dtype == jnp.float32


def test_every_family_builds_in_bfloat16():
  for fields in (dict(model="vae", posterior="gaussian"),
                 dict(model="gan", gen_channels=(16, 8), critic_channels=(8, 16)),
                 dict(model="aae", critic_hidden=(16,)),
                 dict(model="wae", penalty="gan", critic_hidden=(16,))):
    model = models.create(_config("bfloat16", **fields), SHAPE)
    assert model.dtype == jnp.bfloat16
    nets = model.networks()
    assert all(getattr(m, "dtype", None) == jnp.bfloat16 for m, _ in nets.values()), fields


def test_unknown_compute_dtype_is_a_config_error():
  with pytest.raises(ConfigError, match=r"config.compute_dtype='float16': unknown compute "
                                        r"dtype 'float16'; expected one of \('float32', "
                                        r"'bfloat16'\)"):
    models.create(_config("float16"), SHAPE)
  with pytest.raises(ValueError, match="unknown compute_dtype 'fp8'"):
    networks.compute_dtype("fp8")


def test_critic_log_prior_adds_the_gaussian_log_density():
  fields = dict(penalty="gan", critic_hidden=(16,), prior_scale=2.0)
  plain = models.create(_config("float32", **fields), SHAPE)
  trick = models.create(_config("float32", critic_log_prior=True, **fields), SHAPE)
  state = jax.jit(plain.init)(jax.random.key(0), {"prior_scale": 2.0})
  z = jax.random.normal(jax.random.key(1), (5, 4))
  rng = jax.random.key(2)
  diff = (trick.latent_critic_logits(state, state.params, z, rng)
          - plain.latent_critic_logits(state, state.params, z, rng))
  expected = jax.scipy.stats.norm.logpdf(z, scale=2.0).sum(-1)
  np.testing.assert_allclose(diff, expected, rtol=1e-5)
  # It trains (the critic's loss is finite, the step runs).
  state = jax.jit(trick.init)(jax.random.key(0))
  _, m = jax.jit(trick.train_step)(state, {"image": _images(8)}, jax.random.key(3))
  assert np.isfinite(float(m["critic_loss"]))
  with pytest.raises(ConfigError, match="critic_log_prior needs penalty='gan'"):
    models.create(_config("float32", critic_log_prior=True), SHAPE)
