"""The label-aware AAEs: short real-MNIST runs, label plumbing, metrics, plots, bad configs."""

import dataclasses
import importlib
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aaejax import core, evaluation, models, priors
from aaejax.evaluation import figures
from aaejax.nets import networks
from aaejax.run import builder
from aaejax.models import aae_dimreduction, aae_supervised_prior

STEPS = 150
BATCH = 100


def small(cls, latent_dim=2, num_categories=0, **kw):
  enc = networks.MLPEncoder(latent_dim, (128,), num_categories=num_categories)
  dec = networks.MLPDecoder((28, 28, 1), (128,))
  if num_categories:
    kw["num_categories"] = num_categories
  return cls(image_shape=(28, 28, 1), latent_dim=latent_dim, encoder=enc, decoder=dec,
             critic_hidden=(64,), **kw)


MODELS = {
    "supervised_prior": lambda: small(models.SupervisedPriorAAE, num_labeled=100,
                                      labeled_batch_size=50),
    "style": lambda: small(models.StyleAAE, latent_dim=4, prior="gaussian"),
    "semisupervised": lambda: small(models.SemiSupervisedAAE, 4, 10, prior="gaussian",
                                    num_labeled=100),
    "clustering": lambda: small(models.ClusteringAAE, 4, 16, prior="gaussian"),
    "dimreduction": lambda: small(models.DimReductionAAE, 2, 10, prior="gaussian",
                                  num_labeled=100),
}


def compiled(fn, *args):
  """``jax.jit(fn)`` compiled for ``args`` without LLVM optimisations (3× faster to compile)."""
  return jax.jit(fn).lower(*args).compile({"xla_backend_optimization_level": 0})


@pytest.fixture(scope="module")
def trained(mnist_small):
  """name -> (model, final state, metric history, labelled subset), trained on demand once."""
  cache = {}

  def get(name):
    if name not in cache:
      model = MODELS[name]()
      train_np, streams = builder.run_data(model, mnist_small, 0)
      labeled = streams.get("labeled")
      images, labels = jnp.asarray(train_np["image"]), jnp.asarray(train_np["label"])
      state = model.init(jax.random.key(0))
      history, step = [], None
      for t in range(STEPS):
        i = (t * BATCH) % (len(images) - BATCH)
        batch = {"image": images[i:i + BATCH], "label": labels[i:i + BATCH]}
        if labeled is not None:
          j = (t * 50) % (len(labeled["label"]) - 50)
          batch.update(labeled_image=labeled["image"][j:j + 50],
                       labeled_label=labeled["label"][j:j + 50])
        step = step or compiled(model.train_step, state, batch, jax.random.key(t))
        state, m = step(state, batch, jax.random.key(t))
        history.append(jax.device_get(m))
      cache[name] = (model, state, history, labeled)
    return cache[name]

  return get


