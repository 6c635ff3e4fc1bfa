"""Reproduces the README's result tables: the main job (the unsupervised AAE with each
prior), the AAE paper's MNIST tables (semi-supervised, clustering, dimensionality
reduction, the Parzen-window log-likelihood of Table 1), the WAE paper's CelebA
comparison, and the tables of the README's other MNIST sections (``vae``: the VAE and
VAE-GAN; ``gan``: the GAN and DCGAN; ``bigan``; ``infogan``; ``triplegan``: with the
semi-supervised AAE at its budget; ``dann``; ``style``; ``supervised_prior``: the
label-conditioned prior), each row at its section's budget.

  python experiments/reproduce.py --table=semisupervised --workdir=runs/repro \
      [--seeds=3] [--epochs=E] [--rows=100,1000] [--eval_every=N] [--quick] [--publish=NAME]
  python experiments/reproduce.py --table=main --workdir=runs/repro --publish=main

Trains every row of the table (:data:`TABLES`) once per seed (seeds 0, 1, …;
the seed picks the labelled subset, the initialisation and the data order) with
the row's config from ``experiments/configs/``: the config's schedule (our
documented recipe, 100 epochs), or ``--epochs`` epochs with the learning-rate
boundaries moved in proportion. Writes into ``workdir``:

- ``<table>.md``: per row, the mean ± std over seeds of the table's final
  metric (test error %; Parzen log-likelihood in nats) next to the paper's
  number and the gap between them, and the table's extra metrics (``parzen``:
  the Parzen standard error, σ, ``eval/fd_digits`` and the digits covered);
- ``<table>.json``: the same and every run's final eval metrics.

``--publish=NAME`` also writes ``experiments/results/NAME.md`` / ``.json`` (with the
command, the machine, jax's version and the commit that made them) and replaces the
README's block between ``<!-- reproduce:NAME -->`` and ``<!-- /reproduce:NAME -->``
with the table: the README's result tables are these files, which a test checks.

Each run lives in ``workdir/<table>/<row>/seed<k>`` (metrics, checkpoints,
plots) and resumes from its checkpoints, so a reproduction that was stopped
continues where it stopped. ``--eval_every=0`` evaluates each run at its last step only
(all a table reads; evaluation does not touch training). ``--quick`` trains tiny networks for 20 steps per
run: a smoke test of the whole pipeline, not a measurement.

The Parzen table (Goodfellow et al.'s protocol, :mod:`aaejax.evaluation.parzen`): each
model's 10,000 samples, σ chosen on 1,000 training images, the mean
log-likelihood of the 10,000 test images. Rows: the AAE (``aae_unsupervised``
with an 8-D gaussian prior: the paper's Parzen AAE had a higher-dimensional
code than its 2-D figures; without and with the main job's R1 penalty), the GAN (``gan``), the VAE (``vae``) and the WAE
(``wae``), each at its config's schedule. The paper has numbers for the AAE
(340 ± 2) and the GAN (225 ± 2, from Goodfellow et al.) only.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
from typing import Any

import numpy as np
from absl import app, flags, logging


from aaejax import data
from aaejax.evaluation import feature_distances, feature_nets
from aaejax.run import train
from configs import (aae_clustering, aae_dimreduction, aae_semisupervised, aae_style,
                     aae_supervised_prior, aae_unsupervised, bigan, dann, gan, infogan,
                     triplegan, vae, vaegan, wae)


@dataclasses.dataclass(frozen=True)
class Row:
  key: str        # short name (``--rows``, directory name)
  setting: str    # the table's first column
  overrides: dict  # config fields of this row
  paper: float | None  # the paper's number in the table's unit (None: not in the paper)
  paper_std: float | None = None
  get_config: Any = None  # this row's config (default: the table's)


@dataclasses.dataclass(frozen=True)
class Table:
  get_config: Any
  metric: str
  rows: tuple[Row, ...]
  title: str = "% test error"   # what the metric is, in its unit
  higher_is_better: bool = False
  extra: tuple[str, ...] = ()   # further final metrics shown per row (mean ± std over seeds)
  per_seed: tuple[str, ...] = ()  # metrics also shown seed by seed ("a / b / c")
  digits: int = 2               # decimals of the table's metric


def _celeba_table(size: str) -> Table:
  """The WAE paper's CelebA comparison: ``cpu`` the :celeba_cpu nets and budget, ``paper`` the
  paper-size nets (:celeba; 50 epochs, or ``--epochs``, of the data at hand).

  The paper's numbers are Inception FIDs of the paper-size nets on all of CelebA (VAE 63
  or 82, WAE-MMD 55, WAE-GAN 42); fd_effnet is another feature space, so the table
  compares the models with each other and with the real-vs-real floor
  (:func:`real_floor`), not with the paper.
  """
  v = {"cpu": "celeba_cpu", "paper": "celeba"}[size]
  part = functools.partial
  return Table(part(wae.get_config, v), "eval/fd_effnet", (
      Row("vae", "VAE", {}, None, get_config=part(vae.get_config, v)),
      Row("wae_mmd", "WAE-MMD (IMQ, λ = 100)", {}, None),
      Row("wae_gan", "WAE-GAN (λ = 1, log-prior critic)", {}, None,
          get_config=part(wae.get_config, f"{v}_gan")),
      Row("aae", "AAE (conv, 64-D gaussian prior)", {}, None,
          get_config=part(aae_unsupervised.get_config, v)),
      Row("gan", "GAN (DCGAN)", {}, None, get_config=part(gan.get_config, v)),
      Row("vaegan", "VAE-GAN (critic-feature reconstruction)", {}, None,
          get_config=part(vaegan.get_config, v))),
      title="Fréchet distance in EfficientNet-Lite0 features, generated vs held-out CelebA "
            f"64x64 ({'CPU-sized' if size == 'cpu' else 'paper-size'} nets)",
      extra=("eval/kid_effnet", "eval/kid_effnet_std", "eval/fd_samples",
             "eval/fd_real_samples", "eval/recon_loss"))


# Rows whose table reads neither the samples' Parzen estimate nor their digit-feature FD.
_NO_SAMPLE_SCORES = {"skip_evaluators": ("fd_digits", "parzen_ll")}
# ... nor how many digit classes the samples cover.
_NO_GENERATIVE_SCORES = ("parzen_ll", "fd_digits", "mode_coverage")

TABLES = {
    "semisupervised": Table(aae_semisupervised.get_config, "eval/error_rate", (
        Row("100", "MNIST, 100 labels", {"num_labeled": 100}, 1.90, 0.10),
        Row("1000", "MNIST, 1000 labels", {"num_labeled": 1000}, 1.60, 0.08),
        Row("all", "MNIST, all 60,000 labels", {"num_labeled": 60_000}, 0.85, 0.02)),
        extra=("eval/y_confidence", "eval/recon_loss"), per_seed=("eval/error_rate",)),
    "clustering": Table(aae_clustering.get_config, "eval/cluster_error", (
        Row("16", "MNIST, 16 clusters", {"num_clusters": 16}, 9.55),
        Row("30", "MNIST, 30 clusters", {"num_clusters": 30}, 4.10)),
        extra=("eval/categories_used", "eval/y_confidence", "eval/recon_loss"),
        per_seed=("eval/cluster_error",)),
    "dimreduction": Table(aae_dimreduction.get_config, "eval/error_rate", (
        Row("1000", "MNIST 2-D, 1000 labels", {"num_labeled": 1000}, 4.20),
        Row("100", "MNIST 2-D, 100 labels", {"num_labeled": 100}, 6.08)),
        per_seed=("eval/error_rate",)),
    "parzen": Table(aae_unsupervised.get_config, "eval/parzen_ll", (
        Row("aae", "AAE (8-D gaussian prior)", {"latent_dim": 8, "prior": "gaussian",
                                                 "r1_weight": 0.0}, 340.0, 2.0),
        Row("aae_r1", "AAE (8-D gaussian prior, the main job's R1 penalty γ = 10)",
            {"latent_dim": 8, "prior": "gaussian"}, 340.0, 2.0),
        Row("gan", "GAN", {}, 225.0, 2.0, gan.get_config),
        Row("vae", "VAE (8-D)", {}, None, None, vae.get_config),
        Row("wae", "WAE-MMD (8-D)", {}, None, None, wae.get_config)),
        title="Parzen log-likelihood of MNIST test images, nats", higher_is_better=True,
        extra=("eval/parzen_ll_se", "eval/parzen_sigma", "eval/fd_digits",
               "eval/classes_covered", "eval/rarest_class_share"),
        per_seed=("eval/parzen_ll", "eval/fd_digits")),
    # The main job (README: "The main job"): the unsupervised AAE's config with each prior.
    # The paper has figures, not numbers, for these; the targets are the recipe's own
    # (mixture: eval/mmd_to_prior <= 0.05, eval/knn_accuracy >= 0.70 on every seed).
    "main": Table(aae_unsupervised.get_config, "eval/mmd_to_prior", (
        Row("mixture", "10-gaussian mixture", {}, None),
        Row("gaussian", "gaussian", {"prior": "gaussian"}, None),
        Row("swiss_roll", "swiss roll", {"prior": "swiss_roll"}, None),
        Row("uniform", "uniform", {"prior": "uniform"}, None)),
        title="IMQ MMD between the 10,000 test codes and prior samples, unsupervised AAE on "
              "MNIST, 2-D codes",
        extra=("eval/knn_accuracy", "eval/classes_covered", "eval/rarest_class_share",
               "eval/recon_loss"),
        per_seed=("eval/mmd_to_prior", "eval/knn_accuracy", "eval/classes_covered"), digits=3),
    # The README's other MNIST sections: each model's default config (its documented budget),
    # or the budget named in the row.
    "vae": Table(vae.get_config, "eval/fd_digits", (
        Row("vae", "VAE, 8-D z, 5 epochs", {}, None),
        Row("vae_2d", "VAE, 2-D z (`vae.py:2d`), 5 epochs", {}, None,
            get_config=functools.partial(vae.get_config, "2d")),
        Row("vaegan", "VAE-GAN, 8-D z, 5 epochs", {}, None, get_config=vaegan.get_config),
        Row("vaegan_three_way", "VAE-GAN, three-way critic (`vaegan.py:three_way`)", {}, None,
            get_config=functools.partial(vaegan.get_config, "three_way"))),
        title="Fréchet distance of 10,000 samples to the MNIST test digits in the digit "
              "classifier's features",
        extra=("eval/nll_elbo", "eval/nll_iw", "eval/classes_covered",
               "eval/rarest_class_share", "eval/confident_share", "eval/parzen_ll",
               "eval/knn_accuracy", "eval/recon_loss"),
        per_seed=("eval/fd_digits",), digits=1),
    "gan": Table(gan.get_config, "eval/rarest_class_share", (
        Row("gan", "GAN, MLP 1000-1000, critic dropout 0.7, 10 epochs", {}, None),
        Row("dcgan", "DCGAN (`gan.py:dcgan`), 1,000 steps", {
            "num_steps": 1000, "skip_evaluators": ("parzen_ll",)}, None,
            get_config=functools.partial(gan.get_config, "dcgan"))),
        title="share of the rarest digit among 10,000 samples (by the digit classifier)",
        higher_is_better=True,
        extra=("eval/classes_covered", "eval/confident_share", "eval/fd_digits"),
        per_seed=("eval/rarest_class_share", "eval/classes_covered"), digits=4),
    "bigan": Table(bigan.get_config, "eval/knn_accuracy", (
        Row("bigan", "BiGAN, 50-D uniform z, 6,000 steps", _NO_SAMPLE_SCORES, None),
        Row("ali", "ALI (`bigan.py:ali`, a stochastic encoder)", _NO_SAMPLE_SCORES, None,
            get_config=functools.partial(bigan.get_config, "ali"))),
        title="5-NN digit accuracy on the encoder's codes of the MNIST test set",
        higher_is_better=True,
        extra=("eval/cycle_label_accuracy", "eval/classes_covered", "eval/rarest_class_share"),
        per_seed=("eval/knn_accuracy", "eval/cycle_label_accuracy"), digits=3),
    "infogan": Table(infogan.get_config, "eval/categorical_error", (
        Row("infogan", "InfoGAN, MLPs, 10-way + 2 continuous codes, 6,000 steps",
            _NO_SAMPLE_SCORES, 5.0),),
        title="% error of Q's categorical code as a digit classifier (best one-to-one matching)",
        extra=("eval/classes_covered", "eval/rarest_class_share"),
        per_seed=("eval/categorical_error",)),
    "triplegan": Table(triplegan.get_config, "eval/error_rate", (
        Row("triplegan", "Triple-GAN, 100 labels, 3,000 steps", {}, 0.91, 0.58),
        Row("aae_semi", "semi-supervised AAE, the same labels and budget",
            {"num_labeled": 100, "num_steps": 3000, "lr_boundaries": (1500,),
             "skip_evaluators": _NO_GENERATIVE_SCORES}, 1.90, 0.10,
            get_config=aae_semisupervised.get_config)),
        extra=("eval/gen_label_agreement",), per_seed=("eval/error_rate",)),
    "dann": Table(dann.get_config, "eval/target_accuracy", (
        Row("source_only", "source only (`domain_weight=0`), 1,000 steps",
            {"num_steps": 1000, "domain_weight": 0.0}, 52.25),
        Row("dann", "DANN, 1,000 steps", {"num_steps": 1000}, 76.66)),
        title="% accuracy on the target domain (mnist_m_style; the paper's: real MNIST-M)",
        higher_is_better=True,
        extra=("eval/source_accuracy", "eval/domain_critic_accuracy"),
        per_seed=("eval/target_accuracy", "eval/domain_critic_accuracy")),
    "style": Table(aae_style.get_config, "eval/z_label_knn_accuracy", tuple(
        Row(key, setting, {"num_steps": 3000, **fields,
                           "skip_evaluators": _NO_GENERATIVE_SCORES}, None)
        for key, setting, fields in (
            ("plain", "style AAE, no adversary, 3,000 steps", {}),
            ("adversary", "style AAE, `label_adversary_weight=10`",
             {"label_adversary_weight": 10.0}),
            ("two_encoder", "two encoders, `content_encoder=True label_adversary_weight=10 "
                            "content_weight=10`",
             {"content_encoder": True, "label_adversary_weight": 10.0,
              "content_weight": 10.0}))),
        title="5-NN digit accuracy on the style codes z (0.1 = chance; the aim: ≤ 0.30)",
        extra=("eval/recon_loss", "eval/error_rate"),
        per_seed=("eval/z_label_knn_accuracy",), digits=3),
    # The label-conditioned prior (the paper's Fig. 4), its config's 10 epochs.
    "supervised_prior": Table(aae_supervised_prior.get_config, "eval/label_component_accuracy", (
        Row("mixture", "10-gaussian mixture, 10,000 labels", {
            "skip_evaluators": _NO_GENERATIVE_SCORES}, None),
        Row("swiss_roll", "swiss roll, 10,000 labels", {
            "prior": "swiss_roll", "skip_evaluators": _NO_GENERATIVE_SCORES}, None)),
        title="share of test codes in their own digit's part of the prior (mixture: nearest "
              "component; swiss roll: own segment)",
        higher_is_better=True, extra=("eval/mmd_to_prior", "eval/knn_accuracy",
                                      "eval/recon_loss"),
        per_seed=("eval/label_component_accuracy",), digits=3),
    "celeba": _celeba_table("cpu"),
    "celeba_paper": _celeba_table("paper"),
}

# Tables whose rows are compared with real-vs-real feature distances (:func:`real_floor`).
FLOOR_NET = {"celeba": "effnet", "celeba_paper": "effnet"}

QUICK_STEPS = 20


def _splits(config):
  kwargs = dict(cache_dir=config.get("cache_dir") or None, download=config.get("download", True))
  return tuple(data.load_numpy(config.dataset, split, config.get("data_dir") or None, **kwargs)
               for split in ("train", "test"))


def _train_size(config) -> int:
  return len(_splits(config)[0]["image"])


def real_floor(config, net: str = "effnet") -> dict:
  """Feature distances between disjoint sets of real images of ``config``'s data set.

  ``halves``: the test split's first half against its second; ``train_vs_test``: as many
  training images as the evaluators compare (``min(fd_samples, test size)``) against that
  many test images, the number the rows' generated samples are measured with. The KID is
  computed as the evaluators do (``kid_subsets`` subsets of ``kid_subset_size``).
  """
  train, test = _splits(config)
  embed = feature_nets.embedder(net, config)
  n = min(int(config.get("fd_samples", 10_000)), len(test["image"]))
  test_f = embed(test["image"][:n])
  train_f = embed(train["image"][:n])
  out = {"net": net}
  for name, a, b in (("halves", test_f[:n // 2], test_f[n // 2:2 * (n // 2)]),
                     ("train_vs_test", train_f, test_f)):
    fd = feature_distances.frechet_distance(*feature_distances.gaussian_stats(a),
                                            *feature_distances.gaussian_stats(b))
    kid, kid_std = feature_distances.kernel_distance(
        a, b, subsets=int(config.get("kid_subsets", 100)),
        subset_size=int(config.get("kid_subset_size", 1000)))
    out[name] = {"fd": fd, "kid": kid, "kid_std": kid_std, "n": [len(a), len(b)]}
  return out


def row_config(table: str, row: Row, seed: int, epochs: float | None = None, quick: bool = False,
               eval_every: int | None = None):
  """The config of one run: the table's config, the row's fields, the seed, the schedule.

  ``eval_every``: evaluate every that many steps (None: the config's; 0: at the last step
  only, which is all a table reads). Evaluation does not touch the training state, so the
  runs train the same either way.
  """
  spec = TABLES[table]
  c = (row.get_config or TABLES[table].get_config)()
  for k, v in row.overrides.items():
    c[k] = v
  c.seed = seed
  c.disable_progress = True
  if epochs is not None:
    steps = max(1, round(epochs * _train_size(c) / c.batch_size))
    c.lr_boundaries = tuple(int(b * steps / c.num_steps) for b in c.lr_boundaries)
    c.num_steps = steps
  if quick:
    c.hidden, c.critic_hidden = (32,), (32,)
    # Conv nets: :celeba_cpu's widths.
    for field in [f for f in c.keys() if f.endswith("_channels")]:
      c[field] = tuple(min(ch, 8 * 2 ** i) for i, ch in enumerate(c[field]))
    c.num_steps, c.lr_boundaries, c.lr_factors = QUICK_STEPS, (), ()
    c.plots = False
    # No digit classifier to train for a smoke run (mode coverage, FD); Parzen on 500 images.
    c.skip_evaluators = ("mode_coverage", "fd_digits")
    if spec.metric != "eval/parzen_ll":
      c.skip_evaluators += ("parzen_ll",)
    c.parzen_samples, c.parzen_validation, c.parzen_test = 500, 200, 500
  if eval_every is not None:
    if eval_every < 0:
      raise ValueError(f"eval_every must be >= 0 (0: the last step only), got {eval_every}.")
    c.eval_every = eval_every or c.num_steps
  c.eval_every = min(c.eval_every, c.num_steps)
  c.log_every = min(c.log_every, c.num_steps)
  c.checkpoint_every = min(c.checkpoint_every, c.num_steps)
  return c


def run_table(table: str, workdir: str, seeds: int = 3, epochs: float | None = None,
              quick: bool = False, rows: list[str] | None = None,
              eval_every: int | None = None) -> dict:
  """Trains the rows of ``table`` (all, or the keys in ``rows``) over ``seeds`` seeds.

  Returns the JSON-able summary that :func:`write_outputs` writes.
  """
  if table not in TABLES:
    raise ValueError(f"unknown table {table!r}; expected one of {sorted(TABLES)}.")
  spec = TABLES[table]
  chosen = [r for r in spec.rows if rows is None or r.key in rows]
  unknown = set(rows or ()) - {r.key for r in spec.rows}
  if unknown or not chosen:
    raise ValueError(f"unknown rows {sorted(unknown)} of table {table!r}; known: "
                     f"{[r.key for r in spec.rows]}.")
  if seeds < 1:
    raise ValueError(f"seeds must be >= 1, got {seeds}.")
  summary = {"table": table, "metric": spec.metric, "title": spec.title,
             "higher_is_better": spec.higher_is_better, "extra": list(spec.extra),
             "per_seed": list(spec.per_seed), "digits": spec.digits, "quick": quick,
             "rows": []}
  for row in chosen:
    runs = []
    for seed in range(seeds):
      config = row_config(table, row, seed, epochs, quick, eval_every)
      run_dir = os.path.join(workdir, table, row.key, f"seed{seed}")
      print(f"{table} / {row.setting} / seed {seed} -> {run_dir}", flush=True)
      result = train.train_and_evaluate(config, run_dir)
      runs.append({"seed": seed, "workdir": run_dir,
                   "metrics": {k: v for k, v in result.items() if k != "step"}})
    errors = np.array([r["metrics"][spec.metric] for r in runs])
    extra = {m: float(np.mean([r["metrics"][m] for r in runs])) for m in spec.extra
             if all(m in r["metrics"] for r in runs)}
    epochs_run = config.num_steps * config.batch_size / _train_size(config)
    summary["rows"].append({
        "key": row.key, "setting": row.setting, "paper": row.paper, "paper_std": row.paper_std,
        "mean": float(errors.mean()), "std": float(errors.std(ddof=1)) if len(errors) > 1 else None,
        "num_steps": int(config.num_steps), "epochs": epochs_run, "extra": extra,
        "runs": runs})
  if table in FLOOR_NET and not quick:
    summary["floor"] = real_floor(config, FLOOR_NET[table])
  return summary


def _pm(mean: float | None, std: float | None, digits: int = 2) -> str:
  if mean is None:
    return "—"
  return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _num(value: float, digits: int) -> str:
  """``value`` with ``digits`` decimals; a whole number (a count) as an int."""
  return str(int(value)) if float(value).is_integer() else f"{value:.{digits}f}"


def _g(values: list[float]) -> str:
  """Mean (± std over seeds when there are several) in 4 significant digits."""
  if len(values) == 1:
    return f"{values[0]:.4g}"
  return f"{np.mean(values):.4g} ± {np.std(values, ddof=1):.2g}"


def markdown(summary: dict) -> str:
  """The Markdown table of a :func:`run_table` summary (a pure function of the summary)."""
  title = summary.get("title", "% test error")
  better = "higher" if summary.get("higher_is_better") else "lower"
  digits = summary.get("digits", 2)
  extra = list(summary.get("extra", ()))
  per_seed = list(summary.get("per_seed", ()))
  lines = [f"{summary['table']}: {title} ({summary['metric']}; {better} is better)"
           + (" — QUICK smoke run, not a measurement" if summary["quick"] else ""), "",
           "| Setting | Paper | Ours | Gap (ours − paper) | Seeds | Epochs |"
           + "".join(f" {m} |" for m in extra)
           + "".join(f" {m}, seed by seed |" for m in per_seed),
           "|---|---|---|---|---|---|" + "---|" * (len(extra) + len(per_seed))]
  for r in summary["rows"]:
    gap = "—" if r["paper"] is None else f"{r['mean'] - r['paper']:+.{digits}f}"
    shown = []
    for m in extra:
      values = [run["metrics"][m] for run in r["runs"] if m in run["metrics"]]
      shown.append(_g(values) if len(values) == len(r["runs"]) else "—")
    for m in per_seed:
      shown.append(" / ".join(_num(run["metrics"][m], digits) if m in run["metrics"] else "—"
                              for run in r["runs"]))
    lines.append(f"| {r['setting']} | {_pm(r['paper'], r['paper_std'], digits)} | "
                 f"{_pm(r['mean'], r['std'], digits)} | {gap} | "
                 f"{len(r['runs'])} | {r['epochs']:.3g} |" + "".join(f" {x} |" for x in shown))
  floor = summary.get("floor")
  if floor:
    lines += ["", f"Real against real ({floor['net']} features; the floor a model could reach):",
              "", "| Sets | Images | FD | KID |", "|---|---|---|---|"]
    for name, what in (("train_vs_test", "training vs test images"),
                       ("halves", "the test split's two halves")):
      f = floor[name]
      lines.append(f"| {what} | {f['n'][0]:,} vs {f['n'][1]:,} | {f['fd']:.4g} | "
                   f"{f['kid']:.3g} ± {f['kid_std']:.2g} |")
  made = summary.get("made")
  if made:
    lines += ["", f"Made by `{made['command']}` on {made['machine']} (jax {made['jax']}, "
                  f"commit {made['commit']}, {made['date']})."]
  return "\n".join(lines) + "\n"


def provenance(argv: list[str]) -> dict:
  """What made a table: the command (with ``XLA_FLAGS`` if set), the machine, jax's
  version, the commit (and whether the tree had local changes), the date."""
  import datetime
  import platform
  import subprocess

  import jax
  model = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  dev = jax.devices()[0]
  machine = (f"{os.cpu_count()} CPU cores ({model})" if dev.platform == "cpu" else
             f"{jax.device_count()} x {dev.device_kind} ({os.cpu_count()} CPU cores)")
  here = os.path.dirname(os.path.abspath(__file__))

  def git(*args):
    try:
      return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True,
                            timeout=30)
    except (OSError, subprocess.SubprocessError):
      return None
  head = git("rev-parse", "--short", "HEAD")
  commit = head.stdout.strip() if head is not None and head.returncode == 0 else "unknown"
  dirty = git("diff", "--quiet", "HEAD", "--", ".")
  if commit != "unknown" and dirty is not None and dirty.returncode == 1:
    commit += " with local changes"
  env = [f"XLA_FLAGS={os.environ['XLA_FLAGS']}"] if os.environ.get("XLA_FLAGS") else []
  return {"command": " ".join([*env, "python experiments/reproduce.py", *argv[1:]]),
          "machine": machine, "jax": jax.__version__, "commit": commit,
          "date": datetime.date.today().isoformat()}


RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")


def readme_block(name: str) -> tuple[str, str]:
  """The markers around a published table ``name`` in the README."""
  return f"<!-- reproduce:{name} -->\n", f"<!-- /reproduce:{name} -->"


def publish(summary: dict, name: str, results_dir: str = RESULTS_DIR,
            readme: str = README) -> str:
  """Writes ``results_dir/<name>.md`` / ``.json`` and puts the table into the README.

  The README holds the table between ``<!-- reproduce:<name> -->`` and
  ``<!-- /reproduce:<name> -->``; tests/test_readme.py checks that every such block is
  the published file, and that the file is :func:`markdown` of its JSON. Returns the
  Markdown's path; raises ValueError when the README has no block of that name.
  """
  text = open(readme).read()
  start, end = readme_block(name)
  if start not in text or end not in text:
    raise ValueError(f"README {readme} has no block {start.strip()} ... {end}; add the two "
                     "markers where the table belongs and publish again.")
  md, _ = write_outputs(summary, results_dir, name)
  head, rest = text.split(start, 1)
  _, tail = rest.split(end, 1)
  with open(readme, "w") as f:
    f.write(head + start + markdown(summary) + end + tail)
  return md


def write_outputs(summary: dict, workdir: str, name: str | None = None) -> tuple[str, str]:
  """Writes ``<name>.md`` and ``<name>.json`` (name: the table's) into ``workdir``."""
  os.makedirs(workdir, exist_ok=True)
  name = name or summary["table"]
  md = os.path.join(workdir, f"{name}.md")
  js = os.path.join(workdir, f"{name}.json")
  with open(md, "w") as f:
    f.write(markdown(summary))
  with open(js, "w") as f:
    json.dump(summary, f, indent=2)
  return md, js


FLAGS = flags.FLAGS
flags.DEFINE_enum("table", None, sorted(TABLES), "Which table to reproduce.")
flags.DEFINE_string("workdir", None, "Directory for the runs and the table.")
flags.DEFINE_integer("seeds", 3, "Seeds per row (0, 1, ...).")
flags.DEFINE_float("epochs", None, "Epochs per run (default: the config's schedule).")
flags.DEFINE_list("rows", None, "Row keys to run (default: all).")
flags.DEFINE_integer("eval_every", None, "Evaluate every N steps (default: the config's); 0: "
                     "at each run's last step only, all a table reads.")
flags.DEFINE_bool("quick", False, "Tiny networks, 20 steps per run: a smoke test.")
flags.DEFINE_string("publish", None, "Also write experiments/results/NAME.md/.json and put the "
                    "table into the README between its reproduce:NAME markers.")


def main(argv):
  del argv
  if FLAGS.publish and FLAGS.quick:
    raise app.UsageError("--publish with --quick: a smoke run is not a measurement to publish.")
  logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint write at INFO.
  made = provenance(sys.argv)  # the code the runs start from
  summary = run_table(FLAGS.table, FLAGS.workdir, FLAGS.seeds, FLAGS.epochs, FLAGS.quick,
                      FLAGS.rows, FLAGS.eval_every)
  summary["made"] = made
  md, _ = write_outputs(summary, FLAGS.workdir)
  if FLAGS.publish:
    md = publish(summary, FLAGS.publish)
    print(f"published {md} and its README block")
  print(open(md).read())


if __name__ == "__main__":
  flags.mark_flags_as_required(["table", "workdir"])
  app.run(main)
