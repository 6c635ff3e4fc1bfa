"""DANN (aaejax.models.dann): networks, the reversal layer, the schedules, the evaluators,
a short real-data run, bad batches, and one tiny end-to-end run with an exact resume."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _configs import small_config
from _faults import sigterm_after_step

from aaejax import core, evaluation, models
from aaejax.evaluation import plots
from aaejax.run import builder, checkpoints, guards, train
from aaejax.models import dann

BATCH = 50


def tiny(network="mlp", **kw):
  fx = (dann.FeatureExtractor("conv", channels=(4, 8)) if network == "conv"
        else dann.FeatureExtractor("mlp", hidden=(64,)))
  return dann.DANN(image_shape=(28, 28, 1), features=fx, label_hidden=(32,),
                   domain_hidden=(32,), target_batch_size=BATCH, **kw)


@pytest.fixture(scope="module")
def model():
  return tiny()


@pytest.fixture(scope="module")
def step(model):
  """The tiny model's train step, compiled once (hparams are arrays: one program for all)."""
  return builder.jit_step(model.train_step)


def fake_batch(n=4, rng=0):
  r = np.random.default_rng(rng)
  return {"image": r.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),
          "label": r.integers(0, 10, n).astype(np.int32),
          "target_image": r.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)}


# ---- networks -------------------------------------------------------------------------------


@pytest.mark.parametrize("network,dim", [("conv", 4 * 4 * 8), ("mlp", 64)])
def test_network_shapes(network, dim):
  m = tiny(network)
  state = jax.jit(m.init)(jax.random.key(0))
  assert m.feature_dim == dim
  nets = m.networks()
  assert nets["features"][1] == ((2, 28, 28, 3),)
  x = jnp.zeros((3, 28, 28, 3))
  feats, _ = m.apply("features", state.params, {}, x, train=False)
  assert feats.shape == (3, dim)
  assert m.apply("classifier", state.params, {}, feats, train=False)[0].shape == (3, 10)
  assert m.apply("domain", state.params, {}, feats, train=False)[0].shape == (3, 1)
  # Grey source images are tiled; colour target images go in as they are.
  grey = jnp.full((2, 28, 28, 1), 100, jnp.uint8)
  assert m.classify(state, grey).shape == (2, 10)
  np.testing.assert_allclose(m.extract(state, grey),
                             m.extract(state, jnp.tile(grey, (1, 1, 1, 3))), rtol=1e-6)
  with pytest.raises(ValueError, match="images has shape"):
    m.classify(state, jnp.zeros((2, 28, 28, 2), jnp.uint8))


def test_paper_extractor_size():
  """The paper's conv 32-5x5, pool, conv 48-5x5, pool (VALID): 4 x 4 x 48 features; G_y
  100-100-10, G_d 100-1 (shapes only, nothing initialised)."""
  m = dann.DANN(image_shape=(28, 28, 1))
  assert m.feature_dim == 768
  assert (m.label_hidden, m.domain_hidden) == ((100, 100), (100,))


# ---- the reversal layer and the schedules ----------------------------------------------------


def test_grad_reverse_is_minus_lambda_times_identity():
  x = jnp.arange(6.0).reshape(2, 3)
  w = jnp.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.0]])
  f = lambda x, lam: jnp.sum(w * jnp.sin(dann.grad_reverse(x, lam)))
  identity = jax.grad(lambda x: jnp.sum(w * jnp.sin(x)))(x)
  grad = jax.jit(jax.grad(f))  # λ an argument: one program for every value
  for lam in (0.0, 0.3, 1.0, 2.5):
    np.testing.assert_allclose(grad(x, jnp.float32(lam)), -lam * identity, rtol=1e-6)
  np.testing.assert_array_equal(dann.grad_reverse(x, jnp.float32(0.7)), x)  # identity forward
  assert float(jax.grad(f, argnums=1)(x, jnp.float32(0.5))) == 0.0


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_schedules(model, p):
  lam = 2.0 / (1.0 + np.exp(-10.0 * p)) - 1.0
  mult = 1.0 / (1.0 + 10.0 * p) ** 0.75
  np.testing.assert_allclose(dann.grl_schedule(p), lam, rtol=1e-6)
  np.testing.assert_allclose(dann.lr_annealing(p), mult, rtol=1e-6)
  hp = model.hparams(num_steps=1000, domain_weight=0.5, lr_dann=0.01)
  np.testing.assert_allclose(model.grl_lambda(jnp.float32(p), hp), 0.5 * lam, rtol=1e-6)
  # Through the core: the phase's step size at step p * num_steps.
  state = model.init(jax.random.key(0), dict(num_steps=1000, lr_dann=0.01))
  state = state.replace(step=jnp.int32(round(p * 1000)))
  np.testing.assert_allclose(core.learning_rate(model, state, "dann"), 0.01 * mult, rtol=1e-5)


