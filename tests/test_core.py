"""The core: phases over parameter paths (a head on a shared trunk), hparams, streams, configs."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aaejax import core, models
from aaejax.run import builder, sweeps


class TrunkAndHeads(nn.Module):
  """A critic in InfoGAN's shape: one trunk, a real/fake head D and a code head Q on it."""

  @nn.compact
  def __call__(self, x, train=True):
    h = nn.relu(nn.Dense(8, name="trunk")(x))
    return nn.Dense(1, name="d_head")(h)[:, 0], nn.Dense(3, name="q_head")(h)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class SharedTrunk(core.Model):
  """Phase ``critic`` trains the trunk and D; phase ``info`` only Q, on the trunk's output."""

  def networks(self):
    return {"critic": (TrunkAndHeads(), ((2, 4),))}

  def phases(self):
    return (core.Phase("critic", ("critic/trunk", "critic/d_head"), self.critic_loss,
                       lr_field="learning_rate"),
            core.Phase("info", ("critic/q_head",), self.info_loss))

  def default_hparams(self):
    return {"lr_critic": 0.1, "lr_info": 0.1}

  def critic_loss(self, inputs, params, shared):
    d, _ = self.apply("critic", params, {}, inputs.batch["image"], train=True)[0]
    return jnp.mean(d ** 2), ({"critic_loss": jnp.mean(d ** 2)}, inputs.state.model_state)

  def info_loss(self, inputs, params, shared):
    _, q = self.apply("critic", params, {}, inputs.batch["image"], train=True)[0]
    return jnp.mean((q - 1.0) ** 2), ({"info_loss": jnp.mean((q - 1.0) ** 2)},
                                      inputs.state.model_state)


def changed(a, b):
  return jax.tree.map(lambda x, y: bool(jnp.any(x != y)), a, b)


def test_a_phase_may_train_part_of_a_network():
  model = SharedTrunk()
  state = model.init(jax.random.key(0))
  # Each phase's optimizer state covers just its parameters.
  assert set(core.select(state.params, ("critic/q_head",))["critic"]) == {"q_head"}
  mu = state.opt_state["info"].mu
  assert set(mu["critic"]) == {"q_head"}
  x = {"image": jax.random.uniform(jax.random.key(1), (5, 4))}
  info_only = core.update(model, state, "info", lambda p: (
      jnp.sum(model.apply("critic", p, {}, x["image"], train=True)[0][1]), ({}, {})))[0]
  diff = changed(state.params, info_only.params)["critic"]
  assert all(jax.tree.leaves(diff["q_head"]))
  assert not any(jax.tree.leaves(diff["trunk"])) and not any(jax.tree.leaves(diff["d_head"]))
  # A full step: both phases train their parts, jitted and vmapped like any model.
  new, m = jax.jit(model.train_step)(state, x, jax.random.key(2))
  diff = changed(state.params, new.params)["critic"]
  assert all(jax.tree.leaves(diff)) and sorted(m) == ["critic_loss", "info_loss"]
  stacked = sweeps.stack_states([model.init(jax.random.key(0), {"lr_info": lr})
                                 for lr in (0.0, 0.1)])
  out, _ = jax.jit(sweeps.vmap_step(model.train_step))(stacked, x, jax.random.split(
      jax.random.key(2), 2))
  q = out.params["critic"]["q_head"]["kernel"]
  np.testing.assert_array_equal(q[0], state.params["critic"]["q_head"]["kernel"])  # lr 0
  assert bool(jnp.any(q[1] != q[0]))


def test_phase_paths_are_checked():
  with pytest.raises(ValueError, match="not a network"):
    core.check_paths({"a": ("generator",)}, ["critic"])
  with pytest.raises(ValueError, match="overlapping"):
    core.check_paths({"a": ("critic", "critic/q_head")}, ["critic"])
  with pytest.raises(ValueError, match="trains nothing"):
    core.check_paths({"a": ()}, ["critic"])
  with pytest.raises(KeyError, match="critic/nope"):
    core.select({"critic": {"q_head": {}}}, ("critic/nope",))
  model = SharedTrunk()
  state = model.init(jax.random.key(0))
  with pytest.raises(ValueError, match="another structure"):
    core.apply_gradients(model, state, "info", {"critic": state.params["critic"]})


