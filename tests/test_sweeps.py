"""Vmapped sweeps: each member equals its solo run; grids; the Python API; the CLI.

Real MNIST, cut to 2,000 training and 1,000 test images (for both the sweep and
the solo runs) so that evaluation is cheap; 25 steps of batch 100 cross one
epoch boundary (20 steps per epoch), so per-member data orders are exercised.
"""

import doctest
import importlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _configs import SKIP_GENERATED, small_config
from aaejax import data, models
from aaejax.nets import networks
from aaejax.run import builder, sweeps, train

STEPS = 25
# Member i vs its solo run on CPU: XLA fuses the vmapped program differently (e.g. the
# gradient with the Adam update), moving a few parameters by an ulp per step; after 25
# steps losses and eval metrics agree to ~1e-6 relative.
RTOL = 1e-4


def tiny_config(name, **overrides):
  return small_config(name, **{**dict(hidden=(64,), critic_hidden=(32,), num_steps=STEPS,
                                      log_every=5, eval_every=STEPS, checkpoint_every=STEPS),
                               **overrides})


@pytest.fixture
def small_mnist(mnist_dir, monkeypatch):
  real = data.load_numpy

  def load(name, split, data_dir=None, **kwargs):
    n = 2000 if split == "train" else 1000
    return {k: v[:n] for k, v in real(name, split, data_dir, **kwargs).items()}

  monkeypatch.setattr(data, "load_numpy", load)


def rows(path):
  with open(os.path.join(path, "metrics.jsonl")) as f:
    return [json.loads(r) for r in f]


def assert_same_run(member_dir, solo_dir):
  a, b = rows(member_dir), rows(solo_dir)
  assert [r["step"] for r in a] == [r["step"] for r in b]
  for x, y in zip(a, b):
    assert set(x) == set(y)
    for k in x:
      if k not in ("step", "train/steps_per_sec"):
        # A kNN vote among near-equidistant codes may flip: allow 2 of the 1,000 test images.
        atol = 2e-3 if k == "eval/knn_accuracy" else 1e-6
        np.testing.assert_allclose(x[k], y[k], rtol=RTOL, atol=atol, err_msg=f"{k} at {x['step']}")


def test_wae_members_equal_solo_runs(small_mnist, tmp_path):
  """Seeds, λ and learning rates in one sweep; member 5 (all three off the defaults) rerun solo."""
  c = tiny_config("wae")
  grid = ["seed=0,1", "penalty_weight=1,10", "learning_rate=1e-3,3e-3"]
  out = tmp_path / "sweep"
  results = sweeps.run_sweep(c, grid, str(out))
  assert len(results) == 8 and all(r["step"] == STEPS for r in results)
  summary = (out / "summary.md").read_text().splitlines()
  assert "| member | seed | penalty_weight | learning_rate | eval/knn_accuracy" in summary[2]
  assert len([line for line in summary if line.startswith("| ")]) == 1 + 8
  assert [line for line in summary if line.startswith("| ")][-1].startswith("| 7 | 1 | 10 | 0.003 |")
  for i, (seed, lam, lr) in ((5, (1, 1.0, 3e-3)),):
    member_config = json.loads((out / f"member_{i}" / "config.json").read_text())
    assert (member_config["seed"], member_config["penalty_weight"],
            member_config["learning_rate"]) == (seed, lam, lr)
    solo = train.train_and_evaluate(
        tiny_config("wae", seed=seed, penalty_weight=lam, learning_rate=lr), str(tmp_path / f"s{i}"))
    assert_same_run(out / f"member_{i}", tmp_path / f"s{i}")
    for k, v in solo.items():
      np.testing.assert_allclose(results[i][k], v, rtol=RTOL)
  # Different members really differ (seeds and hparams are not ignored).
  assert len({round(r["eval/recon_loss"], 3) for r in results}) == 8
  # Finished: re-running resumes from the last checkpoint and reports the same results.
  assert sweeps.run_sweep(c, grid, str(out)) == results
  with pytest.raises(ValueError, match="different sweep"):
    sweeps.run_sweep(c, ["seed=0,2"], str(out))


