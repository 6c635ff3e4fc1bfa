"""Adversarial feature disentanglement: the label adversary on z and the two-encoder form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aaejax import core, evaluation, models
from aaejax.nets import networks
from aaejax.models import aae_style

STEPS = 60
BATCH = 100


def small(**kw):
  return models.StyleAAE(image_shape=(28, 28, 1), latent_dim=4, prior="gaussian",
                         encoder=networks.MLPEncoder(4, (64,)),
                         decoder=networks.MLPDecoder((28, 28, 1), (64,)), critic_hidden=(32,),
                         adversary_hidden=(32,), adam_b1=0.5, **kw)


@pytest.fixture(scope="module")
def runs(mnist_small):
  """form -> (model, first state, last state, metric history): 60 real-MNIST steps each."""
  out = {}
  images, labels = jnp.asarray(mnist_small["image"]), jnp.asarray(mnist_small["label"])
  for form, kw in {"adversary": dict(label_adversary=True),
                   "two_encoders": dict(label_adversary=True, content_encoder=True)}.items():
    model = small(**kw)
    state = first = model.init(jax.random.key(0), {"label_adversary_weight": 10.0})
    step = jax.jit(model.train_step)
    history = []
    for t in range(STEPS):
      i = (t * BATCH) % (len(images) - BATCH)
      state, m = step(state, {"image": images[i:i + BATCH], "label": labels[i:i + BATCH]},
                      jax.random.key(t))
      history.append(jax.device_get(m))
    out[form] = (model, first, state, history)
  return out


def test_confusion_loss_is_smallest_for_a_uniform_adversary():
  k = 10
  assert float(aae_style.confusion_loss(jnp.zeros((4, k)))) == pytest.approx(np.log(k), rel=1e-6)
  confident = jnp.zeros((4, k)).at[:, 3].set(8.0)
  # Cross-entropy to uniform = log K + KL(uniform || p) > log K.
  p = jax.nn.softmax(confident[0])
  expected = -np.mean(np.log(np.asarray(p)))
  assert float(aae_style.confusion_loss(confident)) == pytest.approx(expected, rel=1e-5)
  assert expected > np.log(k)


def test_the_adversary_is_a_declared_phase_with_its_own_rate():
  model = small(label_adversary=True)
  assert [p.name for p in model.phases()] == ["recon", "critic", "gen", "label_adversary"]
  assert model.phase("label_adversary").trains == ("label_adversary",)
  fields = model.hparam_fields()
  assert fields["lr_label_adversary"] == "label_adversary_learning_rate"
  assert fields["label_adversary_weight"] == "label_adversary_weight"
  assert [p.name for p in small().phases()] == ["recon", "critic", "gen"]
  two = small(content_encoder=True)
  assert two.phase("recon").trains == ("encoder", "decoder", "content_encoder")
  assert core.CLASSIFY in two.capabilities() and core.CLASSIFY not in small().capabilities()
  from configs import aae_style as style_config
  c = style_config.get_config()
  assert models.create(c, (28, 28, 1)).label_adversary is False
  c.label_adversary_weight = 1.0
  assert models.create(c, (28, 28, 1)).label_adversary is True


def test_phases_train_their_networks_and_losses_fall(runs):
  for form, (model, first, state, history) in runs.items():
    assert np.mean([h["recon_loss"] for h in history[-10:]]) < np.mean(
        [h["recon_loss"] for h in history[:5]])
    assert {"label_adversary_loss", "label_adversary_acc",
            "adversary_confusion_loss"} <= set(history[-1])
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), first.params, state.params)
    assert all(jax.tree.leaves(changed))
    if form == "two_encoders":
      assert history[-1]["content_loss"] < history[0]["content_loss"]


def test_the_adversary_phase_trains_only_the_adversary(runs):
  model, _, state, _ = runs["adversary"]
  batch = {"image": jnp.zeros((8, 28, 28, 1), jnp.uint8), "label": jnp.arange(8) % 10}
  inputs = core.StepInputs(state, batch, jax.random.key(0),
                           model.prepare(state, batch, jax.random.key(0)))
  codes, _ = model.adversarial_forward(inputs, state.params)
  grads = jax.grad(lambda p: model.loss_label_adversary(inputs, p, codes)[0])(state.params)
  norms = {k: float(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(v))) for k, v in grads.items()}
  assert norms["label_adversary"] > 0
  assert all(v == 0 for k, v in norms.items() if k != "label_adversary")


def test_two_encoders_classify_and_decode_without_labels(runs):
  model, _, state, _ = runs["two_encoders"]
  images = jnp.zeros((6, 28, 28, 1), jnp.uint8)
  assert model.classify(state, images).shape == (6, 10)
  heads = model.encode(state, images)
  assert model.decoder_input(heads).shape == (6, 14)  # [z, softmax(C(x))], no labels
  assert model.decode_with_labels(state, jnp.zeros((3, 4)), jnp.arange(3)).shape == (
      3, 28, 28, 1)
  with pytest.raises(ValueError, match="two-encoder"):
    small().classify(state, images)


def test_z_label_knn_accuracy_on_handmade_codes():
  model = small(label_adversary=True)
  labels = jnp.arange(200) % 10
  informative = 10.0 * jax.random.normal(jax.random.key(1), (10, 4))[labels]  # a point per class
  noise = jax.random.normal(jax.random.key(0), (200, 4))
  other_noise = jax.random.normal(jax.random.key(2), (200, 4))
  evaluator = {e.name: e for e in model.evaluators()}["z_label_knn_accuracy"]
  for z, z_train, lo, hi in ((informative, informative + 1e-3, 0.99, 1.0),
                             (noise, other_noise, 0.0, 0.25)):
    ctx = evaluation.context(model, None, {"label": labels}, {"label": labels},
                             config={"dataset": "mnist"}, test_outputs={"z": z},
                             train_outputs={"z": z_train})
    acc = evaluator.fn(ctx)["eval/z_label_knn_accuracy"]
    assert lo <= acc <= hi
  assert "z_label_knn_accuracy" in [e.name for e in evaluation.select(model, {})]