def test_hparams_are_declared_by_the_model():
  aae = models.AAE(image_shape=(28, 28, 1), latent_dim=2, critic_hidden=(8,))
  assert aae.hparam_fields()["lr_recon"] == "learning_rate"
  assert aae.hparam_fields()["lr_critic"] == "critic_learning_rate"
  assert aae.hparam_fields()["gen_weight"] == "gen_weight"
  assert sweeps.sweepable_fields(aae)["critic_noise"] == "critic_noise"
  gan = models.GAN(image_shape=(28, 28, 1), latent_dim=4)
  assert gan.hparam_fields() == {"lr_gen": "learning_rate", "lr_critic": "critic_learning_rate",
                                 "gen_weight": "gen_weight", "prior_scale": "prior_scale",
                                 "critic_noise": "critic_noise"}
  with pytest.raises(ValueError, match="unknown hparams"):
    gan.hparams(beta=1.0)
  # One name for the rates: a config field names the hparam it sets.
  hp = aae.hparams(learning_rate=3e-4, critic_learning_rate=1e-5)
  assert float(hp["lr_recon"]) == np.float32(3e-4) and float(hp["lr_critic"]) == np.float32(1e-5)
  wae = models.WAE(image_shape=(28, 28, 1), latent_dim=2, penalty="mmd_imq")
  assert float(wae.hparams(learning_rate=5e-4)["lr_ae"]) == np.float32(5e-4)
  with pytest.raises(ValueError, match="given twice"):
    aae.hparams(learning_rate=1e-3, lr_recon=1e-3)
  with pytest.raises(ValueError, match=r"learning_rate \(= lr_recon\)"):
    aae.hparams(lr=1e-3)


def test_streams_are_deterministic_per_step():
  model = models.SemiSupervisedAAE(image_shape=(28, 28, 1), latent_dim=2, num_labeled=20,
                                   labeled_batch_size=4, critic_hidden=(8,))
  host = {"image": np.arange(200 * 784, dtype=np.uint32).reshape(200, 28, 28, 1).astype(np.uint8),
          "label": np.arange(200, dtype=np.int32) % 10}
  _, streams = builder.run_data(model, host, seed=0)
  assert np.bincount(streams["labeled"]["label"]).tolist() == [2] * 10
  streams = jax.tree.map(jnp.asarray, streams)
  draw = lambda step: builder.add_streams(model, {}, streams, jax.random.fold_in(
      jax.random.key(0), step))
  a, b, c = draw(3), draw(3), draw(4)
  assert a["labeled_image"].shape == (4, 28, 28, 1) and a["labeled_label"].shape == (4,)
  np.testing.assert_array_equal(a["labeled_label"], b["labeled_label"])
  assert not np.array_equal(np.asarray(a["labeled_image"]), np.asarray(c["labeled_image"]))
  with pytest.raises(ValueError, match="needs the data streams"):
    builder.add_streams(model, {}, {}, jax.random.key(0))


def test_every_registered_model_builds_from_its_config():
  from configs import default
  for name, cls in models.MODELS.items():
    c = default.get_config()
    c.model = name
    c.hidden, c.latent_dim = (8,), 2
    c.critic_hidden = (8,)
    c.penalty, c.num_labeled, c.num_clusters = "mmd_imq", 100, 10
    c.prior = "gaussian_mixture" if name == "aae_supervised_prior" else "gaussian"
    c.posterior = "gaussian" if name in ("vae", "vaegan") else "deterministic"
    c.num_labeled = 0 if name == "aae_clustering" else 100
    model = models.create(c, (28, 28, 1))
    assert type(model) is cls
    assert set(models.hparams_from_config(model, c)) <= set(model.default_hparams())
    assert model.capabilities() <= set(core.CAPABILITIES)