def test_aae_sweep_from_the_command_line(small_mnist, tmp_path, monkeypatch):
  """One seed (one data order shared by the members), critic learning rate x prior scale."""
  import sys
  from absl import flags
  # Other experiment scripts imported by other tests (reproduce.py) define --workdir too.
  sys.modules.pop("sweep", None)
  for name in ("workdir", "config", "grid"):
    if name in flags.FLAGS:
      delattr(flags.FLAGS, name)
  sweep_main = importlib.import_module("sweep")
  out = tmp_path / "sweep"
  argv = ["sweep.py", "--config=experiments/configs/aae_unsupervised.py", f"--workdir={out}",
          "--grid=critic_learning_rate=1e-4,1e-3", "--grid=prior_scale=2"]
  argv += [f"--config.{k}={v}" for k, v in (("hidden", "(64,)"), ("critic_hidden", "(32,)"),
                                            ("num_steps", STEPS), ("log_every", 5),
                                            ("eval_every", STEPS), ("checkpoint_every", STEPS),
                                            ("disable_progress", True), ("plots", False),
                                            ("skip_evaluators", repr(SKIP_GENERATED)))]
  monkeypatch.setattr(sys, "argv", argv)  # config_flags reads --config.FIELD from sys.argv
  flags.FLAGS(argv)
  try:
    sweep_main.main([])
  finally:
    flags.FLAGS.unparse_flags()
  assert sorted(p.name for p in out.iterdir() if p.name.startswith("member_")) == [
      f"member_{i}" for i in range(2)]
  assert "| 1 | 0.001 | 2 |" in (out / "summary.md").read_text()
  train.train_and_evaluate(tiny_config("aae_unsupervised", critic_learning_rate=1e-3,
                                       prior_scale=2.0), str(tmp_path / "solo"))
  assert_same_run(out / "member_1", tmp_path / "solo")


def test_grids_and_bad_fields():
  wae = tiny_config("wae")
  model = models.create(wae, (28, 28, 1))
  fields = sweeps.sweepable_fields(model, wae)
  assert fields == {"seed": "seed", "recon_weight": "recon_weight", "prior_scale": "prior_scale",
                    "learning_rate": "lr_ae", "penalty_weight": "penalty_weight",
                    "kernel_scale": "kernel_scale"}
  grid = sweeps.parse_grid(["seed=3,4", "kernel_scale=0.5,2", "prior_scale=2"], wae, model)
  assert grid == {"seed": [3, 4], "kernel_scale": [0.5, 2.0], "prior_scale": [2.0]}
  assert type(grid["seed"][0]) is int and type(grid["kernel_scale"][1]) is float
  configs = sweeps.member_configs(wae, grid)
  assert [(c.seed, c.kernel_scale) for c in configs] == [(3, 0.5), (3, 2.0), (4, 0.5), (4, 2.0)]
  assert wae.seed == 0 and wae.kernel_scale == 1.0  # the base config is untouched
  states = sweeps.init_members(model, configs)
  assert sweeps.num_members(states) == 4
  np.testing.assert_array_equal(states.hparams["kernel_scale"], [0.5, 2, 0.5, 2])
  np.testing.assert_array_equal(states.hparams["prior_scale"], [2, 2, 2, 2])
  solo = model.init(sweeps.member_keys(4)[0], models.hparams_from_config(model, configs[3]))
  assert jax.tree.all(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)),
                                   sweeps.member(states, 3).params, solo.params))

  aae = tiny_config("aae_unsupervised")
  aae_model = models.create(aae, (28, 28, 1))
  assert set(sweeps.sweepable_fields(aae_model, aae)) == {
      "seed", "learning_rate", "critic_learning_rate", "gen_learning_rate", "gen_weight",
      "critic_noise", "recon_weight", "prior_scale", "r1_weight"}
  no_r1 = tiny_config("aae_unsupervised", r1_weight=0.0)  # no R1 term in the step to weigh
  with pytest.raises(ValueError, match="cannot sweep 'r1_weight'"):
    sweeps.parse_grid(["r1_weight=0,10"], no_r1, models.create(no_r1, (28, 28, 1)))
  for bad in ("latent_dim=2,4", "prior=gaussian,swiss_roll", "penalty=mmd_rbf,gan",
              "batch_size=50,100", "hidden=(32,)", "num_steps=5,10"):
    with pytest.raises(ValueError, match=r"cannot sweep .*shapes the model.*Sweepable fields of "
                                         r"this WAE config: seed, .*penalty_weight"):
      sweeps.parse_grid([bad], wae, model)
  with pytest.raises(ValueError, match="'kernel_scale'.*not a config field.*Sweepable fields of "
                                       "this AAE config: seed, .*learning_rate \\(-> lr_recon\\)"):
    sweeps.parse_grid(["kernel_scale=1,2"], aae, aae_model)
  for bad, msg in (("seed=1.5", "not an int"), ("seed=a", "not an int"),
                   ("penalty_weight=ten", "not a float"), ("penalty_weight=", "empty"),
                   ("penalty_weight=1,,2", "empty"), ("penalty_weight", "FIELD=V1,V2"),
                   ("=1,2", "FIELD=V1,V2")):
    with pytest.raises(ValueError, match=msg):
      sweeps.parse_grid([bad], wae, model)
  with pytest.raises(ValueError, match="given twice"):
    sweeps.parse_grid(["seed=1", "seed=2"], wae, model)
  with pytest.raises(ValueError, match="empty grid"):
    sweeps.parse_grid([], wae, model)
  with pytest.raises(ValueError, match="in_axes"):
    sweeps.vmap_step(model.train_step, (None, None, 0))


