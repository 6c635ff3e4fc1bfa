"""End-to-end: the entry point's loop on real MNIST, outputs, exact resume, bad configs."""

import json
import os

import jax
import numpy as np
import pytest

from _configs import small_config
from aaejax import models
from aaejax.run import checkpoints, train


def tiny_config(name="aae_unsupervised", **overrides):
  return small_config(name, **{**dict(hidden=(64,), critic_hidden=(32,), num_steps=12,
                                      log_every=2, eval_every=6, checkpoint_every=4),
                               **overrides})


def final_state(config, workdir):
  model = models.create(config, (28, 28, 1))
  template = model.init(jax.random.key(0), models.hparams_from_config(model, config))
  return checkpoints.Checkpointer(os.path.join(workdir, "checkpoints")).restore(template)


def rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(r) for r in f]


def test_run_writes_outputs_and_plots(mnist_dir, tmp_path):
  c = tiny_config(plots=True, num_steps=6)
  result = train.train_and_evaluate(c, str(tmp_path))
  for key in ("eval/recon_loss", "eval/mmd_to_prior", "eval/knn_accuracy"):
    assert np.isfinite(result[key])
  assert 0.0 <= result["eval/knn_accuracy"] <= 1.0
  assert json.load(open(tmp_path / "config.json"))["prior"] == "gaussian_mixture"
  r = rows(tmp_path)
  assert [x["step"] for x in r if "train/recon_loss" in x] == [2, 4, 6]
  assert os.listdir(tmp_path / "tb")
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["4", "6"]
  for png in ("latent_qz", "prior_pz", "manifold", "reconstructions", "samples", "curves"):
    assert (tmp_path / "plots" / f"{png}.png").stat().st_size > 1000


@pytest.mark.parametrize("name,extra", [
    ("aae_unsupervised", {}),
    # BiGAN (VAE-GAN's is in test_vaegan.py, InfoGAN's in test_vae_gan.py); its cycle
    # metric would train the digit classifier.
    ("bigan", {"skip_evaluators": ("mode_coverage", "fd_digits", "parzen_ll",
                                   "cycle_label_accuracy")})])
def test_resume_is_bit_identical(mnist_dir, tmp_path, name, extra):
  c = tiny_config(name, **extra)
  straight = tmp_path / "straight"
  train.train_and_evaluate(c, str(straight))
  resumed = tmp_path / "resumed"
  train.train_and_evaluate(tiny_config(name, num_steps=8, **extra), str(resumed))
  # Pretend the first run died after its step-8 checkpoint and left later events behind.
  with open(resumed / "metrics.jsonl", "a") as f:
    f.write(json.dumps({"step": 10, "train/recon_loss": -1.0}) + "\n")
  train.train_and_evaluate(c, str(resumed))
  a, b = final_state(c, str(straight)), final_state(c, str(resumed))
  assert int(a.step) == int(b.step) == 12
  same = jax.tree.map(lambda x, y: np.array_equal(np.asarray(jax.random.key_data(x) if
                                                             x.dtype == jax.random.key(0).dtype
                                                             else x),
                                                  np.asarray(jax.random.key_data(y) if
                                                             y.dtype == jax.random.key(0).dtype
                                                             else y)), a, b)
  assert all(jax.tree.leaves(same))
  # Same events, except the extra final eval of the 8-step run.
  strip = lambda rs: [{k: v for k, v in r.items() if k != "train/steps_per_sec"} for r in rs
                      if not (r["step"] == 8 and any(k.startswith("eval/") for k in r))]
  assert strip(rows(straight)) == strip(rows(resumed))


def test_bad_configs(mnist_dir, tmp_path):
  with pytest.raises(ValueError, match="unknown dataset"):
    train.train_and_evaluate(tiny_config(dataset="cifar10"), str(tmp_path))
  with pytest.raises(ValueError, match="num_steps"):
    train.train_and_evaluate(tiny_config(num_steps=0), str(tmp_path))
  with pytest.raises(ValueError, match="num_devices"):
    train.train_and_evaluate(tiny_config(num_devices=64), str(tmp_path))
  with pytest.raises(ValueError, match="unknown model"):
    train.train_and_evaluate(tiny_config(model="vqvae"), str(tmp_path))
