"""experiments/reproduce.py: row configs, the table and JSON, one real quick run."""

import json

import numpy as np
import pytest

import reproduce
from aaejax.run import train


def test_row_configs(mnist_dir):
  row = reproduce.TABLES["semisupervised"].rows[0]
  c = reproduce.row_config("semisupervised", row, seed=2)
  assert (c.num_labeled, c.seed, c.num_steps, c.lr_boundaries) == (100, 2, 60_000, (30_000,))
  c = reproduce.row_config("semisupervised", row, seed=0, epochs=2)
  assert (c.num_steps, c.lr_boundaries, c.eval_every) == (1200, (600,), 1200)
  for every, expected in ((0, 60_000), (5_000, 5_000), (None, 3000)):
    assert reproduce.row_config("semisupervised", row, 0, eval_every=every).eval_every == expected
  with pytest.raises(ValueError, match="eval_every must be >= 0"):
    reproduce.row_config("semisupervised", row, 0, eval_every=-1)
  q = reproduce.row_config("clustering", reproduce.TABLES["clustering"].rows[1], 0, quick=True)
  assert (q.num_clusters, q.num_steps, q.hidden, q.plots) == (30, reproduce.QUICK_STEPS, (32,),
                                                               False)
  dim = reproduce.TABLES["dimreduction"].rows
  assert [r.overrides["num_labeled"] for r in dim] == [1000, 100]


def test_table_from_runs(mnist_dir, tmp_path, monkeypatch):
  errors = iter([5.0, 7.0, 3.0, 3.5])
  seen = []

  def fake_train(config, workdir):
    seen.append((config.model, config.num_labeled, config.seed, workdir))
    return {"step": config.num_steps, "eval/error_rate": next(errors)}

  monkeypatch.setattr(train, "train_and_evaluate", fake_train)
  summary = reproduce.run_table("dimreduction", str(tmp_path), seeds=2, epochs=1)
  assert [s[1:3] for s in seen] == [(1000, 0), (1000, 1), (100, 0), (100, 1)]
  assert seen[1][3] == str(tmp_path / "dimreduction" / "1000" / "seed1")
  first = summary["rows"][0]
  assert (first["mean"], first["paper"], first["epochs"]) == (6.0, 4.20, 1.0)
  np.testing.assert_allclose(first["std"], np.std([5.0, 7.0], ddof=1))
  md, js = reproduce.write_outputs(summary, str(tmp_path))
  text = open(md).read()
  assert "| MNIST 2-D, 1000 labels | 4.20 | 6.00 ± 1.41 | +1.80 | 2 | 1 |" in text
  assert "| MNIST 2-D, 100 labels | 6.08 | 3.25 ± 0.35 | -2.83 | 2 | 1 |" in text
  assert json.load(open(js))["rows"][1]["runs"][0]["metrics"] == {"eval/error_rate": 3.0}
  with pytest.raises(ValueError, match="unknown rows"):
    reproduce.run_table("dimreduction", str(tmp_path), rows=["7"])
  with pytest.raises(ValueError, match="unknown table"):
    reproduce.run_table("svhn", str(tmp_path))


def test_quick_run_end_to_end(mnist_dir, tmp_path):
  # The training loop with a labelled subset sampled into every step.
  summary = reproduce.run_table("semisupervised", str(tmp_path), seeds=1, quick=True,
                                rows=["100"])
  md, _ = reproduce.write_outputs(summary, str(tmp_path))
  row = summary["rows"][0]
  assert 0.0 <= row["mean"] <= 100.0 and row["std"] is None
  assert "QUICK" in open(md).read()
  rows = [json.loads(r) for r in open(tmp_path / "semisupervised" / "100" / "seed0" /
                                      "metrics.jsonl")]
  assert any("train/supervised_loss" in r for r in rows)
  assert rows[-1]["eval/error_rate"] == row["mean"]