def test_one_hot_with_unlabelled():
  got = aae_supervised_prior.one_hot_with_unlabelled(jnp.array([0, 2, -1]), 3)
  np.testing.assert_array_equal(got, [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_losses_fall_on_real_mnist(trained, name):
  model, state, hist, _ = trained(name)
  first = np.mean([h["recon_loss"] for h in hist[:10]])
  last = np.mean([h["recon_loss"] for h in hist[-10:]])
  assert last < 0.8 * first, (first, last)
  assert int(state.step) == STEPS and set(state.opt_state) == set(model.phase_paths())
  for h in hist:
    assert all(np.isfinite(v) for v in h.values()), h
  if "supervised" in model.phase_paths():
    assert np.mean([h["supervised_loss"] for h in hist[-10:]]) < 0.3 * hist[0]["supervised_loss"]


def test_supervised_prior_label_plumbing(trained, mnist_small):
  model, state, _, _ = trained("supervised_prior")
  relabelled, streams = builder.run_data(model, mnist_small, 3)
  labeled = streams["labeled"]
  assert relabelled["image"] is mnist_small["image"]
  kept = relabelled["label"] >= 0
  # The labelled subset, for the labelled mini-batches of the regularization phases.
  np.testing.assert_array_equal(labeled["label"], relabelled["label"][kept])
  np.testing.assert_array_equal(labeled["image"], mnist_small["image"][kept])
  batch = {"image": jnp.zeros((3, 28, 28, 1), jnp.uint8), "label": jnp.array([-1, 2, -1]),
           "labeled_image": jnp.ones((2, 28, 28, 1), jnp.uint8), "labeled_label": jnp.array([5, 6])}
  reg = model.regularization_batch(batch)
  np.testing.assert_array_equal(reg["label"], [-1, 2, -1, 5, 6])
  assert reg["image"].shape == (5, 28, 28, 1) and int(reg["image"][3].min()) == 1
  without = dataclasses.replace(model, labeled_batch_size=0)
  assert without.streams() == {} and builder.run_data(without, mnist_small, 3)[1] == {}
  assert kept.sum() == 100 and set(relabelled["label"][~kept]) == {-1}
  np.testing.assert_array_equal(np.bincount(relabelled["label"][kept]), [10] * 10)
  np.testing.assert_array_equal(relabelled["label"][kept], mnist_small["label"][kept])
  again = model.train_data(mnist_small, 3)
  other = model.train_data(mnist_small, 4)
  np.testing.assert_array_equal(again["label"], relabelled["label"])
  assert not np.array_equal(other["label"] >= 0, kept)

  # The critic's condition: one-hot of size 11, the last slot for the unlabelled.
  labels = jnp.array([4, -1] * 200)
  cond = model.critic_condition({"label": labels})
  assert cond.shape == (400, 11)
  np.testing.assert_array_equal(cond[0], np.eye(11)[4])
  np.testing.assert_array_equal(cond[1], np.eye(11)[10])
  assert state.params["critic"]["mlp"]["hidden_0"]["kernel"].shape == (2 + 11, 64)
  # Real samples: the label's component for labelled examples, the whole prior otherwise.
  real = model.prior_codes(state, {"label": labels}, jax.random.key(1), 400)["critic"]
  nearest = np.argmin(((real[:, None] - model.prior.means()[None]) ** 2).sum(-1), axis=1)
  assert np.mean(nearest[0::2] == 4) > 0.95
  assert len(set(nearest[1::2].tolist())) == 10


def test_supervised_prior_metric_on_handmade_codes():
  labels = jnp.arange(100) % 10
  for name, codes in (
      ("gaussian_mixture", priors.get("gaussian_mixture").means()[labels]),
      ("swiss_roll", priors.get("swiss_roll").position((labels + 0.5) / 10))):
    model = small(models.SupervisedPriorAAE, prior=name)
    state = types.SimpleNamespace(hparams={"prior_scale": jnp.float32(2.0)})  # all it reads
    component = evaluation.REGISTRY["label_component"].fn
    acc = component(evaluation.context(model, state, {"label": labels},
                                       test_outputs={"z": 2.0 * codes}))
    assert acc == {"eval/label_component_accuracy": 1.0}
    shifted = component(evaluation.context(model, state, {"label": (labels + 1) % 10},
                                           test_outputs={"z": 2.0 * codes}))
    assert shifted["eval/label_component_accuracy"] == 0.0


def test_semisupervised_error_and_clusters(trained, mnist_small):
  model, state, _, labeled = trained("semisupervised")
  np.testing.assert_array_equal(np.bincount(labeled["label"]), [10] * 10)
  assert {"classification"} <= set(evaluation.Evaluation(model, {}, {}).names)
  classify = evaluation.REGISTRY["classification"].fn
  labels = jnp.arange(20) % 10
  logits = 30.0 * jax.nn.one_hot(jnp.where(jnp.arange(20) < 5, (labels + 1) % 10, labels), 10)
  got = classify(evaluation.context(model, state, {"label": labels},
                                    test_outputs={"y_logits": logits}))
  assert got["eval/error_rate"] == 25.0
  np.testing.assert_allclose(got["eval/y_confidence"], 1.0, atol=1e-6)  # one-hot y
  # After a short run q(y|x) already beats chance on held-out images (the model's own pass).
  test = {k: jnp.asarray(v[1500:]) for k, v in mnist_small.items()}
  assert classify(evaluation.context(model, state, test))["eval/error_rate"] < 75

  clustering, cstate, _, _ = trained("clustering")
  assert "clustering" in evaluation.Evaluation(clustering, {}, {}).names
  cluster = evaluation.REGISTRY["clustering"].fn
  train_subset = {k: jnp.asarray(v[:1000]) for k, v in mnist_small.items()}
  ctx = evaluation.context(clustering, cstate, test, train_subset)
  err = cluster(ctx)["eval/cluster_error"]
  assert 0.0 <= err < 85.0
  assert ctx.test_outputs["z"].shape == (500, 4 + 16)  # the representation [z, y]
  # The collapse diagnostics on hand-made codes: 3 of 16 categories used, one-hot y; then
  # every image in category 0 with uniform y.
  three = 30.0 * jax.nn.one_hot(jnp.arange(500) % 3, 16)
  got = cluster(evaluation.context(clustering, cstate, test, train_subset,
                                   test_outputs={"y_logits": three}))
  assert got["eval/categories_used"] == 3
  np.testing.assert_allclose(got["eval/y_confidence"], 1.0, atol=1e-6)
  got = cluster(evaluation.context(clustering, cstate, test, train_subset,
                                   test_outputs={"y_logits": jnp.zeros((500, 16))}))
  assert got["eval/categories_used"] == 1
  np.testing.assert_allclose(got["eval/y_confidence"], 1 / 16, rtol=1e-6)


def test_supervised_phase_trains_only_the_encoder(trained):
  model, state, _, labeled = trained("semisupervised")
  batch = {"labeled_image": labeled["image"][:20], "labeled_label": labeled["label"][:20]}
  new, m = compiled(lambda s, b: core.update(
      model, s, "supervised",
      lambda p: model.loss_supervised(core.StepInputs(s, b, jax.random.key(0), {}), p)),
      state, batch)(state, batch)
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params, new.params)
  assert any(jax.tree.leaves(changed["encoder"]))
  for net in ("decoder", "critic_y", "critic_z"):
    assert not any(jax.tree.leaves(changed[net]))
  assert 0.0 <= m["supervised_acc"] <= 1.0


def test_style_decoder_uses_the_label(trained):
  model, state, _, _ = trained("style")
  z = jnp.zeros((10, 4))
  images = model.decode(state, model.decoder_input({"z": z}, jnp.arange(10)))
  assert float(jnp.mean(jnp.abs(images[1:] - images[:1]))) > 0.01
  assert model.generate(state, jax.random.key(0), 6).shape == (6, 28, 28, 1)
  with pytest.raises(ValueError, match="pass labels"):
    model.decoder_input({"z": z})


def test_spread_heads_are_a_margin_apart():
  for m, d in [(2, 2), (10, 2), (20, 10), (3, 1)]:
    heads = aae_dimreduction.spread_heads(m, d, 6.0)
    dist = np.linalg.norm(heads[:, None] - heads[None], axis=-1)[np.triu_indices(m, 1)]
    assert heads.shape == (m, d)
    np.testing.assert_allclose(dist.min(), 6.0, rtol=1e-6)


def test_cluster_head_hinge():
  loss, min_dist = aae_dimreduction.head_hinge(jnp.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]]), 2.0)
  np.testing.assert_allclose([loss, min_dist], [1.0, 1.0], rtol=1e-5)
  # Gradient steps on the hinge alone push the heads apart.
  w = jax.random.normal(jax.random.key(0), (10, 2))
  grad = jax.jit(jax.grad(lambda w: aae_dimreduction.head_hinge(w, 4.0)[0]))
  before = aae_dimreduction.head_hinge(w, 4.0)
  for _ in range(20):
    w = w - 0.1 * grad(w)
  after = aae_dimreduction.head_hinge(w, 4.0)
  assert after[0] < 0.5 * before[0] and after[1] > before[1]