def test_domain_weight_zero_is_source_only(model):
  """λ = 0: the domain loss sends no gradient into G_f, but still trains G_d."""
  for p in (0.0, 0.5, 1.0):
    assert float(model.grl_lambda(jnp.float32(p), model.hparams(domain_weight=0.0))) == 0.0
  batch = fake_batch(8)

  def domain_grads(domain_weight):
    state = model.init(jax.random.key(0), dict(domain_weight=domain_weight, num_steps=10))
    state = state.replace(step=jnp.int32(5))
    ins = core.StepInputs(state, batch, jax.random.key(1),
                          model.prepare(state, batch, jax.random.key(1)))
    g = jax.jit(jax.grad(lambda p: model.loss(ins, p)[1][0]["domain_loss"]))(state.params)
    norm = lambda t: float(sum(jnp.sum(x ** 2) for x in jax.tree.leaves(t)))
    return norm(g["features"]), norm(g["domain"])

  features0, critic0 = domain_grads(0.0)
  features1, critic1 = domain_grads(1.0)
  assert features0 == 0.0 and critic0 > 0.0
  assert features1 > 0.0 and critic1 == pytest.approx(critic0)


# ---- batches --------------------------------------------------------------------------------


def test_check_batch_rejects_a_wrong_target(model, step):
  bad = {**fake_batch(), "target_image": np.zeros((4, 28, 28, 1), np.uint8)}
  with pytest.raises(ValueError, match=r"target_image.*\(n, 28, 28, 3\)"):
    core.check_batch(bad, model.image_shape, model.label_fields(),
                     image_shapes={"target_image": model.target_shape})
  with pytest.raises(ValueError, match="target_image"):
    model.check_batch(bad)
  state = model.init(jax.random.key(0))
  with pytest.raises(ValueError, match="target_image"):
    step(state, bad, jax.random.key(1))
  no_target = {k: v for k, v in fake_batch().items() if k != "target_image"}
  with pytest.raises(ValueError, match="target_image"):
    model.train_step(state, no_target, jax.random.key(1))
  with pytest.raises(ValueError, match="label"):
    model.check_batch({**fake_batch(), "label": np.array([0, 1, 2, 10])})


# ---- evaluators -----------------------------------------------------------------------------


def test_metric_helpers():
  logits = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 0.0, 0.0]])
  assert dann.accuracy_percent(logits, [0, 1, 1, 0]) == 75.0
  assert dann.domain_accuracy([-1.0, -2.0], [3.0, 1.0]) == 1.0   # perfect critic
  assert dann.domain_accuracy([1.0, 2.0], [-3.0, -1.0]) == 0.0   # perfectly wrong
  assert dann.domain_accuracy([1.0, 1.0], [1.0, 1.0]) == 0.5     # "target" for all
  assert dann.domain_accuracy([-1.0, 1.0, 1.0, 1.0], [1.0]) == pytest.approx(0.625)


def controlled_state(model, cls=3, domain_bias=5.0):
  """A state whose G_y predicts class ``cls`` and G_d says "target" (``domain_bias`` > 0)
  for every image."""
  state = model.init(jax.random.key(0))
  params = jax.tree.map(lambda x: x, state.params)
  out = params["classifier"]["out"]
  params["classifier"]["out"] = {"kernel": jnp.zeros_like(out["kernel"]),
                                 "bias": 10.0 * jax.nn.one_hot(cls, 10)}
  params["domain"]["out"] = {"kernel": jnp.zeros_like(params["domain"]["out"]["kernel"]),
                             "bias": jnp.full((1,), domain_bias)}
  return state.replace(params=params)


def test_evaluators_on_a_controlled_state(model):
  r = np.random.default_rng(0)
  n = 2 * evaluation.EVAL_BATCH + 7  # two full chunks and a remainder
  test = {"image": jnp.asarray(r.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)),
          "label": jnp.asarray(np.arange(n) % 10, jnp.int32)}
  target = {"image": jnp.asarray(r.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)),
            "label": jnp.asarray(np.where(np.arange(n) < 30, 3, 4), jnp.int32)}
  ev = evaluation.Evaluation(model, {}, test, {"target_test": target})
  assert ev.names == ["classification", "target_accuracy", "source_accuracy",
                      "domain_critic_accuracy"]
  out = ev(controlled_state(model), {}, jax.random.key(0))
  assert out["eval/target_accuracy"] == pytest.approx(100 * 30 / n)
  assert out["eval/source_accuracy"] == pytest.approx(100 * np.mean(np.arange(n) % 10 == 3))
  assert out["eval/source_accuracy"] == pytest.approx(100 - out["eval/error_rate"], abs=1e-4)
  assert out["eval/domain_critic_accuracy"] == 0.5  # all "target": right on half
  flipped = ev(controlled_state(model, domain_bias=-5.0), {}, jax.random.key(0))
  assert flipped["eval/domain_critic_accuracy"] == 0.5
  # A model's own evaluators can be skipped by name.
  assert "target_accuracy" not in evaluation.Evaluation(
      model, {"skip_evaluators": ("target_accuracy",)}, test, {"target_test": target}).names


