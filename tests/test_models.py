"""Short real-MNIST training runs per model, train-step contracts, bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aaejax import core, models, penalties, priors
from aaejax.nets import networks

SMALL = dict(image_shape=(28, 28, 1), encoder=None, decoder=None)


def small_model(kind, **kw):
  latent = kw.pop("latent_dim", 2 if kind == "aae" else 8)
  enc = networks.MLPEncoder(latent, (256,), gaussian=kw.get("posterior") == "gaussian")
  dec = networks.MLPDecoder((28, 28, 1), (256,))
  if kind == "aae":
    return models.AAE(image_shape=(28, 28, 1), latent_dim=latent, encoder=enc, decoder=dec,
                      critic_hidden=(128,), **kw)
  return models.WAE(image_shape=(28, 28, 1), latent_dim=latent, encoder=enc, decoder=dec,
                    critic_hidden=(128,), penalty=kind, **kw)


def run(model, images, steps, batch=100, hparams=None, seed=0):
  state = model.init(jax.random.key(seed), hparams)
  step = jax.jit(model.train_step)
  history = []
  for t in range(steps):
    i = (t * batch) % (len(images) - batch)
    b = {"image": images[i:i + batch], "label": jnp.zeros(batch, jnp.int32)}
    state, m = step(state, b, jax.random.fold_in(jax.random.key(seed), t))
    history.append(jax.device_get(m))
  return state, history


@pytest.mark.parametrize("kind,extra", [
    ("aae", dict(prior="gaussian_mixture")),
    ("aae", dict(prior="gaussian", posterior="gaussian")),
    ("mmd_rbf", {}), ("mmd_imq", {}), ("gan", {})])
def test_losses_fall_on_real_mnist(mnist_small, kind, extra):
  images = jnp.asarray(mnist_small["image"])
  state, hist = run(small_model(kind, **extra), images, 120)
  first = np.mean([h["recon_loss"] for h in hist[:10]])
  last = np.mean([h["recon_loss"] for h in hist[-10:]])
  assert last < 0.8 * first, (first, last)
  assert int(state.step) == 120
  for h in hist:
    assert all(np.isfinite(v) for v in h.values())
  if kind in ("mmd_rbf", "mmd_imq"):
    # The penalty does its job: without it (λ = 0) q(z) ends further from the prior.
    _, free = run(small_model(kind, **extra), images, 120, hparams={"penalty_weight": 0.0})
    penalised = np.mean([h["penalty"] for h in hist[-20:]])
    assert penalised < 0.85 * np.mean([h["penalty"] for h in free[-20:]])


def test_aae_phases_update_only_their_networks():
  model = small_model("aae")
  state = model.init(jax.random.key(0))
  batch = {"image": jnp.ones((10, 28, 28, 1), jnp.uint8) * 128, "label": jnp.zeros(10, jnp.int32)}
  critic_only = core.update(model, state, "critic", lambda p: (
      jnp.sum(model.apply("critic", p, {}, jnp.ones((3, 2)), train=True)[0]), ({}, {})))[0]
  same = jax.tree.map(lambda a, b: bool(jnp.all(a == b)), state.params, critic_only.params)
  assert all(jax.tree.leaves(same["encoder"])) and all(jax.tree.leaves(same["decoder"]))
  assert not all(jax.tree.leaves(same["critic"]))
  new, _ = jax.jit(model.train_step)(state, batch, jax.random.key(1))
  assert set(new.opt_state) == {"recon", "critic", "gen"}


def test_aae_shared_encoder_pass_equals_the_paper_phases_run_separately():
  # The step shares one encoder forward pass between the critic and generator phases and
  # puts real and fake through the critic as one batch; written out phase by phase, with the
  # encoder run again in each phase, one step must give the same parameters.
  model = small_model("aae", prior="gaussian_mixture")
  state = model.init(jax.random.key(0), {"critic_noise": 0.1})
  images = jnp.asarray(np.random.default_rng(1).integers(0, 255, (12, 28, 28, 1)), jnp.uint8)
  batch = {"image": images, "label": jnp.zeros(12, jnp.int32)}
  rng = jax.random.key(5)
  got, _ = jax.jit(model.train_step)(state, batch, rng)

  def reference(state):
    x, n, keys = model.inputs(batch), 12, jax.random.split(rng, 6)
    encode = lambda p: model.encode_heads(p, state.model_state, x, keys[1])[0]["z"]

    def recon(p):
      heads, ms = model.encode_heads(p, state.model_state, x, keys[0])
      return model.reconstruction(p, ms, x, heads["z"])[0], ({}, state.model_state)

    state = core.update(model, state, "recon", recon)[0]
    real = model.sample_prior(state, keys[2], n)
    s1 = state

    def critic(p):
      logits = model.latent_critic_logits(s1, p, jnp.concatenate([real, jax.lax.stop_gradient(
          encode(p))]), jax.random.fold_in(keys[3], 0))
      return penalties.critic_loss(logits[:n], logits[n:]), ({}, s1.model_state)

    state = core.update(model, state, "critic", critic)[0]
    s2 = state
    gen = lambda p: (penalties.generator_loss(model.latent_critic_logits(
        s2, p, encode(p), jax.random.fold_in(keys[5], 0))), ({}, s2.model_state))
    return core.update(model, state, "gen", gen)[0]

  want = jax.jit(reference)(state)
  for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(want.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_train_step_is_deterministic_and_vmappable():
  model = small_model("mmd_imq")
  images = jnp.asarray(np.random.default_rng(0).integers(0, 255, (16, 28, 28, 1)), jnp.uint8)
  batch = {"image": images, "label": jnp.zeros(16, jnp.int32)}
  rng = jax.random.key(3)
  s0 = model.init(jax.random.key(0))
  a, ma = jax.jit(model.train_step)(s0, batch, rng)
  b, mb = jax.jit(model.train_step)(s0, batch, rng)
  assert jax.tree.all(jax.tree.map(lambda x, y: bool(jnp.all(x == y)), a.params, b.params))
  # Two members with different λ in one vmapped call; member 1 equals a solo run with its λ.
  lams = jnp.array([10.0, 1.0])
  states = jax.vmap(lambda lam: model.init(jax.random.key(0), {"penalty_weight": lam}))(lams)
  vs, vm = jax.jit(jax.vmap(model.train_step, in_axes=(0, None, None)))(states, batch, rng)
  solo, sm = jax.jit(model.train_step)(model.init(jax.random.key(0), {"penalty_weight": 1.0}),
                                       batch, rng)
  np.testing.assert_allclose(vm["loss"][1], sm["loss"], rtol=1e-5)
  np.testing.assert_allclose(vm["loss"][0], ma["loss"], rtol=1e-5)


def test_conv_networks_for_both_image_sizes():
  """A train step with batch norm on 28x28x1; shapes of the 64x64x3 (CelebA) nets."""
  model = models.WAE(image_shape=(28, 28, 1), latent_dim=4, penalty="mmd_rbf",
                     encoder=networks.ConvEncoder(4, (4, 8, 8, 8), 4),
                     decoder=networks.ConvDecoder((28, 28, 1), (8, 8, 4), 4))
  state = jax.jit(model.init)(jax.random.key(0))
  assert "encoder" in state.model_state  # batch-norm statistics
  batch = {"image": jnp.full((4, 28, 28, 1), 100, jnp.uint8), "label": jnp.zeros(4, jnp.int32)}
  new, m = jax.jit(model.train_step)(state, batch, jax.random.key(1))
  assert np.isfinite(m["loss"])
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.model_state, new.model_state)
  assert any(jax.tree.leaves(changed))
  enc, dec = networks.ConvEncoder(4, (4, 8, 8, 8), 5), networks.ConvDecoder((64, 64, 3), (8, 8, 8, 4), 5)
  x = jnp.zeros((2, 64, 64, 3))
  heads, _ = jax.eval_shape(lambda x: enc.init_with_output(jax.random.key(0), x, train=False), x)
  logits, _ = jax.eval_shape(lambda z: dec.init_with_output(jax.random.key(0), z, train=False),
                             heads["z"])
  assert heads["z"].shape == (2, 4) and logits.shape == (2, 64, 64, 3)


def test_create_from_config_and_hparams():
  from configs import aae_unsupervised, wae
  c = aae_unsupervised.get_config()
  m = models.create(c, (28, 28, 1))
  hp = models.hparams_from_config(m, c)
  assert hp["lr_recon"] == c.learning_rate and hp["lr_critic"] == c.critic_learning_rate
  for penalty in models.WAE_PENALTIES:
    c = wae.get_config()
    c.penalty = penalty
    m = models.create(c, (28, 28, 1))
    assert models.hparams_from_config(m, c)["penalty_weight"] == 10.0
    assert ("critic" in m.phase_paths()) == (penalty == "gan")
  paper = models.create(wae.get_config("paper"), (28, 28, 1))
  assert isinstance(paper.encoder, networks.ConvEncoder)
  assert tuple(paper.decoder.channels) == (1024, 512, 256)


def test_bad_inputs():
  with pytest.raises(ValueError, match="unknown WAE penalty"):
    small_model("wasserstein")
  with pytest.raises(ValueError, match="unknown posterior"):
    models.AAE(image_shape=(28, 28, 1), latent_dim=2, posterior="flow")
  with pytest.raises(ValueError, match="unknown recon_loss"):
    models.AAE(image_shape=(28, 28, 1), latent_dim=2, recon_loss="l1")
  with pytest.raises(ValueError, match="prior dim"):
    models.AAE(image_shape=(28, 28, 1), latent_dim=3,
               prior=priors.get("gaussian", dim=2))
  with pytest.raises(ValueError, match="unknown prior"):
    models.AAE(image_shape=(28, 28, 1), latent_dim=2, prior="laplace")
  model = small_model("aae")
  with pytest.raises(ValueError, match="unknown hparams"):
    model.init(jax.random.key(0), {"penalty_weight": 1.0})
  state = model.init(jax.random.key(0))
  with pytest.raises(ValueError, match="model expects"):
    model.train_step(state, {"image": jnp.zeros((4, 32, 32, 3))}, jax.random.key(0))
  with pytest.raises(ValueError, match="unknown reconstruction loss"):
    networks.reconstruction_loss(jnp.zeros((1, 2)), jnp.zeros((1, 2)), "l2")
