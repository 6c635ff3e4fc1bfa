"""Data parallelism over a device mesh: 1, 2 and 8 devices train alike; checkpoints move.

The 8-device runs happen in one subprocess started with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (a JAX process's device
count is fixed at start-up); it trains tiny models on a small MNIST through
``train.train_and_evaluate`` and this process compares the results.
"""


import jax
import numpy as np
import pytest

from aaejax.run import parallel

import _parallel_helpers as helpers
from _parallel_helpers import jax_cache_dir  # noqa: F401 (fixture)

RTOL = 1e-5   # relative difference of any logged loss between device counts


def test_batch_size_must_divide_device_count():
  mesh = parallel.make_mesh(1)
  parallel.check_batch_size(7, mesh)
  fake = type("FakeMesh", (), {"devices": np.empty(8)})()
  with pytest.raises(ValueError, match=r"batch_size=100 is not divisible by the 8 devices"):
    parallel.check_batch_size(100, fake)
  with pytest.raises(ValueError, match="num_devices=99"):
    parallel.make_mesh(99)


def test_single_process_helpers():
  mesh = parallel.make_mesh(1)
  np.testing.assert_array_equal(parallel.process_rows(mesh, 6), np.arange(6))
  state = {"w": np.arange(3.0, dtype=np.float32), "rng": jax.random.key(3)}
  rep = parallel.replicate(state, mesh)
  assert rep["w"].sharding.is_fully_replicated
  back = parallel.local_copy(rep)
  np.testing.assert_array_equal(back["w"], state["w"])
  np.testing.assert_array_equal(jax.random.key_data(back["rng"]), jax.random.key_data(state["rng"]))
  batch = parallel.global_batch({"x": np.ones((6, 2))}, mesh, 6)
  assert batch["x"].shape == (6, 2)


@pytest.fixture(scope="module")
def eight_device_runs(tmp_path_factory, jax_cache_dir):
  """Trains in one 8-device subprocess; returns (workdirs, tiny configs)."""
  root = tmp_path_factory.mktemp("parallel")
  data_dir = helpers.write_small_mnist(str(root / "data"))
  runs, configs, workdirs = [], {}, {}

  def add(key, name, workdir=None, **overrides):
    workdir = workdir or str(root / key)
    overrides = {"data_dir": data_dir, **overrides}
    runs.append({"config": name, "workdir": workdir, "overrides": overrides})
    configs[key], workdirs[key] = helpers.tiny_config(name, **overrides), workdir

  for n in (1, 2, 8):
    add(f"aae_{n}", "aae_unsupervised", num_devices=n)
  # Saved on 8 devices after 3 steps, resumed on 2 for the last 3.
  add("moved_first", "aae_unsupervised", str(root / "moved"), num_devices=8, num_steps=3)
  add("moved", "aae_unsupervised", str(root / "moved"), num_devices=2)
  # At the default logging interval: dispatch ran dozens of 8-device steps ahead and XLA:CPU's
  # collective rendezvous timed out (the process aborted near step 35); now at most
  # train.MAX_STEPS_IN_FLIGHT steps run ahead.
  add("wae_8_default_log", "wae", num_devices=8, penalty="mmd_imq", num_steps=40,
      log_every=50, eval_every=40, checkpoint_every=40, hidden=(1000, 1000), batch_size=128)
  # num_devices left at 0 means all 8 devices, which 100 examples do not divide.
  runs.append({"config": "aae_unsupervised", "workdir": str(root / "bad"),
               "overrides": {"data_dir": data_dir, "batch_size": 100},
               "expect_error": "batch_size=100 is not divisible by the 8 devices"})
  log = str(root / "worker.log")
  proc = helpers.start_worker({"runs": runs, "out": str(root / "out.json")}, 8, log,
                              jax_cache_dir)
  helpers.wait_all([proc], [log], timeout=300)
  return workdirs, configs


def test_device_counts_give_same_losses(eight_device_runs):
  # The AAE's three phases: reconstruction, critic and generator losses, critic accuracy.
  # (The WAE-MMD runs on 2 x 2 devices in test_multiprocess.py.)
  workdirs, _ = eight_device_runs
  one = helpers.losses(workdirs["aae_1"])
  assert {s for s, _ in one} == set(range(1, 7))
  assert (6, "eval/recon_loss") in one and (3, "train/critic_loss") in one
  for n in (2, 8):
    diff = helpers.max_rel_diff(one, helpers.losses(workdirs[f"aae_{n}"]))
    print(f"aae: 1 vs {n} devices, max relative loss difference {diff:.2e}")
    assert diff < RTOL


def test_eight_devices_at_the_default_log_interval(eight_device_runs):
  workdirs, _ = eight_device_runs
  assert [r["step"] for r in helpers.rows(workdirs["wae_8_default_log"])] == [40, 40]


def test_checkpoints_move_across_device_counts(eight_device_runs):
  workdirs, configs = eight_device_runs
  # 8 devices for steps 1-3, checkpoint, 2 devices for steps 4-6 == 1 device throughout.
  one, moved = helpers.losses(workdirs["aae_1"]), helpers.losses(workdirs["moved"])
  assert helpers.max_rel_diff(one, moved) < RTOL
  # A state saved from 8 devices restores onto this process's single device.
  a = helpers.final_state(configs["aae_1"], workdirs["aae_1"])
  b = helpers.final_state(configs["aae_8"], workdirs["aae_8"])
  assert int(a.step) == int(b.step) == 6
  assert all(x.sharding.num_devices == 1 for x in jax.tree.leaves(b.params))
  diff = helpers.state_max_abs_diff(a, b)
  print(f"final states, 1 vs 8 devices: max abs difference {diff:.2e}")
  assert diff < 1e-5