class Dense(nn.Module):
  @nn.compact
  def __call__(self, x, train=True):
    return nn.Dense(1, use_bias=False)(x)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Linear(core.Model):
  """One weight w, loss mean(w·x); phase options set by the test."""

  phase_options: tuple = ()

  def networks(self):
    return {"net": (Dense(), ((2, 3),))}

  def phases(self):
    return (core.Phase("fit", ("net",), self.loss, lr_field="learning_rate",
                       **dict(self.phase_options)),)

  def default_hparams(self):
    return {"lr_fit": 0.1, "num_steps": 10.0}

  def loss(self, inputs, params, shared):
    out, _ = self.apply("net", params, {}, inputs.batch["image"], train=True)
    return 1e3 * jnp.mean(out), ({"progress": inputs.progress}, inputs.state.model_state)


def test_phase_optimizer_settings_and_progress_schedules():
  x = {"image": jnp.ones((2, 3))}
  step = lambda m, s: jax.jit(m.train_step)(s, x, jax.random.key(0))
  # A progress schedule multiplies the rate by its value at p = step / num_steps.
  sched = Linear(phase_options=(("schedule", lambda p, hp: 1.0 / (1.0 + 10.0 * p) ** 0.75),))
  state = sched.init(jax.random.key(0)).replace(step=jnp.asarray(5, jnp.int32))
  assert float(core.progress(state)) == 0.5
  np.testing.assert_allclose(core.learning_rate(sched, state, "fit"), 0.1 / 6 ** 0.75, rtol=1e-6)
  _, m = step(sched, state)
  assert float(m["progress"]) == 0.5
  # Extending a run (num_steps raised, as on resume with a larger config) stretches the clock.
  longer = state.replace(hparams={**state.hparams, "num_steps": jnp.asarray(20.0)})
  assert float(core.progress(longer)) == 0.25
  # Adam's first step moves each weight by lr whatever the gradient's size; clipping and b1
  # are per phase (b1 shows in the optimizer state's first moment).
  plain, clipped = Linear(), Linear(phase_options=(("clip_norm", 1.0), ("b1", 0.0)))
  assert clipped.hparam_fields()["clip_fit"] == "clip_fit"
  s0 = plain.init(jax.random.key(0))
  s1 = clipped.init(jax.random.key(0))
  a, b = step(plain, s0)[0], step(clipped, s1)[0]
  w0 = s0.params["net"]["Dense_0"]["kernel"]
  np.testing.assert_allclose(a.params["net"]["Dense_0"]["kernel"], w0 - 0.1, rtol=1e-5)
  np.testing.assert_allclose(b.params["net"]["Dense_0"]["kernel"], w0 - 0.1, rtol=1e-5)
  g = 1e3 / 2 * 2  # d(1e3 · mean over the 2 rows of w·1)/dw_i summed over rows: 1e3
  np.testing.assert_allclose(a.opt_state["fit"].mu["net"]["Dense_0"]["kernel"], 0.1 * g, rtol=1e-5)
  clipped_g = 1.0 / np.sqrt(3)  # the gradient (g, g, g) clipped to norm 1
  np.testing.assert_allclose(b.opt_state["fit"].mu["net"]["Dense_0"]["kernel"], clipped_g, rtol=1e-5)
  with pytest.raises(KeyError, match="num_steps"):
    core.progress(state.replace(hparams={"lr_fit": jnp.asarray(0.1)}))
  with pytest.raises(ValueError, match="clip_norm must be > 0"):
    core.Phase("p", ("net",), None, clip_norm=0.0)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class TwoDomains(Linear):
  """Draws a ``target`` stream from another data set; evaluates on its test split too."""

  def streams(self):
    return {"target": core.Stream(2, select=lambda a, seed: {"image": a["image"]},
                                  dataset="other", split="train", image_shape=(2, 2, 3))}

  def eval_splits(self):
    return {"test": (None, "test"), "target_test": ("other", "test")}

  def evaluators(self):
    from aaejax import evaluation
    count = lambda ctx: {"eval/target_count": int(ctx.split("target_test")["image"].shape[0])}
    return (evaluation.Evaluator("target_count", frozenset(), count),)


