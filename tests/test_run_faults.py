"""A run never loses work: divergence, stop signals, checkpoint failures, config changes.

Each test trains the tiny AAE of ``test_train`` on real MNIST in this process
(one compiled step, shared through the session's compilation cache) and checks
what the run says and what it leaves on disk.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading

import jax
import numpy as np
import pytest
from _configs import ROOT
from _faults import sigterm_after_step
from test_train import final_state, rows, tiny_config

from aaejax.run import checkpoints, guards, history, sweeps, train


def same_state(a, b) -> bool:
  key = lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype,
                                                                  jax.dtypes.prng_key) else x
  return all(jax.tree.leaves(jax.tree.map(lambda x, y: np.array_equal(key(x), key(y)), a, b)))


def steps(workdir, kind="train/recon_loss"):
  return [r["step"] for r in rows(workdir) if kind in r]


def ckpt_steps(workdir):
  return sorted(int(n) for n in os.listdir(os.path.join(workdir, "checkpoints")) if n.isdigit())


@pytest.fixture(scope="module")
def straight(tmp_path_factory, mnist_dir):
  """The uninterrupted 12-step run that interrupted ones must equal."""
  d = tmp_path_factory.mktemp("straight")
  train.train_and_evaluate(tiny_config(), str(d))
  return str(d)


# ---- divergence --------------------------------------------------------------------------


@pytest.mark.parametrize("lr,what", [(1e38, "is non-finite"), (1e6, "exceeds")])
def test_divergence_stops_and_saves_nothing_non_finite(mnist_dir, tmp_path, lr, what):
  c = tiny_config(learning_rate=lr, critic_learning_rate=lr, gen_learning_rate=lr,
                  checkpoint_every=5, num_steps=40, eval_every=40)
  with pytest.raises(guards.Diverged, match=f"non-finite|{what}") as e:
    train.train_and_evaluate(c, str(tmp_path))
  assert "training diverged at step" in str(e.value) and what in str(e.value)
  assert e.value.exit_code == 3
  # Whatever was saved is finite.
  for step in ckpt_steps(tmp_path):
    state = checkpoints.Checkpointer(str(tmp_path / "checkpoints")).restore(
        final_state(c, str(tmp_path)), step)
    assert all(guards.finite_leaves(state).values())


def test_divergence_keeps_the_last_good_checkpoint(mnist_dir, tmp_path):
  train.train_and_evaluate(tiny_config(num_steps=8, max_checkpoints=1), str(tmp_path))
  assert ckpt_steps(tmp_path) == [8]
  bad = tiny_config(learning_rate=1e38, critic_learning_rate=1e38, gen_learning_rate=1e38,
                    num_steps=20, checkpoint_every=2, max_checkpoints=1,
                    allow_config_change=True)
  with pytest.raises(guards.Diverged):
    train.train_and_evaluate(bad, str(tmp_path))
  assert ckpt_steps(tmp_path) == [8]  # rotation never replaced it with a non-finite state


def test_state_check_names_the_leaf():
  state = {"params": {"encoder": np.array([1.0, np.nan], np.float32)}, "step": np.int32(3)}
  with pytest.raises(guards.Diverged, match=r"non-finite values \(first: \['params'\]\['encoder'\]"):
    guards.check_state(state, 7)


def test_sweep_marks_a_diverged_member_and_finishes_the_others(mnist_dir, tmp_path):
  c = tiny_config(num_steps=6, eval_every=6)
  results = sweeps.run_sweep(c, ["learning_rate=1e-3,1e38"], str(tmp_path))
  assert "status" not in results[0] and np.isfinite(results[0]["eval/recon_loss"])
  assert results[1]["status"].startswith("diverged at step")
  summary = (tmp_path / "summary.md").read_text()
  assert "| ok |" in summary and "diverged at step" in summary


# ---- stop signals ------------------------------------------------------------------------


def test_sigterm_saves_and_resume_is_bit_identical(mnist_dir, tmp_path, straight, monkeypatch):
  c = tiny_config()
  undo = sigterm_after_step(monkeypatch, 5)
  with pytest.raises(guards.Preempted, match="preempted by SIGTERM at step 5") as e:
    train.train_and_evaluate(c, str(tmp_path))
  assert e.value.exit_code == 128 + signal.SIGTERM
  assert ckpt_steps(tmp_path) == [4, 5]
  undo()
  train.train_and_evaluate(c, str(tmp_path))
  assert same_state(final_state(c, straight), final_state(c, str(tmp_path)))
  strip = lambda rs: [{k: v for k, v in r.items() if k != "train/steps_per_sec"} for r in rs]
  assert strip(rows(tmp_path)) == strip(rows(straight))


def test_sigterm_to_the_cli_exits_143_with_a_message(mnist_dir, tmp_path):
  workdir = tmp_path / "run"
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "main.py"),
         "--config=" + os.path.join(ROOT, "experiments", "configs", "aae_unsupervised.py"),
         f"--workdir={workdir}", "--config.hidden=(32,)", "--config.critic_hidden=(16,)",
         "--config.num_steps=100000", "--config.log_every=5", "--config.eval_every=100000",
         "--config.plots=False", "--config.disable_progress=True",
         "--config.skip_evaluators=('mode_coverage','fd_digits','parzen_ll','knn_accuracy',"
         "'mmd_to_prior')"]
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "AAEJAX_DATA_DIR": mnist_dir})
  try:
    deadline = 120
    while deadline > 0 and not (workdir / "metrics.jsonl").exists():
      try:
        proc.wait(0.5)
        break
      except subprocess.TimeoutExpired:
        deadline -= 0.5
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
  finally:
    proc.kill()
  assert proc.returncode == 143, err[-2000:]
  line = [ln for ln in err.splitlines() if "preempted by SIGTERM" in ln]
  assert line and "Traceback" not in err, err[-2000:]
  step = int(line[0].split("at step ")[1].split()[0])
  assert ckpt_steps(workdir)[-1] == step
  assert "workdir" in out and "parameters" in out


# ---- checkpoint failures -----------------------------------------------------------------


def run_with_timeout(fn, timeout=240):
  """Runs ``fn`` in a thread; returns its exception (None) or fails if it hangs."""
  box = {}

  def target():
    try:
      fn()
    except BaseException as e:  # noqa: BLE001
      box["error"] = e
  t = threading.Thread(target=target, daemon=True)
  t.start()
  t.join(timeout)
  assert not t.is_alive(), f"the run hung for {timeout} s"
  return box.get("error")


def test_unwritable_checkpoint_directory_fails_at_start(mnist_dir, tmp_path):
  (tmp_path / "checkpoints").write_text("not a directory")
  err = run_with_timeout(lambda: train.train_and_evaluate(tiny_config(), str(tmp_path)))
  assert isinstance(err, guards.CheckpointFailed), err
  assert str(tmp_path / "checkpoints") in str(err) and "not writable" in str(err)
  assert not (tmp_path / "metrics.jsonl").exists()


def test_checkpoint_write_failure_mid_run_ends_the_run(mnist_dir, tmp_path, monkeypatch):
  save = checkpoints.Checkpointer.save

  def failing(self, step, state, force=False):
    if step == 8:  # the directory vanishes under the run (disk gone, permissions changed)
      shutil.rmtree(self.directory)
      open(self.directory, "w").close()
    return save(self, step, state, force)

  monkeypatch.setattr(checkpoints.Checkpointer, "save", failing)
  err = run_with_timeout(lambda: train.train_and_evaluate(tiny_config(), str(tmp_path)))
  assert isinstance(err, guards.CheckpointFailed), err
  assert "could not write checkpoint 8" in str(err) and str(tmp_path / "checkpoints") in str(err)


def test_a_failed_background_save_surfaces_at_the_next_check(tmp_path):
  """The loop calls ``check()`` after every step: the failure shows there, not at the next save."""
  import time
  ckpt = checkpoints.Checkpointer(str(tmp_path / "ckpt"), every=1)
  state = {"w": np.ones(1000, np.float32)}
  ckpt.save(1, state)
  ckpt.wait()
  shutil.rmtree(ckpt.directory)
  open(ckpt.directory, "w").close()
  try:
    ckpt.save(2, state)  # fails now (the synchronous part) or in the background
  except guards.CheckpointFailed as e:
    err = e
  else:
    deadline, err = time.monotonic() + 30, None
    while err is None and time.monotonic() < deadline:
      try:
        ckpt.check()
      except guards.CheckpointFailed as e:
        err = e
      time.sleep(0.01)
  assert err is not None and "could not write checkpoint 2" in str(err)
  ckpt.close()  # returns: nothing left to hang on


def test_corrupt_latest_checkpoint_falls_back(mnist_dir, tmp_path, straight, capsys):
  c = tiny_config()
  d = tmp_path / "run"
  train.train_and_evaluate(tiny_config(num_steps=8), str(d))
  for root, _, files in os.walk(d / "checkpoints" / "8"):
    for name in files:
      if name == "manifest.ocdbt":
        open(os.path.join(root, name), "wb").write(b"garbage")
  train.train_and_evaluate(c, str(d))
  assert "skipping checkpoint" in capsys.readouterr().out
  assert same_state(final_state(c, straight), final_state(c, str(d)))
  assert len(steps(d)) == len(set(steps(d)))


def test_no_checkpoint_restores_is_a_clear_error(mnist_dir, tmp_path):
  train.train_and_evaluate(tiny_config(num_steps=4), str(tmp_path))
  for root, _, files in os.walk(tmp_path / "checkpoints"):
    for name in files:
      if name == "manifest.ocdbt":
        open(os.path.join(root, name), "wb").write(b"garbage")
  with pytest.raises(guards.CheckpointFailed, match="no checkpoint in .* restores"):
    train.train_and_evaluate(tiny_config(), str(tmp_path))


# ---- config changes and metrics ----------------------------------------------------------


def test_config_changes_on_resume(mnist_dir, tmp_path):
  train.train_and_evaluate(tiny_config(num_steps=4), str(tmp_path))
  before = (tmp_path / "config.json").read_text()
  history_before = (tmp_path / "config_history.jsonl").read_text()
  for change in ({"latent_dim": 8}, {"learning_rate": 5e-4}, {"batch_size": 50}, {"seed": 1}):
    field = next(iter(change))
    with pytest.raises(history.ConfigChanged, match=f"{field}: .* -> .*allow_config_change"):
      train.train_and_evaluate(tiny_config(**change), str(tmp_path))
    assert (tmp_path / "config.json").read_text() == before
    assert (tmp_path / "config_history.jsonl").read_text() == history_before
  # Allowed on purpose: the new rate applies from the resumed step on, and is recorded.
  train.train_and_evaluate(tiny_config(num_steps=6, learning_rate=5e-4,
                                       allow_config_change=True), str(tmp_path))
  c = tiny_config(num_steps=6, learning_rate=5e-4)
  state = final_state(c, str(tmp_path))
  assert np.isclose(float(state.hparams["lr_recon"]), 5e-4)
  hist = [json.loads(r) for r in open(tmp_path / "config_history.jsonl")]
  assert [h["step"] for h in hist] == [0, 4]
  assert hist[1]["changed"]["learning_rate"] == [tiny_config().learning_rate, 5e-4]
  # Another model through allow_config_change: a clear error, not Orbax's advice.
  with pytest.raises(checkpoints.ModelMismatch, match="holds another model"):
    train.train_and_evaluate(tiny_config(num_steps=8, latent_dim=8, allow_config_change=True),
                             str(tmp_path))


def test_metrics_never_hold_a_step_twice(mnist_dir, tmp_path, straight):
  # A run killed before its first checkpoint left events (and a torn last line) behind.
  train.train_and_evaluate(tiny_config(num_steps=2, checkpoint_every=100), str(tmp_path))
  shutil.rmtree(tmp_path / "checkpoints")
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 3, "train/recon_lo')
  train.train_and_evaluate(tiny_config(), str(tmp_path))
  strip = lambda rs: [{k: v for k, v in r.items() if k != "train/steps_per_sec"} for r in rs]
  assert strip(rows(tmp_path)) == strip(rows(straight))


def test_a_finished_run_says_it_is_complete(mnist_dir, straight, capsys):
  before = rows(straight)
  result = train.train_and_evaluate(tiny_config(), straight)
  out = capsys.readouterr().out
  assert "the run is complete" in out and "already complete" in out
  assert rows(straight) == before and np.isfinite(result["eval/recon_loss"])
