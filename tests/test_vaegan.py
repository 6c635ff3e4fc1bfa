"""VAE-GAN: the critic's features, the three losses on a hand-made critic, one shared forward
pass, a short real-MNIST run, the three-way variant, configs, and resume through the loop."""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _configs import small_config
from _steps import run_steps
from aaejax import core, models, penalties
from aaejax.nets import networks
from aaejax.run import builder, train
from aaejax.models.vaegan import VAEGAN, FeatureCritic

Z = 4
STEPS = 80
BATCH = 50


def tiny(**kw):
  return VAEGAN(image_shape=(28, 28, 1), latent_dim=Z,
                encoder=networks.MLPEncoder(Z, (64,), gaussian=True),
                decoder=networks.MLPDecoder((28, 28, 1), (64,)),
                critic=kw.pop("critic", FeatureCritic((64, 32), feature_layer=0,
                                                      outputs=3 if kw.get("three_way") else 1)),
                **kw)


def test_feature_critic_shapes():
  x = jnp.zeros((3, 28, 28, 1))
  mlp = FeatureCritic((16, 8), feature_layer=0)
  (logits, feats) = mlp.apply(mlp.init(jax.random.key(0), x), x)
  assert logits.shape == (3,) and feats.shape == (3, 16)
  conv = FeatureCritic(channels=(4, 8, 16), feature_layer=1, outputs=3, batch_norm=True)
  x64 = jnp.zeros((2, 64, 64, 3))
  v = conv.init(jax.random.key(0), x64, train=False)
  (logits, feats) = conv.apply(v, x64, train=False)
  assert logits.shape == (2, 3) and feats.shape == (2, 16 * 16 * 8)


class Fixed(nn.Module):
  """logit = 2·mean(x) − 1 (three-way: that, 0, −that); features = the pixels."""

  outputs: int = 1

  @nn.compact
  def __call__(self, x, train=True):
    self.param("unused", lambda *_: jnp.zeros(()))
    flat = x.reshape(x.shape[0], -1)
    a = 2.0 * jnp.mean(flat, -1) - 1.0
    logits = a if self.outputs == 1 else jnp.stack([a, jnp.zeros_like(a), -a], -1)
    return logits, flat


@pytest.mark.parametrize("three_way", [False, True])
def test_losses_are_the_formulas(three_way):
  model = tiny(three_way=three_way, critic=Fixed(3 if three_way else 1))
  state = model.init(jax.random.key(0), {"beta": 0.5, "feature_weight": 2.0})
  x = jax.random.uniform(jax.random.key(1), (4, 28, 28, 1))
  batch = {"image": x}
  ins = core.StepInputs(state, batch, jax.random.key(2), model.prepare(state, batch,
                                                                       jax.random.key(2)))
  shared = {"x_rec": jax.random.uniform(jax.random.key(3), (4, 28, 28, 1)),
            "x_p": jax.random.uniform(jax.random.key(4), (4, 28, 28, 1)),
            "kl": jnp.float32(3.0), "recon_loss": jnp.float32(0.0)}
  flat = lambda a: a.reshape(4, -1)
  feat = jnp.mean(0.5 * jnp.sum((flat(shared["x_rec"]) - flat(x)) ** 2, -1))
  logit = lambda a: 2.0 * jnp.mean(flat(a), -1) - 1.0
  enc, _ = model.loss_encoder(ins, state.params, shared)
  np.testing.assert_allclose(enc, 0.5 * 3.0 + feat, rtol=1e-5)
  dec, _ = model.loss_decoder(ins, state.params, shared)
  crit, _ = model.loss_critic(ins, state.params, shared)
  if three_way:
    ce = lambda a, k: jnp.mean(-jax.nn.log_softmax(
        jnp.stack([logit(a), jnp.zeros(4), -logit(a)], -1))[:, k])
    np.testing.assert_allclose(dec, 2.0 * feat + ce(shared["x_rec"], 0) + ce(shared["x_p"], 0),
                               rtol=1e-5)
    np.testing.assert_allclose(crit, ce(x, 0) + ce(shared["x_rec"], 1) + ce(shared["x_p"], 2),
                               rtol=1e-5)
  else:
    gen = (penalties.generator_loss(logit(shared["x_rec"]))
           + penalties.generator_loss(logit(shared["x_p"])))
    np.testing.assert_allclose(dec, 2.0 * feat + gen, rtol=1e-5)
    want = (jnp.mean(jax.nn.softplus(-logit(x))) + jnp.mean(jax.nn.softplus(logit(shared["x_rec"])))
            + jnp.mean(jax.nn.softplus(logit(shared["x_p"]))))
    np.testing.assert_allclose(crit, want, rtol=1e-5)