def test_features_pca_plot(tmp_path):
  r = np.random.default_rng(0)
  path = plots.features_pca_plot(str(tmp_path / "f.png"), r.normal(size=(50, 8)),
                                r.normal(size=(40, 8)) + 3, np.arange(50) % 10,
                                np.arange(40) % 10, title="t")
  assert os.path.getsize(path) > 1000
  z = plots.pca_2d(np.c_[np.arange(10.0), np.zeros(10), np.ones(10)])
  np.testing.assert_allclose(np.abs(z[:, 0]), np.abs(np.arange(10.0) - 4.5), atol=1e-9)


# ---- training ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_data(mnist_small):
  from aaejax.data import mnistm
  target = mnistm.build(mnist_small["image"], mnist_small["label"], seed=0)
  return mnist_small, target


def _train_on_real_data(model, step, real_data, domain_weight, steps=50):
  source, target = real_data
  state = model.init(jax.random.key(0), dict(num_steps=steps, domain_weight=domain_weight,
                                             lr_dann=3e-3))
  history = []
  for t in range(steps):
    i = (t * BATCH) % (len(source["label"]) - BATCH)
    j = (t * 37) % (len(target["image"]) - BATCH)
    batch = {"image": source["image"][i:i + BATCH], "label": source["label"][i:i + BATCH],
             "target_image": target["image"][j:j + BATCH]}
    state, m = step(state, batch, jax.random.key(t))
    history.append(jax.device_get(m))
  assert all(np.isfinite(h["loss"]) for h in history)
  assert history[-1]["grl_lambda"] == pytest.approx(
      domain_weight * float(dann.grl_schedule((steps - 1) / steps)), rel=1e-5)
  mean = lambda rows: {k: float(np.mean([h[k] for h in rows])) for k in history[0]}
  return mean(history[:10]), mean(history[-10:])


def test_losses_fall_and_reversal_confuses_the_critic(model, step, real_data):
  """Both runs learn the labels; source-only features let the critic tell the domains apart
  better than features trained against it (same seed, same batches)."""
  runs = {w: _train_on_real_data(model, step, real_data, w) for w in (0.0, 1.0)}
  print(runs)
  for first, last in runs.values():
    assert last["class_loss"] < 0.6 * first["class_loss"]
    assert last["class_acc"] > first["class_acc"] + 0.2
  (first0, last0), (_, last1) = runs[0.0], runs[1.0]
  assert last0["domain_loss"] < 0.9 * first0["domain_loss"]  # nothing fights the critic
  assert last1["domain_loss"] > last0["domain_loss"] + 0.05
  assert last1["domain_acc"] < last0["domain_acc"]


def dann_config(**fields):
  return small_config("dann", **{**dict(network="mlp", feature_hidden=(32,), label_hidden=(16,),
                                        domain_hidden=(16,), batch_size=20, num_steps=6,
                                        log_every=2, eval_every=6, checkpoint_every=3),
                                 **fields})


def test_run_and_exact_resume(mnist_dir, tmp_path, monkeypatch):
  """The entry point's loop: streams from mnist_m_style, the eval splits, the evaluators,
  the figure; a run stopped by SIGTERM after step 3 and resumed ends bit-identical (its
  progress schedules see the same p = step / num_steps on both sides of the stop)."""
  c = dann_config(plots=True)
  result = train.train_and_evaluate(c, str(tmp_path / "straight"))
  for key in ("eval/target_accuracy", "eval/source_accuracy", "eval/error_rate"):
    assert 0.0 <= result[key] <= 100.0
  assert 0.0 <= result["eval/domain_critic_accuracy"] <= 1.0
  assert (tmp_path / "straight" / "plots" / "features_pca.png").stat().st_size > 1000
  resumed = tmp_path / "resumed"
  undo = sigterm_after_step(monkeypatch, 3)
  with pytest.raises(guards.Preempted, match="at step 3"):
    train.train_and_evaluate(dann_config(), str(resumed))
  undo()
  train.train_and_evaluate(dann_config(), str(resumed))

  def final(workdir):
    m = models.create(c, (28, 28, 1))
    template = m.init(jax.random.key(0), models.hparams_from_config(m, c))
    return checkpoints.Checkpointer(os.path.join(workdir, "checkpoints")).restore(template)

  a, b = final(str(tmp_path / "straight")), final(str(resumed))
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_array_equal(x, y)
  rows = lambda d: [json.loads(r) for r in open(os.path.join(d, "metrics.jsonl"))]
  last = lambda d: [r for r in rows(d) if "eval/target_accuracy" in r][-1]
  assert last(tmp_path / "straight") == last(resumed)


def test_config_builds_the_paper_sizes():
  c = small_config("dann")
  m = models.create(c, (28, 28, 1))
  assert isinstance(m, dann.DANN) and m.feature_dim == 768
  assert m.streams()["target"].batch_size == c.batch_size
  assert m.hparam_fields()["lr_dann"] == "learning_rate"
  hp = models.hparams_from_config(m, small_config("dann", domain_weight=0.0))
  assert hp["domain_weight"] == 0.0 and hp["num_steps"] == c.num_steps
  with pytest.raises(models.ConfigError, match="network"):
    models.create(small_config("dann", network="resnet"), (28, 28, 1))
