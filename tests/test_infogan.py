"""InfoGAN: network shapes, L_I and the Hungarian matching on hand-made inputs, a short real-MNIST
run (Q learns to read the categorical code), the categorical error and the code figure."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _steps import run_steps
from aaejax import evaluation, models
from aaejax.evaluation import figures, metrics
from aaejax.nets import networks
from aaejax.models import infogan
from aaejax.models.infogan import InfoCritic, InfoGAN

K, C = 10, 2
STEPS = 100
BATCH = 50


def tiny(**kw):
  return InfoGAN(image_shape=(28, 28, 1), latent_dim=8,
                 generator=networks.MLPDecoder((28, 28, 1), (64, 64), 0.2, batch_norm=True),
                 critic=InfoCritic(K, C, hidden=(64, 32), q_hidden=32), **kw)


@pytest.fixture(scope="module")
def run(model, mnist_small):
  """(first state, final state, metric history) of STEPS real-MNIST steps."""
  return run_steps(model, mnist_small, STEPS, BATCH, {"lr_critic": 1e-3, "lr_gen": 1e-3})


@pytest.fixture(scope="module")
def model():
  return tiny()


def test_shapes_mlp_and_conv(model, run):
  state0 = run[0]
  assert state0.params["generator"]["mlp"]["hidden_0"]["kernel"].shape == (8 + K + C, 64)
  x = jnp.zeros((3, 28, 28, 1))
  (d, q), _ = model.apply("critic", state0.params, state0.model_state, x, train=False)
  assert d.shape == (3,) and q.shape == (3, K + C)
  assert set(state0.params["critic"]) == {"trunk", "d_head", "q_head"}
  conv = InfoCritic(K, C, hidden=(32,), channels=(8, 16), q_hidden=8)
  variables = conv.init(jax.random.key(0), x, train=False)
  (d, q) = conv.apply(variables, x, train=False)
  assert d.shape == (3,) and q.shape == (3, K + C)
  assert {"trunk", "trunk_fc", "d_head", "q_head"} <= set(variables["params"])


def test_info_loss_is_the_formula():
  q = jnp.array([[2.0, 0.0, 0.0, 0.5, -1.0], [0.0, 1.0, 3.0, 0.0, 0.0]])  # K = 3, C = 2
  cat, cont = jnp.array([0, 1]), jnp.array([[0.0, 0.0], [1.0, -1.0]])
  out = infogan.info_loss(q, cat, cont, cont_weight=0.3)
  ls = jax.nn.log_softmax(q[:, :3])
  ce = -(ls[0, 0] + ls[1, 1]) / 2
  sq = (0.5 * (0.25 + 1.0) + 0.5 * (1.0 + 1.0)) / 2
  np.testing.assert_allclose(out["info_cat_loss"], ce, rtol=1e-6)
  np.testing.assert_allclose(out["info_cont_loss"], sq, rtol=1e-6)
  np.testing.assert_allclose(out["info_loss"], ce + 0.3 * sq, rtol=1e-6)
  assert float(out["q_cat_acc"]) == 0.5  # row 1's argmax is 2, not 1


def test_matched_error_undoes_any_permutation():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 10, 500)
  perm = rng.permutation(10)
  assert metrics.matched_error(perm[labels], labels, 10) == 0.0
  wrong = perm[labels].copy()
  wrong[:50] = (wrong[:50] + 1) % 10  # 50 of 500 moved to another code value
  assert metrics.matched_error(wrong, labels, 10) == pytest.approx(10.0)
  # More code values than classes: the unmatched ones count as errors.
  split = (labels == 3) & (np.arange(500) % 2 == 0)  # class 3 on two code values
  assert metrics.matched_error(np.where(split, 12, labels), labels, 15) == pytest.approx(
      100 * min(split.sum(), ((labels == 3) & ~split).sum()) / 500)


def test_losses_fall_and_q_reads_the_code(run):
  _, _, history = run
  first = lambda k: np.mean([h[k] for h in history[:5]])
  last = lambda k: np.mean([h[k] for h in history[-5:]])
  assert all(np.isfinite(h[k]) for h in history for k in h)
  assert first("q_cat_acc") < 0.3 and last("q_cat_acc") > 0.4  # chance: 0.1
  assert last("info_cat_loss") < 0.8 * first("info_cat_loss")
  assert last("info_cont_loss") < first("info_cont_loss")


def test_categorical_error_and_code_figure(model, run, mnist_small, tmp_path):
  state = run[1]
  test = {"image": jnp.asarray(mnist_small["image"][:200]),
          "label": jnp.asarray(mnist_small["label"][:200])}
  chosen = [e.name for e in evaluation.select(model, {"skip_evaluators": ()})]
  assert "categorical_error" in chosen and "mode_coverage" in chosen
  ctx = evaluation.context(model, state, test)
  out = model.evaluators()[0].fn(ctx)["eval/categorical_error"]
  pred = np.asarray(model.read_codes(state, test["image"]))
  assert out == pytest.approx(metrics.matched_error(pred, np.asarray(test["label"]), K))
  assert 0.0 <= out <= 90.0
  inputs = infogan.code_grid_inputs(model, state, jax.random.key(0), code=1, columns=5)
  assert inputs.shape == (K * 5, 8 + K + C)
  np.testing.assert_array_equal(inputs[:5, 8 + K + 1], np.linspace(-2, 2, 5))
  np.testing.assert_array_equal(inputs[:, 8 + K], 0.0)
  assert np.all(np.argmax(inputs[:, 8:8 + K], -1) == np.repeat(np.arange(K), 5))
  paths = figures.make_figures(model, state, str(tmp_path), test, jax.random.key(0))
  for name in ("infogan_codes.png", "infogan_codes_c2.png", "samples.png"):
    assert os.path.join(str(tmp_path), name) in paths and os.path.getsize(tmp_path / name) > 0


def test_from_config_and_sweepable_hparams():
  from configs import infogan as config_module
  c = config_module.get_config()
  c.hidden, c.critic_hidden, c.q_hidden = (8,), (8,), 4
  c.info_weight, c.info_cont_weight = 0.75, 0.5
  model = models.create(c, (28, 28, 1))
  assert type(model) is InfoGAN and (model.num_categories, model.num_continuous) == (10, 2)
  assert isinstance(model.critic, InfoCritic) and model.latent_dim == 62
  hp = models.hparams_from_config(model, c)
  assert hp["info_weight"] == 0.75 and hp["info_cont_weight"] == 0.5
  assert hp["lr_gen"] == pytest.approx(1e-3) and hp["lr_critic"] == pytest.approx(2e-4)
  conv = models.create(config_module.get_config("conv"), (28, 28, 1))
  assert conv.critic.channels == (64, 128)
  c.num_categories = 1
  with pytest.raises(models.ConfigError, match="num_categories"):
    models.create(c, (28, 28, 1))