def test_dimreduction_representation(trained, mnist_small):
  model, state, hist, _ = trained("dimreduction")
  # The heads start a regular polygon of side head_margin (the hinge is 0) and training
  # keeps them near it.
  init = model.init(jax.random.key(0))
  heads = init.params["cluster_heads"]["heads"]
  np.testing.assert_allclose(aae_dimreduction.head_hinge(heads, 6.0), [0.0, 6.0], atol=1e-4)
  assert min(h["min_head_distance"] for h in hist) > 5.5
  # r = y·W_c + z, in training (encode_heads) and inference (encode).
  x = jnp.asarray(mnist_small["image"][:3])
  w = state.params["cluster_heads"]["heads"]
  for heads in (model.encode(state, x),
                model.encode_heads(state.params, {}, x / 255.0, jax.random.key(0))[0]):
    np.testing.assert_allclose(heads["r"], heads["y"] @ w + heads["z"], rtol=1e-5, atol=1e-5)
  unsupervised = small(models.DimReductionAAE, 2, 20, prior="gaussian", num_labeled=0)
  assert "supervised" not in unsupervised.phase_paths()
  assert "lr_supervised" not in unsupervised.hparams()
  assert unsupervised.phase_paths()["recon"] == ("encoder", "decoder", "cluster_heads")
  assert core.CLUSTER in unsupervised.capabilities()  # evaluated as clusters (cluster_error)