def test_bad_grid_fails_before_training(small_mnist, tmp_path):
  with pytest.raises(ValueError, match="cannot sweep 'latent_dim'.*Sweepable fields"):
    sweeps.run_sweep(tiny_config("wae"), ["latent_dim=2,8"], str(tmp_path))
  assert not os.listdir(tmp_path)


def test_vmap_step_docstring_example():
  result = doctest.testmod(sweeps, verbose=False)
  assert result.attempted >= 5 and result.failed == 0


def test_vmapped_compiler_options_keep_the_result():
  """The sweep's XLA options change how the program is compiled, not what it computes."""
  option = builder._YNN_FUSION_OPTION
  assert option not in builder.compiler_options()  # a single model keeps XLA's default
  assert not builder._accepts_option("xla_cpu_no_such_option", True)
  if jax.default_backend() == "cpu":
    opts = builder.compiler_options(vmapped=True)
    assert opts["xla_cpu_copy_insertion_use_region_analysis"] is True
    assert (opts.get(option) == "") == builder._accepts_option(option, "")
  model = models.WAE(image_shape=(28, 28, 1), latent_dim=8, penalty="mmd_imq",
                     encoder=networks.MLPEncoder(8, (64,)),
                     decoder=networks.MLPDecoder((28, 28, 1), (64,)))
  states = sweeps.stack_states([model.init(jax.random.key(s), {"penalty_weight": lam})
                                for s, lam in [(0, 1.0), (1, 10.0), (2, 3.0)]])
  images = jax.random.randint(jax.random.key(3), (3, 32, 28, 28, 1), 0, 256).astype("uint8")
  batch = {"image": images, "label": np.zeros((3, 32), np.int32)}
  keys = jax.random.split(jax.random.key(4), 3)
  step = sweeps.vmap_step(model.train_step, (0, 0, 0))
  plain = jax.jit(step)
  tuned = builder.jit_step(step, vmapped=True)
  ref, got = states, jax.tree.map(jnp.copy, states)  # jit_step donates its input
  for _ in range(3):
    ref, ref_metrics = plain(ref, batch, keys)
    got, metrics = tuned(got, batch, keys)
  for k in ref_metrics:
    np.testing.assert_allclose(metrics[k], ref_metrics[k], rtol=1e-5, err_msg=k)
  # Adam moves a parameter whose gradient is ~0 by up to lr = 1e-3 per step, so rounding
  # differences in such gradients show up in absolute terms (seen: 7e-5 in 1 of 150k weights).
  for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(ref.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-4)


def test_summary_says_equal_sample_counts_once(tmp_path):
  results = [{"step": 5, "eval/fd_digits": 30.0, "eval/fd_samples": 500, "eval/rarest": 0.0},
             {"step": 5, "eval/fd_digits": 31.0, "eval/fd_samples": 500, "eval/rarest": 0.0}]
  path = tmp_path / "summary.md"
  sweeps._summary(path, tiny_config("wae"), {"seed": [0, 1]}, [{"seed": 0}, {"seed": 1}],
                  results)
  lines = path.read_text().splitlines()
  assert lines[2] == "| member | seed | eval/fd_digits | eval/rarest |"
  assert lines[-1] == "The same in every member: eval/fd_samples = 500."
