"""BiGAN / ALI: network shapes, the two losses on hand-made critics, a short real-MNIST run, the
cycle label accuracy on hand-made inputs, the shared evaluators and the pairs figure."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _steps import run_steps
from aaejax import core, evaluation, models, penalties
from aaejax.evaluation import digits, figures
from aaejax.nets import networks
from aaejax.models import bigan
from aaejax.models.bigan import BiGAN, JointCritic

Z = 6
STEPS = 60
BATCH = 50


def tiny(**kw):
  return BiGAN(image_shape=(28, 28, 1), latent_dim=Z, prior="uniform",
               generator=networks.MLPDecoder((28, 28, 1), (64, 64), 0.2, batch_norm=True),
               encoder=networks.MLPEncoder(Z, (64,), gaussian=kw.get("stochastic_encoder",
                                                                     False)),
               critic=JointCritic((64, 32)), **kw)


@pytest.fixture(scope="module")
def model():
  return tiny()


@pytest.fixture(scope="module")
def run(model, mnist_small):
  """(first state, final state, metric history) of STEPS real-MNIST steps."""
  return run_steps(model, mnist_small, STEPS, BATCH, {"lr_critic": 1e-3, "lr_gen": 1e-3})


def test_shapes_and_phases(model, run):
  state0 = run[0]
  assert set(state0.params) == {"generator", "encoder", "critic"}
  assert state0.params["critic"]["mlp"]["hidden_0"]["kernel"].shape == (784 + Z, 64)
  assert model.phase_paths() == {"critic": ("critic",), "gen": ("encoder", "generator")}
  x = jnp.zeros((3, 28, 28, 1), jnp.uint8)
  assert model.encode(state0, x)["z"].shape == (3, Z)
  assert model.reconstruct(state0, x).shape == (3, 28, 28, 1)
  assert model.reconstruction_loss(state0, {"image": x}).shape == (3,)
  assert model.capabilities() >= {core.ENCODE, core.GENERATE, core.RECONSTRUCT}


class Fixed(JointCritic):
  """A critic whose logit is a·mean(x) + b·mean(z): hand-made, no parameters trained."""

  @nn.compact
  def __call__(self, x, z, train=True):
    self.param("unused", lambda *_: jnp.zeros(()))
    return 3.0 * jnp.mean(x.reshape(x.shape[0], -1), -1) - 2.0 * jnp.mean(z, -1)


def test_losses_are_the_formulas():
  model = BiGAN(image_shape=(28, 28, 1), latent_dim=Z, prior="uniform",
                generator=networks.MLPDecoder((28, 28, 1), (8,)),
                encoder=networks.MLPEncoder(Z, (8,)), critic=Fixed())
  state = model.init(jax.random.key(0))
  x = jax.random.uniform(jax.random.key(1), (5, 28, 28, 1))
  batch = {"image": x}
  ins = core.StepInputs(state, batch, jax.random.key(2), model.prepare(state, batch,
                                                                       jax.random.key(2)))
  keys = ins.inputs["keys"]
  real_logit = lambda xs, zs: 3.0 * jnp.mean(xs.reshape(5, -1), -1) - 2.0 * jnp.mean(zs, -1)
  ez = model.encode(state, x)["z"]
  z = model.sample_prior(state, keys[1], 5)
  gx = model.decode(state, z)
  want_critic = penalties.critic_loss(real_logit(x, ez), real_logit(gx, z))
  got_critic, _ = model.loss_critic(ins, state.params)
  np.testing.assert_allclose(got_critic, want_critic, rtol=1e-5)
  z2 = model.sample_prior(state, keys[4], 5)
  gx2 = model.decode(state, z2)
  want_gen = (jnp.mean(jax.nn.softplus(real_logit(x, ez)))       # −log(1 − D(x, E(x)))
              + jnp.mean(jax.nn.softplus(-real_logit(gx2, z2))))  # −log D(G(z), z)
  got_gen, _ = model.loss_gen(ins, state.params)
  np.testing.assert_allclose(got_gen, want_gen, rtol=1e-5)


def test_ali_encoder_is_sampled_in_the_step():
  model = tiny(stochastic_encoder=True)
  state = model.init(jax.random.key(0))
  x = jnp.ones((4, 28, 28, 1))
  a, _ = model.encoded(state.params, state.model_state, x, jax.random.key(1))
  b, _ = model.encoded(state.params, state.model_state, x, jax.random.key(2))
  mean = model.encode(state, x)["z"]
  assert not np.allclose(a, b) and np.allclose(mean, model.encode(state, x)["z"])
  assert "z_logvar" in model.encode(state, x)


def test_losses_fall_on_real_data(run):
  _, _, history = run
  assert all(np.isfinite(h[k]) for h in history for k in h)
  first = lambda k: np.mean([h[k] for h in history[:5]])
  last = lambda k: np.mean([h[k] for h in history[-10:]])
  assert last("critic_loss") < first("critic_loss")
  assert 0.5 < last("critic_acc") <= 1.0


def test_cycle_label_accuracy_on_hand_made_inputs(mnist_small):
  params = digits.load_or_train("mnist", None, None, steps=100)
  images, labels = mnist_small["image"][:200], mnist_small["label"][:200]
  # The images themselves as their cycle: the classifier's own accuracy; shifted labels: ~0.
  own = bigan.cycle_label_accuracy(params, images, labels)
  assert own > 0.7
  assert bigan.cycle_label_accuracy(params, images, (labels + 1) % 10) < 0.15


def test_evaluators_and_pairs_figure(model, run, mnist_small, tmp_path):
  state = run[1]
  test = {"image": jnp.asarray(mnist_small["image"][:100]),
          "label": jnp.asarray(mnist_small["label"][:100])}
  config = {"dataset": "mnist", "skip_evaluators": ("fd_digits", "parzen_ll", "mode_coverage"),
            "classifier_options": {"steps": 100}}
  names = [e.name for e in evaluation.select(model, config)]
  assert {"knn_accuracy", "mmd_to_prior", "recon_loss", "cycle_label_accuracy"} <= set(names)
  out = evaluation.Evaluation(model, config, test)(state, test, jax.random.key(0))
  assert 0.0 <= out["eval/cycle_label_accuracy"] <= 1.0
  assert 0.0 <= out["eval/knn_accuracy"] <= 1.0 and out["eval/recon_loss"] > 0
  paths = figures.make_figures(model, state, str(tmp_path), test, jax.random.key(0))
  for name in ("bigan_pairs.png", "reconstructions.png", "latent_qz.png", "samples.png"):
    assert os.path.join(str(tmp_path), name) in paths and os.path.getsize(tmp_path / name) > 0


def test_from_config():
  from configs import bigan as config_module
  c = config_module.get_config()
  c.hidden, c.critic_hidden, c.encoder_hidden = (8,), (8,), (8,)
  model = models.create(c, (28, 28, 1))
  assert type(model) is BiGAN and model.latent_dim == 50 and not model.stochastic_encoder
  assert isinstance(model.critic, JointCritic)
  assert {"lr_gen", "lr_critic", "critic_noise"} <= set(models.hparams_from_config(model, c))
  ali = config_module.get_config("ali")
  ali.hidden, ali.critic_hidden, ali.encoder_hidden = (8,), (8,), (8,)
  assert models.create(ali, (28, 28, 1)).stochastic_encoder