def test_figures(trained, mnist_small, tmp_path):
  test = {k: jnp.asarray(v[:300]) for k, v in mnist_small.items()}
  common = {"latent_qz.png", "prior_pz.png", "reconstructions.png", "samples.png"}
  expected = {"supervised_prior": {"components_manifold.png", "manifold.png"},
              "style": {"style_grid.png"}, "semisupervised": {"cluster_heads.png"},
              "clustering": {"cluster_heads.png"},
              "dimreduction": {"cluster_heads.png", "representation_manifold.png",
                               "manifold.png"}}
  for name, files in expected.items():
    model, state, _, _ = trained(name)
    paths = figures.make_figures(model, state, str(tmp_path / name), test, jax.random.key(0))
    assert {p.split("/")[-1] for p in paths} == common | files, name
    for p in paths:
      assert (tmp_path / name / p.split("/")[-1]).stat().st_size > 1000
  roll = small(models.SupervisedPriorAAE, prior="swiss_roll", num_labeled=100)
  _, state, _, _ = trained("supervised_prior")  # the same networks' shapes
  paths = figures.make_figures(roll, state, str(tmp_path / "roll"), test, jax.random.key(0))
  assert "roll_walk.png" in {p.split("/")[-1] for p in paths}


def test_configs_create_models():
  for name, cls in (("aae_supervised_prior", models.SupervisedPriorAAE),
                    ("aae_style", models.StyleAAE),
                    ("aae_semisupervised", models.SemiSupervisedAAE),
                    ("aae_clustering", models.ClusteringAAE),
                    ("aae_dimreduction", models.DimReductionAAE)):
    c = importlib.import_module(f"configs.{name}").get_config()
    c.hidden, c.critic_hidden = (16,), (16,)
    model = models.create(c, (28, 28, 1))
    assert type(model) is cls
    hp = models.hparams_from_config(model, c)
    assert hp["lr_recon"] == c.learning_rate and hp["critic_noise"] == c.critic_noise
  c = importlib.import_module("configs.aae_semisupervised").get_config()
  c.num_labeled, c.labeled_batch_size = 1000, 32
  model = models.create(c, (28, 28, 1))
  got = (model.num_labeled, model.labeled_batch_size, model.encoder.num_categories)
  assert got == (1000, 32, 10)
  assert models.hparams_from_config(model, c)["lr_supervised"] == c.supervised_learning_rate
  c = importlib.import_module("configs.aae_clustering").get_config()
  c.num_clusters = 30
  assert models.create(c, (28, 28, 1)).encoder.num_categories == 30
  c = importlib.import_module("configs.aae_dimreduction").get_config()
  hp = models.hparams_from_config(models.create(c, (28, 28, 1)), c)
  assert hp["head_margin"] == c.head_margin


def test_encoder_and_critic_dropout():
  """encoder_dropout and critic_dropout reach the nets: random in training (the step draws
  both from its key), off in inference, no parameters (checkpoints unchanged)."""
  x = jax.random.uniform(jax.random.key(0), (4, 28, 28, 1))
  for plain, drop, inputs in ((networks.MLPEncoder(3, (16,), num_categories=4),
                               networks.MLPEncoder(3, (16,), num_categories=4, dropout=0.5), (x,)),
                              (networks.Critic((16,)), networks.Critic((16,), dropout=0.5),
                               (x[:, 0, :3, 0],))):
    v = plain.init(jax.random.key(1), *inputs)
    assert jax.tree.structure(v) == jax.tree.structure(drop.init(jax.random.key(1), *inputs))
    chex.assert_trees_all_equal(drop.apply(v, *inputs, train=False),
                                plain.apply(v, *inputs, train=False))
    a, b = (jax.tree.leaves(drop.apply(v, *inputs, train=True, rngs={"dropout": jax.random.key(k)}))
            for k in (2, 3))
    assert not np.allclose(a[0], b[0])
  c = importlib.import_module("configs.aae_semisupervised").get_config()
  c.hidden, c.critic_hidden, c.encoder_dropout, c.critic_dropout = (16,), (16,), 0.25, 0.2
  model = models.create(c, (28, 28, 1))
  assert model.encoder.dropout == 0.25
  assert {n: model.networks()[n][0].dropout for n in ("critic_y", "critic_z")} == {
      "critic_y": 0.2, "critic_z": 0.2}
  state = model.init(jax.random.key(0))
  images = (255 * x).astype(jnp.uint8)
  batch = {"image": images, "labeled_image": images, "labeled_label": jnp.arange(4)}
  step = jax.jit(model.train_step)
  (one, m1), (two, m2) = (step(state, batch, jax.random.key(k)) for k in (5, 6))
  assert all(np.isfinite(float(v)) for v in m1.values())
  assert float(m1["supervised_loss"]) != float(m2["supervised_loss"])  # dropout in the step
  again, _ = step(state, batch, jax.random.key(5))
  chex.assert_trees_all_equal(one.params, again.params)  # and the key alone decides it


