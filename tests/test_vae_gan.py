"""The VAE and the GAN: shapes, closed-form checks, real-data training, the loop, sweeps, resume."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _configs import small_config
from aaejax import core, evaluation, models
from aaejax.evaluation import digits, figures
from aaejax.nets import networks
from aaejax.run import builder, sweeps, train
from aaejax.models import vae as vae_lib


def small_vae(latent=4):
  return models.VAE(image_shape=(28, 28, 1), latent_dim=latent,
                    encoder=networks.MLPEncoder(latent, (128,), gaussian=True),
                    decoder=networks.MLPDecoder((28, 28, 1), (128,)))


def small_gan(latent=8):
  return models.GAN(image_shape=(28, 28, 1), latent_dim=latent,
                    generator=networks.MLPDecoder((28, 28, 1), (128, 128), 0.2, True),
                    critic=networks.ImageCritic((128,)))


def train_on(model, images, steps, batch=100, hparams=None):
  state = model.init(jax.random.key(0), hparams)
  step = jax.jit(model.train_step)
  history = []
  for t in range(steps):
    i = (t * batch) % (len(images) - batch)
    state, m = step(state, {"image": images[i:i + batch]}, jax.random.key(t))
    history.append(jax.device_get(m))
  return state, history


def test_gaussian_kl_matches_closed_form_and_monte_carlo():
  mean = jnp.array([[0.5, -1.0, 2.0]])
  logvar = jnp.log(jnp.array([[0.25, 1.0, 4.0]]))
  s = 2.0
  var = np.exp(np.asarray(logvar))
  want = 0.5 * np.sum(var / s**2 + np.asarray(mean) ** 2 / s**2 - 1 - np.log(var / s**2))
  np.testing.assert_allclose(vae_lib.gaussian_kl(mean, logvar, s)[0], want, rtol=1e-6)
  z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(jax.random.key(0), (200_000, 3))
  mc = jnp.mean(vae_lib.gaussian_log_density(z, mean, logvar)
                - vae_lib.gaussian_log_density(z, 0.0, 2 * jnp.log(s)))
  np.testing.assert_allclose(mc, want, rtol=2e-2)
  assert float(vae_lib.gaussian_kl(jnp.zeros((1, 3)), jnp.zeros((1, 3)), 1.0)[0]) == 0.0


def test_vae_trains_on_mnist_and_the_iw_bound_is_tighter(mnist_small):
  images = jnp.asarray(mnist_small["image"])
  model = small_vae()
  state, hist = train_on(model, images, 150)
  first = np.mean([h["neg_elbo"] for h in hist[:10]])
  last = np.mean([h["neg_elbo"] for h in hist[-10:]])
  assert last < 0.6 * first, (first, last)
  assert all(np.isfinite(v) for h in hist for v in h.values())
  assert hist[-1]["kl"] > 0.5  # the posterior moved away from the prior
  test = images[:300]
  bounds = evaluation.likelihood_bounds(model, state, test, jax.random.key(1), k=50)
  assert bounds["nll_iw"] < bounds["nll_elbo"]
  one = evaluation.likelihood_bounds(model, state, test, jax.random.key(1), k=1)
  # k = 1 samples the KL instead of taking it in closed form: the same bound in expectation.
  np.testing.assert_allclose(one["nll_iw"], one["nll_elbo"], rtol=2e-2)
  # β = 0: nothing pulls q(z|x) to the prior, the KL grows.
  _, free = train_on(model, images, 150, hparams={"beta": 0.0})
  assert np.mean([h["kl"] for h in free[-10:]]) > np.mean([h["kl"] for h in hist[-10:]])


def test_vae_rejects_a_deterministic_posterior():
  with pytest.raises(ValueError, match="posterior='gaussian'"):
    models.VAE(image_shape=(28, 28, 1), latent_dim=2, posterior="deterministic")
  with pytest.raises(ValueError, match="z_logvar"):
    models.VAE(image_shape=(28, 28, 1), latent_dim=2, encoder=networks.MLPEncoder(2, (8,)))
  with pytest.raises(ValueError, match="gaussian prior"):
    models.VAE(image_shape=(28, 28, 1), latent_dim=2, prior="uniform")


def test_gan_trains_on_mnist(mnist_small):
  images = jnp.asarray(mnist_small["image"])
  model = small_gan()
  state, hist = train_on(model, images, 150)
  assert all(np.isfinite(v) for h in hist for v in h.values())
  # The game is played: the critic neither wins outright nor is fooled for good.
  acc = np.mean([h["critic_acc"] for h in hist[-30:]])
  assert 0.2 < acc < 0.999, acc
  samples = model.generate(state, jax.random.key(0), 64)
  assert samples.shape == (64, 28, 28, 1)
  assert 0.0 <= float(samples.min()) and float(samples.max()) <= 1.0
  # Samples moved from the initial grey blur towards MNIST's mostly black background.
  init = model.generate(model.init(jax.random.key(0)), jax.random.key(0), 64)
  assert float(jnp.mean(samples)) < float(jnp.mean(init)) - 0.1


def test_dcgan_on_64x64_random_data():
  from configs import gan
  c = gan.get_config("dcgan")
  c.gen_channels, c.critic_channels, c.latent_dim = (16, 8, 8, 4), (4, 8, 8, 16), 8
  model = models.create(c, (64, 64, 3))
  assert isinstance(model.generator, networks.ConvDecoder)
  assert isinstance(model.critic, networks.ConvCritic)
  state = jax.jit(model.init)(jax.random.key(0))
  assert {"generator", "critic"} <= set(state.model_state)  # batch norm in both
  x = jax.random.randint(jax.random.key(1), (4, 64, 64, 3), 0, 256).astype(jnp.uint8)
  args = (state, {"image": x}, jax.random.key(2))
  # Without LLVM optimisations: 3x faster to compile, the same math.
  new, m = jax.jit(model.train_step).lower(*args).compile(
      {"xla_backend_optimization_level": 0})(*args)
  assert all(np.isfinite(float(v)) for v in m.values())
  assert model.generate(new, jax.random.key(3), 2).shape == (2, 64, 64, 3)
  default = models.create(gan.get_config("dcgan"), (64, 64, 3))
  assert tuple(default.generator.channels) == (512, 256, 128, 64)
  with pytest.raises(ValueError, match="28x28 and 64x64"):
    models.create(gan.get_config("dcgan"), (32, 32, 3))


def test_mode_coverage_evaluator_on_handmade_generators(mnist_small, tmp_path):
  """A generator that returns real digits of chosen classes; the classifier judges them."""
  params = digits.train_classifier(mnist_small["image"], mnist_small["label"], steps=300)
  images, labels = mnist_small["image"], mnist_small["label"]
  probs = digits.predict_proba(params, images[:1000])
  assert np.mean(probs.argmax(1) == labels[:1000]) > 0.9
  only_ones = digits.mode_coverage(digits.predict_proba(params, images[labels == 1][:200]))
  assert only_ones["classes_covered"] == 1 and only_ones["rarest_class_share"] == 0.0
  every = digits.mode_coverage(probs)
  assert every["classes_covered"] == 10 and every["rarest_class_share"] > 0.05
  assert every["confident_share"] > 0.5
  model = small_gan()
  ev = evaluation.Evaluation(model, {}, {})
  assert "mode_coverage" in ev.names and "recon_loss" not in ev.names
  assert not {"mode_coverage"} & set(evaluation.Evaluation(
      models.GAN(image_shape=(64, 64, 3), latent_dim=4), {}, {}).names)


def run(config, workdir):
  return train.train_and_evaluate(config, str(workdir))


def rows(workdir):
  return [json.loads(r) for r in open(os.path.join(workdir, "metrics.jsonl"))]


@pytest.mark.parametrize("name", ["vae", "gan", "infogan"])
def test_main_loop_sweep_and_resume(mnist_dir, tmp_path, name, monkeypatch):
  real = builder.load_splits

  def small_splits(config):
    tr, te = real(config)
    return ({k: v[:1000] for k, v in tr.items()}, {k: v[:400] for k, v in te.items()})

  monkeypatch.setattr(builder, "load_splits", small_splits)
  fields = dict(hidden=(32,), critic_hidden=(32,), num_steps=12, log_every=2, eval_every=6,
                checkpoint_every=4, iw_examples=100, iw_samples=10)
  if name in ("gan", "infogan"):
    fields.update(skip_evaluators=(), mode_coverage_samples=200, latent_dim=4,
                  cache_dir=str(tmp_path / "cache"), classifier_options={"steps": 20},
                  fd_samples=200, parzen_samples=200, parzen_validation=50, parzen_test=100)
  c = small_config(name, **{k: v for k, v in fields.items()
                            if k not in ("iw_examples", "iw_samples") or name == "vae"})
  c.plots = True
  result = run(c, tmp_path / "straight")
  if name == "vae":
    assert result["eval/nll_iw"] <= result["eval/nll_elbo_iw_subset"] + 1e-3
    assert np.isfinite(result["eval/nll_elbo"]) and np.isfinite(result["eval/knn_accuracy"])
  else:
    assert 1 <= result["eval/classes_covered"] <= 10
    assert 0 <= result["eval/rarest_class_share"] <= 0.1
    assert 0 <= result["eval/confident_share"] <= 1
    assert result["eval/fd_digits"] > 0 and np.isfinite(result["eval/parzen_ll"])
    assert (result["eval/fd_samples"], result["eval/fd_real_samples"]) == (200, 200)
    evals = [r for r in rows(tmp_path / "straight") if "eval/fd_digits" in r]
    assert [("eval/parzen_ll" in r) for r in evals] == [False, True]  # the final eval only
    assert "eval/recon_loss" not in result
    assert ("eval/categorical_error" in result) == (name == "infogan")
  plots = set(os.listdir(tmp_path / "straight" / "plots"))
  assert {"samples.png", "curves.png"} <= plots
  assert ("infogan_codes.png" in plots) == (name == "infogan")
  assert ("latent_qz.png" in plots) == (name == "vae")
  # Resume: 8 steps, then the same run to 12, equals the straight run.
  c8 = c.copy_and_resolve_references()
  c8.num_steps = 8
  run(c8, tmp_path / "resumed")
  run(c, tmp_path / "resumed")
  strip = lambda rs: [{k: v for k, v in r.items() if k != "train/steps_per_sec"} for r in rs
                      if not (r["step"] == 8 and any(k.startswith("eval/") for k in r))]
  assert strip(rows(tmp_path / "straight")) == strip(rows(tmp_path / "resumed"))
  # A sweep over the model's declared hparams: member 1 is its solo run.
  field = "beta" if name == "vae" else "critic_learning_rate"
  c.plots = False
  out = sweeps.run_sweep(c, [f"{field}=0.5,1e-3"], str(tmp_path / "sweep"))
  assert len(out) == 2
  solo = c.copy_and_resolve_references()
  solo[field] = 1e-3
  run(solo, tmp_path / "solo")
  a, b = rows(tmp_path / "sweep" / "member_1"), rows(tmp_path / "solo")
  assert [r["step"] for r in a] == [r["step"] for r in b]
  for x, y in zip(a, b):
    for k in x:
      if k.startswith("train/") and k != "train/steps_per_sec":
        np.testing.assert_allclose(x[k], y[k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_figures_follow_capabilities(tmp_path):
  gan, vae = small_gan(latent=2), small_vae(latent=2)
  test = {"image": jnp.zeros((20, 28, 28, 1), jnp.uint8), "label": jnp.arange(20) % 10}
  g = figures.make_figures(gan, gan.init(jax.random.key(0)), str(tmp_path / "g"), test,
                           jax.random.key(1))
  assert sorted(os.path.basename(p) for p in g) == ["manifold.png", "samples.png"]
  v = figures.make_figures(vae, vae.init(jax.random.key(0)), str(tmp_path / "v"), test,
                           jax.random.key(1))
  assert {"latent_qz.png", "manifold.png", "reconstructions.png"} <= {os.path.basename(p)
                                                                     for p in v}
  assert core.LIKELIHOOD in vae.capabilities() and core.ENCODE not in gan.capabilities()


def test_minibatch_stddev_critic():
  x = jax.random.uniform(jax.random.key(0), (8, 28, 28, 1))
  plain = networks.ImageCritic((16, 8))
  mb = networks.ImageCritic((16, 8), minibatch_std=4)
  v_plain, v_mb = plain.init(jax.random.key(1), x), mb.init(jax.random.key(1), x)
  assert set(v_plain["params"]) == {"mlp"}  # the option off keeps the checkpoint layout
  assert v_mb["params"]["out"]["kernel"].shape == (8 + 1, 1)
  assert mb.apply(v_mb, x).shape == (8,)
  # A group of identical images has feature std 0: its logit moves with the std input alone.
  same = jnp.tile(x[:1], (4, 1, 1, 1))
  h = networks.minibatch_stddev(jnp.concatenate([same.reshape(4, -1), x[4:].reshape(4, -1)]), 4)
  assert float(h[0, 0]) < 1e-3 < float(h[4, 0])
  assert mb.apply(v_mb, x[:6]).shape == (6,)  # 4 does not divide 6: groups of 2
  np.testing.assert_allclose(networks.minibatch_stddev(x[:6].reshape(6, -1), 4),
                             networks.minibatch_stddev(x[:6].reshape(6, -1), 2))
  config = small_config("gan", minibatch_std=2, hidden=(8,), critic_hidden=(8,))
  assert models.create(config, (28, 28, 1)).critic.minibatch_std == 2


def test_dcgan_critic_dropout():
  """critic_dropout reaches the DCGAN critic: random when training, off in eval, no parameters."""
  x = jax.random.uniform(jax.random.key(0), (4, 28, 28, 1))
  plain = networks.ConvCritic((8, 16), batch_norm=False)
  drop = networks.ConvCritic((8, 16), batch_norm=False, dropout=0.5)
  v = plain.init(jax.random.key(1), x, train=False)
  assert jax.tree.structure(v) == jax.tree.structure(drop.init(jax.random.key(1), x, train=False))
  np.testing.assert_array_equal(drop.apply(v, x, train=False), plain.apply(v, x, train=False))
  a, b = (drop.apply(v, x, train=True, rngs={"dropout": jax.random.key(k)}) for k in (2, 3))
  assert not np.allclose(a, b)
  config = small_config("gan", network="conv", critic_dropout=0.3)
  assert models.create(config, (28, 28, 1)).critic.dropout == 0.3