def test_parzen_table_quick(mnist_dir, tmp_path):
  """The Parzen table's rows and Markdown; one real quick run (the GAN row)."""
  spec = reproduce.TABLES["parzen"]
  assert [(r.key, r.paper) for r in spec.rows] == [("aae", 340.0), ("aae_r1", 340.0),
                                                   ("gan", 225.0), ("vae", None), ("wae", None)]
  aae, aae_r1 = (reproduce.row_config("parzen", r, 0) for r in spec.rows[:2])
  assert (aae.model, aae.latent_dim, aae.prior, aae.r1_weight) == ("aae", 8, "gaussian", 0.0)
  assert aae_r1.r1_weight == 10.0  # the main job's
  assert reproduce.row_config("parzen", spec.rows[4], 0).model == "wae"
  summary = reproduce.run_table("parzen", str(tmp_path), seeds=1, quick=True, rows=["gan"])
  row = summary["rows"][0]
  assert np.isfinite(row["mean"]) and row["extra"]["eval/parzen_ll_se"] > 0
  assert "eval/fd_digits" not in row["extra"]  # quick: no digit classifier
  text = reproduce.markdown(summary)
  assert "higher is better" in text and "eval/fd_digits |" in text and "| — |" in text
  assert f"| GAN | 225.00 ± 2.00 | {row['mean']:.2f} | {row['mean'] - 225:+.2f} | 1 |" in text
  summary["rows"].append({**row, "setting": "VAE (8-D)", "paper": None, "paper_std": None})
  assert "| VAE (8-D) | — |" in reproduce.markdown(summary)


def test_celeba_table_with_the_real_floor(tmp_path, monkeypatch):
  from aaejax import data
  from aaejax.evaluation import feature_nets
  try:
    data.load_numpy("celeb_a", "test")
  except (data.DatasetNotFoundError, data.DataFileError, FileNotFoundError) as e:
    pytest.skip(f"no CelebA subset: {e}")
  seen = []

  def fake_train(config, workdir):
    seen.append((config.model, config.get("penalty"), config.dataset, config.fd_samples))
    return {"step": config.num_steps, "eval/fd_effnet": 10.0 + len(seen),
            "eval/kid_effnet": 0.01, "eval/kid_effnet_std": 0.001}

  def colour_means(name, config):  # a 3-D stand-in for the EfficientNet features
    assert name == "effnet"
    return lambda images: np.asarray(images, np.float32).reshape(len(images), -1, 3).mean(1) / 255

  monkeypatch.setattr(train, "train_and_evaluate", fake_train)
  monkeypatch.setattr(feature_nets, "embedder", colour_means)
  summary = reproduce.run_table("celeba", str(tmp_path), seeds=1, rows=["vae", "wae_gan"])
  assert seen == [("vae", None, "celeb_a", 2000), ("wae", "gan", "celeb_a", 2000)]
  floor = summary["floor"]
  assert floor["halves"]["n"] == [1000, 1000] and floor["train_vs_test"]["n"] == [2000, 2000]
  # Disjoint real sets: a small distance, and the larger sets give the smaller FD bias.
  assert 0 <= floor["train_vs_test"]["fd"] < floor["halves"]["fd"] < 1e-3
  text = reproduce.markdown(summary)
  assert "| VAE | — | 11.00 | — | 1 | 20 |" in text  # 1,600 steps of 8,000 images
  assert "| training vs test images | 2,000 vs 2,000 |" in text