def test_bad_configs():
  with pytest.raises(ValueError, match="positive multiple"):
    small(models.SupervisedPriorAAE, num_labeled=105)
  with pytest.raises(ValueError, match="positive multiple"):
    small(models.SemiSupervisedAAE, 4, 10, prior="gaussian", num_labeled=55)
  with pytest.raises(ValueError, match="needs a prior with classes"):
    small(models.SupervisedPriorAAE, prior="gaussian")
  with pytest.raises(ValueError, match="unknown prior"):
    small(models.SupervisedPriorAAE, prior="laplace")
  with pytest.raises(ValueError, match="must be >= 2"):
    small(models.ClusteringAAE, 4, 1, prior="gaussian")
  with pytest.raises(ValueError, match="one category per class"):
    small(models.DimReductionAAE, 2, 20, prior="gaussian", num_labeled=100)
  with pytest.raises(ValueError, match="uses no labels"):
    small(models.ClusteringAAE, 4, 16, prior="gaussian", num_labeled=100)
  with pytest.raises(ValueError, match="needs num_labeled > 0"):
    small(models.SemiSupervisedAAE, 4, 10, prior="gaussian", num_labeled=0)
  with pytest.raises(ValueError, match="encoder has 16 categories"):
    models.SemiSupervisedAAE(image_shape=(28, 28, 1), latent_dim=4,
                             encoder=networks.MLPEncoder(4, (8,), num_categories=16))
  model = MODELS["semisupervised"]()
  x = jnp.zeros((4, 28, 28, 1), jnp.uint8)
  with pytest.raises(ValueError, match="labeled_image"):
    model.train_step(None, {"image": x}, jax.random.key(1))


def test_r1_penalty_weight_is_the_hparam():
  """r1_weight > 0 adds the R1 term to the critic phase (a metric per critic) with its weight
  read from the state: at hparam 0 the step equals the step of a model without it."""
  on = small(models.SupervisedPriorAAE, num_labeled=100, labeled_batch_size=50, r1_weight=10.0)
  off = small(models.SupervisedPriorAAE, num_labeled=100, labeled_batch_size=50)
  assert "r1_weight" in on.hparams() and "r1_weight" not in off.hparams()
  x = (255 * jax.random.uniform(jax.random.key(0), (8, 28, 28, 1))).astype(jnp.uint8)
  batch = {"image": x, "label": jnp.arange(8) % 10, "labeled_image": x,
           "labeled_label": jnp.arange(8) % 10}
  rng = jax.random.key(3)
  base, m_off = jax.jit(off.train_step)(off.init(jax.random.key(1)), batch, rng)
  step = jax.jit(on.train_step)
  zero, m0 = step(on.init(jax.random.key(1), {"r1_weight": 0.0}), batch, rng)
  ten, m10 = step(on.init(jax.random.key(1)), batch, rng)
  assert "critic_r1" in m10 and "critic_r1" not in m_off and float(m10["critic_r1"]) > 0
  np.testing.assert_allclose(m0["critic_loss"], m_off["critic_loss"], rtol=1e-6)
  chex.assert_trees_all_close(zero.params, base.params, rtol=1e-5, atol=1e-7)
  assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(ten.params["critic"]),
                                                    jax.tree.leaves(base.params["critic"])))