def test_three_phases_share_one_forward_pass():
  model = tiny()
  groups = core.groups(model.phases())
  assert [[p.name for p in g] for g in groups] == [["encoder", "decoder", "critic"]]
  assert model.phase_paths() == {"encoder": ("encoder",), "decoder": ("decoder",),
                                 "critic": ("critic",)}
  with pytest.raises(ValueError, match="three_way"):
    tiny(three_way=True, critic=FeatureCritic((8,), outputs=1))


@pytest.mark.parametrize("three_way", [False, True])
def test_losses_fall_on_real_data(three_way, mnist_small):
  model = tiny(three_way=three_way)
  _, state, history = run_steps(model, mnist_small, STEPS, BATCH,
                                {"lr_encoder": 1e-3, "lr_decoder": 1e-3, "lr_critic": 1e-3})
  assert all(np.isfinite(h[k]) for h in history for k in h)
  first = lambda k: np.mean([h[k] for h in history[:10]])
  last = lambda k: np.mean([h[k] for h in history[-10:]])
  # The pixels improve though never trained on (after the critic's features settle).
  assert last("recon_loss") < 0.9 * first("recon_loss")
  assert last("critic_loss") < first("critic_loss") and last("critic_acc") > 0.8
  assert model.generate(state, jax.random.key(0), 3).shape == (3, 28, 28, 1)


def test_configs():
  from configs import vaegan as config_module
  c = config_module.get_config()
  c.hidden, c.critic_hidden = (8,), (8,)
  c.feature_weight = 0.5
  model = models.create(c, (28, 28, 1))
  assert type(model) is VAEGAN and not model.three_way and model.critic.feature_layer == 0
  hp = models.hparams_from_config(model, c)
  assert hp["feature_weight"] == 0.5 and {"lr_encoder", "lr_decoder", "lr_critic"} <= set(hp)
  three = config_module.get_config("three_way")
  three.hidden, three.critic_hidden = (8,), (8,)
  assert models.create(three, (28, 28, 1)).critic.outputs == 3
  celeba = models.create(config_module.get_config("celeba_cpu"), (64, 64, 3))
  assert celeba.critic.channels and celeba.critic.feature_layer == 2


def rows(workdir):
  return [json.loads(r) for r in open(os.path.join(workdir, "metrics.jsonl"))]


def test_loop_resumes_bit_identically(mnist_dir, tmp_path, monkeypatch):
  real = builder.load_splits
  monkeypatch.setattr(builder, "load_splits", lambda config: tuple(
      {k: v[:n] for k, v in split.items()} for split, n in zip(real(config), (1000, 200))))
  c = small_config("vaegan", hidden=(32,), critic_hidden=(32,), num_steps=12, log_every=2,
                   eval_every=6, checkpoint_every=4)
  train.train_and_evaluate(c, str(tmp_path / "straight"))
  c8 = c.copy_and_resolve_references()
  c8.num_steps = 8
  train.train_and_evaluate(c8, str(tmp_path / "resumed"))
  out = train.train_and_evaluate(c, str(tmp_path / "resumed"))
  strip = lambda rs: [{k: v for k, v in r.items() if k != "train/steps_per_sec"} for r in rs
                      if not (r["step"] == 8 and any(k.startswith("eval/") for k in r))]
  assert strip(rows(tmp_path / "straight")) == strip(rows(tmp_path / "resumed"))
  assert np.isfinite(out["eval/recon_loss"]) and "eval/knn_accuracy" in out
