"""Triple-GAN: network shapes, the loss algebra on hand-made inputs, a short real-MNIST run,
the shared evaluators and the class grid."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aaejax import core, evaluation, models
from aaejax.evaluation import figures
from aaejax.nets import networks
from aaejax.run import builder
from aaejax.models import triplegan
from aaejax.models.triplegan import TripleGAN

K = 10
STEPS = 50
BATCH = 50


def tiny(**kw):
  return TripleGAN(image_shape=(28, 28, 1), latent_dim=8, num_labeled=100,
                   labeled_batch_size=BATCH,
                   generator=networks.MLPDecoder((28, 28, 1), (64,), 0.2, batch_norm=True),
                   critic=triplegan.PairCritic((64, 32)),
                   classifier=triplegan.MLPClassifier(K, (64,)), **kw)


def compiled(fn, *args):
  """``jax.jit(fn)`` compiled for ``args`` without LLVM optimisations (faster to compile)."""
  return jax.jit(fn).lower(*args).compile({"xla_backend_optimization_level": 0})


@pytest.fixture(scope="module")
def model():
  return tiny()


@pytest.fixture(scope="module")
def state0(model):
  return jax.jit(model.init)(jax.random.key(0), model.hparams(num_steps=float(STEPS)))


@pytest.fixture(scope="module")
def run(model, state0, mnist_small):
  """(final state, metric history, training data as the step sees it, streams)."""
  train_np, streams = builder.run_data(model, mnist_small, 0)
  arrays = jax.tree.map(jnp.asarray, train_np)
  streams = jax.tree.map(jnp.asarray, streams)
  state = state0
  fn = builder.make_train_fn(model, BATCH, jit=False)
  perm = jnp.arange(arrays["image"].shape[0])
  step = compiled(fn, state, arrays, perm, 0, streams)
  history = []
  for t in range(STEPS):
    state, m = step(state, arrays, perm, t, streams)
    history.append(jax.device_get(m))
  return state, history, train_np, streams


def test_network_shapes(model, state0):
  x = jnp.linspace(0, 1, 3 * 784).reshape(3, 28, 28, 1)
  state = state0
  assert sorted(state.params) == ["classifier", "critic", "generator"]
  assert sorted(state.opt_state) == ["classifier", "critic", "gen"]
  onehot = jax.nn.one_hot(jnp.array([0, 3, 9]), K)
  d_pairs, _ = model.apply("critic", state.params, {}, x, onehot, train=False)
  d_all, _ = model.apply("critic", state.params, {}, x, None, train=False)
  assert d_pairs.shape == (3,) and d_all.shape == (3, K)
  # The all-classes pass is D(x, e_c) for each c (the image half computed once).
  np.testing.assert_allclose(d_all[jnp.arange(3), jnp.array([0, 3, 9])], d_pairs, rtol=1e-5,
                             atol=1e-6)
  assert model.classify(state, x).shape == (3, K)
  assert model.decoder_input_dim() == 8 + K
  assert model.capabilities() >= {core.CLASSIFY, core.GENERATE}


def test_critic_loss_is_the_formula():
  real = jnp.array([2.0, -1.0])
  gen = jnp.array([0.5, -3.0, 1.0])
  unl = jnp.array([[1.0, -2.0, 0.0], [3.0, 0.5, -1.0]])
  probs = jnp.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
  alpha = 0.3
  d = lambda l: 1 / (1 + np.exp(-np.asarray(l)))
  expected = (-np.mean(np.log(d(real)))
              - alpha * np.mean(np.sum(np.asarray(probs) * np.log(1 - d(unl)), -1))
              - (1 - alpha) * np.mean(np.log(1 - d(gen))))
  np.testing.assert_allclose(triplegan.critic_loss(real, gen, unl, probs, alpha), expected,
                             rtol=1e-6)


def test_classifier_adversarial_weights_classes_by_p_c():
  unl = jnp.array([[1.0, -2.0, 0.0], [3.0, 0.5, -1.0]])
  d = 1 / (1 + np.exp(-np.asarray(unl)))
  # A one-hot p_c picks that class's −log D(x, c).
  onehot = jnp.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
  np.testing.assert_allclose(triplegan.classifier_adversarial(onehot, unl),
                             np.mean([-np.log(d[0, 1]), -np.log(d[1, 0])]), rtol=1e-6)
  # Through C's softmax the gradient is p_c (ℓ_c − Σ p ℓ) / n: mass moves to the class D
  # finds most real (lowest ℓ).
  logits = jnp.array([[0.1, 0.2, -0.3], [1.0, 0.0, 0.5]])
  grad = jax.grad(lambda l: triplegan.classifier_adversarial(jax.nn.softmax(l), unl))(logits)
  p, ell = np.asarray(jax.nn.softmax(logits)), -np.log(d)
  expected = p * (ell - np.sum(p * ell, -1, keepdims=True)) / 2
  np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


def test_pseudo_label_weight_starts_late():
  hp = {"pseudo_weight": jnp.float32(0.1), "pseudo_start": jnp.float32(0.25)}
  assert float(triplegan.pseudo_label_weight(jnp.float32(0.2), hp)) == 0.0
  np.testing.assert_allclose(triplegan.pseudo_label_weight(jnp.float32(0.25), hp), 0.1)


def test_classifier_and_generator_losses_on_hand_made_pass(model, state0):
  state = state0.replace(hparams=model.hparams(num_steps=10.0, alpha=0.3, pseudo_weight=0.5,
                                               pseudo_start=0.5))
  y_l, y_g = jnp.array([1, 2]), jnp.array([0, 2])
  shared = {"logits_u": jnp.array([[0.0, 1.0] + [-9.0] * 8, [2.0, 0.0] + [-9.0] * 8]),
            "logits_l": jax.random.normal(jax.random.key(1), (2, K)),
            "logits_g": jax.random.normal(jax.random.key(2), (2, K)),
            "critic_unl": jax.random.normal(jax.random.key(3), (2, K)),
            "critic_gen": jnp.array([0.5, -1.0]),
            "y_g": jax.nn.one_hot(y_g, K)}
  ce = lambda l, y: float(np.mean(-np.asarray(jax.nn.log_softmax(l))[np.arange(2), y]))
  adv = float(triplegan.classifier_adversarial(jax.nn.softmax(shared["logits_u"]),
                                               shared["critic_unl"]))
  for step, w_p in ((2, 0.0), (5, 0.5)):
    ins = core.StepInputs(state.replace(step=jnp.asarray(step)), {}, jax.random.key(0),
                          {"y_l": y_l})
    loss, (m, _) = model.loss_classifier(ins, state.params, shared)
    np.testing.assert_allclose(loss, 0.3 * adv + ce(shared["logits_l"], y_l)
                               + w_p * ce(shared["logits_g"], y_g), rtol=1e-5)
    assert float(m["pseudo_weight_now"]) == w_p
  loss, _ = model.loss_gen(ins, state.params, shared)
  np.testing.assert_allclose(loss, 0.7 * np.mean(np.log1p(np.exp(-np.array([0.5, -1.0])))),
                             rtol=1e-6)


def test_labels_hidden_and_labelled_stream(model, run):
  _, _, train_np, streams = run
  assert np.all(train_np["label"] == -1)
  assert np.bincount(np.asarray(streams["labeled"]["label"])).tolist() == [10] * K
  assert model.label_fields() == {"label": (K, True), "labeled_label": (K, False)}


def test_losses_fall_on_real_data(run):
  _, history, _, _ = run
  first = lambda k: np.mean([h[k] for h in history[:5]])
  last = lambda k: np.mean([h[k] for h in history[-5:]])
  assert all(np.isfinite(h[k]) for h in history for k in h)
  assert last("supervised_loss") < 0.5 * first("supervised_loss")
  assert last("classifier_loss") < first("classifier_loss")
  assert last("critic_loss") < first("critic_loss")
  assert last("critic_acc") > 0.6
  assert history[-1]["pseudo_weight_now"] == pytest.approx(0.1)  # past pseudo_start


def test_step_is_pure(model, run):
  state, _, train_np, streams = run
  batch = {"image": jnp.asarray(train_np["image"][:BATCH]),
           "label": jnp.asarray(train_np["label"][:BATCH]),
           "labeled_image": jnp.asarray(streams["labeled"]["image"][:BATCH]),
           "labeled_label": jnp.asarray(streams["labeled"]["label"][:BATCH])}
  step = compiled(model.train_step, state, batch, jax.random.key(5))
  a, b = step(state, batch, jax.random.key(5)), step(state, batch, jax.random.key(5))
  assert jax.tree.all(jax.tree.map(lambda x, y: bool(jnp.all(x == y)), a, b))


def test_error_rate_of_hand_made_classifier_output(model, run):
  state = run[0]
  labels = jnp.array([0, 1, 2, 3])
  logits = jax.nn.one_hot(jnp.array([0, 1, 5, 3]), K)  # one mistake in four
  test = {"image": jnp.zeros((4, 28, 28, 1), jnp.uint8), "label": labels}
  ctx = evaluation.context(model, state, test, test_outputs={"y_logits": logits})
  out = evaluation.REGISTRY["classification"].fn(ctx)
  assert out["eval/error_rate"] == pytest.approx(25.0)
  names = [e.name for e in evaluation.select(model, {"skip_evaluators": (
      "mode_coverage", "fd_digits", "parzen_ll")})]
  assert "classification" in names and "triplegan_agreement" in names


def test_generate_evaluators_and_class_grid(model, run, mnist_small, tmp_path):
  state = run[0]
  images = model.generate(state, jax.random.key(3), 7)
  assert images.shape == (7, 28, 28, 1)
  assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
  test = {"image": jnp.asarray(mnist_small["image"][:100]),
          "label": jnp.asarray(mnist_small["label"][:100])}
  ctx = evaluation.context(model, state, test)
  agree = model.evaluators()[0].fn(ctx)["eval/gen_label_agreement"]
  assert 0.0 <= agree <= 1.0
  grid = triplegan.class_grid_images(model, state, jax.random.key(0), columns=4)
  assert grid.shape == (4 * K, 28, 28, 1)
  paths = figures.make_figures(model, state, str(tmp_path), test, jax.random.key(0))
  assert os.path.join(str(tmp_path), "class_grid.png") in paths
  assert os.path.getsize(tmp_path / "class_grid.png") > 0


def test_from_config_and_sweepable_hparams():
  from configs import triplegan as config_module
  c = config_module.get_config()
  c.hidden, c.critic_hidden, c.classifier_hidden = (8,), (8,), (8,)
  c.alpha, c.pseudo_weight = 0.4, 0.2
  model = models.create(c, (28, 28, 1))
  assert type(model) is TripleGAN and model.num_labeled == 100
  hp = models.hparams_from_config(model, c)
  assert hp["alpha"] == pytest.approx(0.4) and hp["pseudo_weight"] == pytest.approx(0.2)
  assert {"lr_critic", "lr_classifier", "lr_gen", "pseudo_start", "critic_noise"} <= set(hp)
  c.num_labeled = 55
  with pytest.raises(models.ConfigError, match="multiple"):
    models.create(c, (28, 28, 1))