def test_streams_with_their_own_source_and_named_eval_splits():
  from aaejax import evaluation
  model = TwoDomains()
  own = {"image": np.zeros((4, 2, 2, 1), np.uint8), "label": np.zeros(4, np.int32)}
  other = {"image": np.full((6, 2, 2, 3), 7, np.uint8), "label": np.ones(6, np.int32)}
  _, streams = builder.run_data(model, own, 0, {("other", "train"): other})
  assert set(streams["target"]) == {"image"} and streams["target"]["image"].shape == (6, 2, 2, 3)
  with pytest.raises(ValueError, match="not loaded"):
    builder.run_data(model, own, 0)
  # Each stream's images are checked against its own shape.
  model.check_batch({"image": np.zeros((2, 3)), "target_image": np.zeros((2, 2, 2, 3))})
  with pytest.raises(ValueError, match=r"batch\['target_image'\] has shape"):
    model.check_batch({"image": np.zeros((2, 3)), "target_image": np.zeros((2, 2, 2, 1))})
  # The model's own evaluators read its other splits; they can be skipped by name.
  ev = evaluation.Evaluation(model, {}, {"image": jnp.zeros((4, 3))},
                             {"target_test": {"image": jnp.zeros((5, 3))}})
  assert ev.names == ["target_count"]
  assert ev(model.init(jax.random.key(0)), {}, jax.random.key(0)) == {"eval/target_count": 5}
  assert evaluation.select(model, {"skip_evaluators": ("target_count",)}) == []
  with pytest.raises(ValueError, match="not given"):
    evaluation.Evaluation(model, {}, {"image": jnp.zeros((4, 3))})
  with pytest.raises(ValueError, match="unknown evaluators"):
    evaluation.select(model, {"skip_evaluators": ("nope",)})


def test_an_own_train_step_must_advance_the_step():
  @dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
  class Forgetful(Linear):
    def train_step(self, state, batch, rng):
      new, metrics = super().train_step(state, batch, rng)
      return new.replace(step=state.step), metrics  # the step (and so the key) never moves

  @dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
  class Logged(Linear):
    def train_step(self, state, batch, rng):
      new, metrics = super().train_step(state, batch, rng)
      return new, {**metrics, "step": new.step}

  batch = {"image": jnp.ones((2, 3))}
  with pytest.raises(ValueError, match="returned state.step unchanged"):
    jax.jit(Forgetful().train_step)(Forgetful().init(jax.random.key(0)), batch, jax.random.key(1))
  model = Logged()
  state, metrics = jax.jit(model.train_step)(model.init(jax.random.key(0)), batch,
                                             jax.random.key(1))
  assert int(state.step) == 1 == int(metrics["step"])


def test_batches_are_the_training_loops_order():
  """data.batches: epoch e is epoch_permutation(key, e) in full batches, from any step on."""
  from aaejax import data
  n, bs, key = 10, 4, jax.random.key(3)
  arrays = {"image": np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1), "label": np.arange(n)}
  got = [b["label"].tolist() for b in data.batches(arrays, bs, key, num_steps=5)]
  want = []
  for s in range(5):
    perm = np.asarray(data.epoch_permutation(key, s // 2, n))
    want.append(perm[(s % 2) * bs:(s % 2 + 1) * bs].tolist())
  assert got == want
  resumed = [b["label"].tolist() for b in data.batches(arrays, bs, key, start_step=3,
                                                         num_steps=5)]
  assert resumed == want[3:]
  with pytest.raises(ValueError, match="batch_size=11"):
    next(data.batches(arrays, 11, key))


def test_a_phase_with_its_own_rate_schedule():
  """``phase_lr_schedules`` replaces the model's step schedule for the phases it names."""
  config = {"lr_boundaries": (3,), "lr_factors": (0.5,), "phase_lr_factors": {"fit": (0.25,)}}
  model = Linear(lr_schedule=core.lr_schedule(config),
                 phase_lr_schedules=core.phase_lr_schedules(config))
  state = model.init(jax.random.key(0))
  rates = [float(core.learning_rate(model, state.replace(step=jnp.asarray(s, jnp.int32)), "fit"))
           for s in (2, 3)]
  np.testing.assert_allclose(rates, [0.1, 0.025], rtol=1e-6)
  plain = Linear(lr_schedule=core.lr_schedule(config))
  np.testing.assert_allclose(
      float(core.learning_rate(plain, state.replace(step=jnp.asarray(3, jnp.int32)), "fit")),
      0.05, rtol=1e-6)