def test_main_table_per_seed_and_publish(mnist_dir, tmp_path, monkeypatch):
  values = iter([0.031, 0.72, 0.045, 0.70, 0.02, 0.71])

  def fake_train(config, workdir):
    assert (config.model, config.prior) == ("aae", "gaussian_mixture")
    return {"step": config.num_steps, "eval/mmd_to_prior": next(values),
            "eval/knn_accuracy": next(values), "eval/classes_covered": 10.0}

  monkeypatch.setattr(train, "train_and_evaluate", fake_train)
  summary = reproduce.run_table("main", str(tmp_path / "runs"), seeds=3, rows=["mixture"])
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=true")
  assert reproduce.provenance(["reproduce.py"])["command"] == (
      "XLA_FLAGS=--xla_cpu_enable_fast_math=true python experiments/reproduce.py")
  monkeypatch.delenv("XLA_FLAGS")
  summary["made"] = reproduce.provenance(["reproduce.py", "--table=main"])
  assert summary["made"]["command"] == "python experiments/reproduce.py --table=main"
  text = reproduce.markdown(summary)
  row = [line for line in text.splitlines() if line.startswith("| 10-gaussian")][0]
  # mean ± std of the metric in 3 decimals, extras as mean ± std, then seed by seed.
  assert row.startswith("| 10-gaussian mixture | — | 0.032 ± 0.013 | — | 3 |")
  assert "| 0.71 ± 0.01 |" in row
  assert "| 0.031 / 0.045 / 0.020 | 0.720 / 0.700 / 0.710 | 10 / 10 / 10 |" in row
  assert "| — |" in row  # a metric the runs did not report (rarest class share)
  assert "Made by `python experiments/reproduce.py --table=main` on " in text

  readme = tmp_path / "README.md"
  readme.write_text("intro\n<!-- reproduce:main -->\nold table\n<!-- /reproduce:main -->\nend\n")
  md = reproduce.publish(summary, "main", str(tmp_path / "results"), str(readme))
  assert readme.read_text() == ("intro\n<!-- reproduce:main -->\n" + open(md).read()
                                + "<!-- /reproduce:main -->\nend\n")
  assert json.load(open(tmp_path / "results" / "main.json"))["made"] == summary["made"]
  with pytest.raises(ValueError, match="no block <!-- reproduce:other -->"):
    reproduce.publish(summary, "other", str(tmp_path / "results"), str(readme))


def test_gpu_check_script_names_real_tables_and_rows():
  import os
  import re
  import subprocess
  script = os.path.join(os.path.dirname(reproduce.__file__), "gpu_check.sh")
  subprocess.run(["bash", "-n", script], check=True)
  calls = re.findall(r"^table (\w+) (.*)$", open(script).read(), re.M)
  assert [c[0] for c in calls] == ["main", "semisupervised", "clustering", "celeba_paper"]
  for name, args in calls:
    rows = re.search(r"--rows=([\w,]+)", args).group(1).split(",")
    assert set(rows) <= {r.key for r in reproduce.TABLES[name].rows}, (name, rows)


def test_section_tables_follow_the_readme_commands():
  """The tables of the README's other MNIST sections train what their sections describe."""
  def config(table, key):
    row = next(r for r in reproduce.TABLES[table].rows if r.key == key)
    return reproduce.row_config(table, row, seed=1, eval_every=0)
  c = config("dann", "source_only")
  assert (c.model, c.domain_weight, c.num_steps, c.eval_every, c.seed) == ("dann", 0.0, 1000,
                                                                           1000, 1)
  assert config("dann", "dann").domain_weight == 1.0
  c = config("triplegan", "aae_semi")
  assert (c.model, c.num_labeled, c.num_steps, c.lr_boundaries) == ("aae_semisupervised", 100,
                                                                   3000, (1500,))
  assert config("triplegan", "triplegan").num_steps == 3000
  c = config("style", "two_encoder")
  assert (c.content_encoder, c.label_adversary_weight, c.content_weight, c.num_steps) == (
      True, 10.0, 10.0, 3000)
  assert config("style", "plain").label_adversary_weight == 0.0
  assert (config("vae", "vae_2d").latent_dim, config("vae", "vaegan_three_way").three_way) == (
      2, True)
  c = config("gan", "dcgan")
  assert (c.network, c.num_steps, c.critic_dropout) == ("conv", 1000, 0.0)
  assert config("gan", "gan").critic_dropout == 0.7
  assert config("bigan", "ali").stochastic_encoder and not config("bigan", "bigan").stochastic_encoder
  assert config("infogan", "infogan").num_steps == 6000
  c = config("supervised_prior", "swiss_roll")
  assert (c.model, c.prior, c.num_labeled, c.num_steps) == ("aae_supervised_prior", "swiss_roll",
                                                            10_000, 6000)
