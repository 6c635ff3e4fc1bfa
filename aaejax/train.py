"""The training loop: data on device, one compiled call per step, eval, plots, checkpoints.

:func:`train_and_evaluate` is what ``experiments/main.py`` runs. It writes into
``workdir``: ``config.json``, ``metrics.jsonl`` (one JSON object per logging or
eval event), TensorBoard events in ``tb/``, ``checkpoints/`` and ``plots/``.
Re-running with the same ``workdir`` resumes from the latest checkpoint and ends
bit-identical to an uninterrupted run: data order is a function of
``(seed, epoch)`` and step randomness of ``fold_in(state.rng, step)``.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from aaejax import checkpoints, data, distributed, metrics, models, parallel, plots

EVAL_TRAIN_CODES = 10_000  # training codes that the kNN classifier searches


def _validate(config) -> None:
  for field in ("num_steps", "batch_size", "log_every", "eval_every", "checkpoint_every"):
    if int(config[field]) < 1:
      raise ValueError(f"config.{field} must be >= 1, got {config[field]}.")
  if config.dataset not in data.SUPPORTED_DATASETS:
    raise ValueError(f"unknown dataset {config.dataset!r}; supported: {data.SUPPORTED_DATASETS}.")


class MetricsWriter:
  """Appends events to ``metrics.jsonl`` and TensorBoard; process 0 only."""

  def __init__(self, workdir: str, resume_step: int | None):
    self.active = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    if not self.active:
      return
    if resume_step is not None and os.path.exists(self.path):
      # Drop events past the checkpoint: the resumed run writes them again.
      with open(self.path) as f:
        rows = [r for r in f if json.loads(r)["step"] <= resume_step]
      with open(self.path, "w") as f:
        f.writelines(rows)
    from tensorboardX import SummaryWriter
    self.tb = SummaryWriter(os.path.join(workdir, "tb"))

  def write(self, step: int, scalars: Mapping[str, Any]) -> dict:
    row = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
    if self.active:
      with open(self.path, "a") as f:
        f.write(json.dumps(row) + "\n")
      for k, v in row.items():
        if k != "step":
          self.tb.add_scalar(k, v, step)
      self.tb.flush()
    return row

  def close(self):
    if self.active:
      self.tb.close()


def jit_step(fn, donate_argnums=0, *, vmapped: bool = False, **kwargs):
  """``jax.jit(fn)`` for train steps: the state's buffers donated, plus :func:`compiler_options`.

  Use it (or pass :func:`compiler_options` to your own ``jax.jit``) for steps
  that update their state in place; ``vmapped=True`` for a step lifted to
  stacked states (:func:`aaejax.sweeps.vmap_step`). JAX takes compiler options
  on top-level jits only: wrap the outermost function (do not call the result
  inside another ``jax.jit`` or ``jax.make_jaxpr``).
  """
  return jax.jit(fn, donate_argnums=donate_argnums, compiler_options=compiler_options(vmapped),
                 **kwargs)


# XLA:CPU's YNNPACK library fusions (dots, reductions, elementwise ops); "" turns them all off.
_YNN_FUSION_OPTION = "xla_cpu_experimental_ynn_fusion_type"


def compiler_options(vmapped: bool = False) -> dict[str, Any]:
  """XLA options for train steps on this backend.

  On CPU, copy insertion with region analysis: without it XLA copies every
  donated parameter and Adam moment before updating it in place (the anchor
  AAE step of ``experiments/benchmark.py``, 2-core CPU: 31.4 ms without,
  27.3 ms with, medians of 7 interleaved windows).

  On CPU with ``vmapped=True`` (a sweep's step over stacked states), also no
  YNNPACK library fusions: XLA's default hands reductions and elementwise ops
  to YNNPACK subgraphs, and then materialises each of their inputs (every
  member's Bernoulli loss terms, one array per op) instead of fusing them into
  one loop. K=16 small models of ``experiments/benchmark.py --hidden=128
  --critic_hidden=128 --sweep=16``, samples/s with / without (medians of 9
  interleaved windows): WAE-MMD IMQ 46,785 / 72,859, RBF 58,488 / 63,875,
  WAE-GAN 68,101 / 80,239, AAE 50,472 / 52,385. A single model keeps them
  (anchor AAE 2,825 / 2,694, WAE-MMD IMQ 6,624 / 5,543 samples/s). Skipped
  where this jaxlib lacks the option. Elsewhere no options.
  """
  if jax.default_backend() != "cpu":
    return {}
  options: dict[str, Any] = {"xla_cpu_copy_insertion_use_region_analysis": True}
  if vmapped and _accepts_option(_YNN_FUSION_OPTION, ""):
    options[_YNN_FUSION_OPTION] = ""
  return options


@functools.cache
def _accepts_option(name: str, value: Any) -> bool:
  """Whether this backend's compiler takes option ``name=value`` (one tiny compile)."""
  try:
    jax.jit(lambda x: x + 1, compiler_options={name: value}).lower(jnp.zeros(())).compile()
  except Exception:  # noqa: BLE001 — an older or newer jaxlib without the option
    return False
  return True


def make_train_fn(model, batch_size: int, mesh=None, labeled_batch_size: int = 0,
                  host_batches: bool = False, jit: bool = True):
  """Jitted ``(state, arrays, perm, index, labeled=None) -> (state, metrics)`` on device data.

  Gathers batch ``index`` of permutation ``perm`` on device, shards it over the
  mesh's batch axis, and runs ``model.train_step`` with ``fold_in(state.rng, step)``.
  With ``labeled`` (a dict of arrays, e.g. the labelled subset of a
  semi-supervised run), it also draws ``labeled_batch_size`` examples of it
  uniformly (key ``fold_in(step_rng, 1)``) into the batch as ``labeled_<name>``.
  The state's buffers are donated. With ``host_batches`` (multi-process runs)
  the function is ``(state, batch, labeled=None)`` and takes the global batch
  already built (:meth:`aaejax.distributed.ProcessShardedDataset.batch`).
  With ``jit=False`` it returns the unjitted ``(state, arrays, perm, index,
  labeled=None)`` function, for callers that transform it further
  (:mod:`aaejax.sweeps` vmaps it over stacked states).
  """

  def train_fn(state, arrays, perm=None, index=None, labeled=None):
    batch = dict(arrays) if host_batches else data.gather_batch(arrays, perm, index, batch_size)
    rng = jax.random.fold_in(state.rng, state.step)
    if labeled is not None:
      n = next(iter(labeled.values())).shape[0]
      idx = jax.random.randint(jax.random.fold_in(rng, 1), (labeled_batch_size,), 0, n)
      batch.update({f"labeled_{k}": jnp.take(v, idx, axis=0) for k, v in labeled.items()})
    if mesh is not None:
      batch = jax.lax.with_sharding_constraint(batch, parallel.batch_sharding(mesh))
    return model.train_step(state, batch, rng)

  if not jit:
    return train_fn
  if host_batches:
    return jit_step(lambda state, batch, labeled=None: train_fn(state, batch, labeled=labeled))
  return jit_step(train_fn)


def _batched(fn, arrays, batch_size):
  """Applies jittable ``fn(batch) -> dict`` over the leading axis in chunks, on device."""
  n = next(iter(arrays.values())).shape[0]
  usable = n - n % batch_size
  chunks = jax.tree.map(lambda a: a[:usable].reshape(-1, batch_size, *a.shape[1:]), arrays)
  out = jax.lax.map(fn, chunks)
  out = jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), out)
  if usable < n:
    rest = fn(jax.tree.map(lambda a: a[usable:], arrays))
    out = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), out, rest)
  return out


def make_eval_fn(model, eval_batch_size: int = 500):
  """Jitted ``(state, test_arrays, train_arrays, rng) -> per-example outputs``."""

  @jax.jit
  def eval_fn(state, test, train, rng):
    fn = functools.partial(model.eval_batch, state)
    test_out = _batched(fn, test, eval_batch_size)
    train_out = _batched(fn, train, eval_batch_size)
    n = test_out["z"].shape[0]
    return {"test": test_out, "train_z": train_out["z"],
            "prior": model.sample_prior(state, rng, n)}

  return eval_fn


def evaluate(model, state, eval_fn, test, train_subset, rng) -> dict[str, float]:
  """``eval/…`` metrics on the test split (see the README's table of metrics)."""
  out = eval_fn(state, test, train_subset, rng)
  t = out["test"]
  result = {
      "eval/recon_loss": float(jnp.mean(t["recon_loss"])),
      "eval/mmd_to_prior": float(metrics.mmd_imq_blockwise(t["z"], out["prior"])),
  }
  # Training examples that a model relabelled as unlabelled (label < 0) do not vote.
  labelled = np.asarray(train_subset["label"]) >= 0
  if labelled.sum() >= 5:
    result["eval/knn_accuracy"] = metrics.knn_accuracy(
        out["train_z"][labelled], train_subset["label"][labelled], t["z"], test["label"], k=5)
  extra = getattr(model, "eval_metrics", None)
  if extra is not None:
    result.update(extra(state, out, test, train_subset))
  return result


def make_plots(model, state, workdir, test, rng, num_examples: int = 5000) -> list[str]:
  """The paper-style figures of a trained model, in ``workdir/plots``."""
  d = os.path.join(workdir, "plots")
  r = jax.random.split(rng, 3)
  images = test["image"][:num_examples]
  labels = np.asarray(test["label"][:num_examples])
  heads = jax.jit(model.encode)(state, images)
  z = np.asarray(model.latent(heads))
  prior_labels = (jax.random.randint(r[0], (num_examples,), 0, model.prior.num_classes)
                  if getattr(model.prior, "num_classes", None) else None)
  pz = np.asarray(model.sample_prior(state, r[1], num_examples, prior_labels))
  paths = [plots.latent_scatter(os.path.join(d, "latent_qz.png"), z, labels, title="q(z), test set"),
           plots.prior_scatter(os.path.join(d, "prior_pz.png"), pz,
                               None if prior_labels is None else np.asarray(prior_labels))]
  decode = jax.jit(model.decode)
  if model.decoder_input_dim() == 2:
    n = 20
    if isinstance(model.prior, models.base.priors_lib.Gaussian):
      grid = plots.gaussian_percentile_grid(n, std=float(state.hparams["prior_scale"])
                                            * model.prior.std)
    else:
      lo, hi = np.percentile(pz, [1, 99], axis=0)
      grid = plots.box_grid(n, lo, hi)
    paths.append(plots.manifold(os.path.join(d, "manifold.png"),
                                np.asarray(decode(state, jnp.asarray(grid, jnp.float32))), n,
                                title="decoded grid"))
  originals = np.asarray(data.to_float(images[:50]))
  recons = np.asarray(decode(state, model.decoder_input(heads, jnp.asarray(labels))[:50]))
  pairs = np.stack([originals, recons], 1).reshape(-1, *originals.shape[1:])
  paths.append(plots.image_grid(os.path.join(d, "reconstructions.png"), pairs, 10,
                                title="test images (odd columns) and reconstructions (even)"))
  paths.append(plots.image_grid(os.path.join(d, "samples.png"),
                                np.asarray(model.generate(state, r[2], 100)), 10,
                                title="decoded prior samples"))
  extra = getattr(model, "extra_plots", None)
  if extra is not None:
    paths.extend(extra(state, d, test, rng))
  return paths


def run_steps(config, step: int, train_step, log, evaluate_at, save) -> None:
  """The loop's schedule, shared by single runs and sweeps.

  Runs ``train_step(step) -> device metrics`` until ``config.num_steps``;
  ``log(step, metrics)`` gets each ``log_every``-th step's metrics one step late
  (after the next step is dispatched, so the host never waits for the device);
  ``evaluate_at(step)`` and ``save(step)`` run every ``eval_every`` and
  ``checkpoint_every`` steps and at the last step.
  """
  pending = None
  while step < config.num_steps:
    metrics = train_step(step)
    step += 1
    last = step == config.num_steps
    if pending is not None:
      log(*pending)
      pending = None
    if step % config.log_every == 0 or last:
      pending = (step, metrics)
    if step % config.eval_every == 0 or last:
      if pending is not None:
        log(*pending)
        pending = None
      evaluate_at(step)
    if step % config.checkpoint_every == 0 or last:
      save(step)


def train_and_evaluate(config, workdir: str) -> dict[str, float]:
  """Trains ``config``'s model, evaluating, checkpointing and plotting into ``workdir``.

  Returns the last eval metrics.
  """
  _validate(config)
  os.makedirs(workdir, exist_ok=True)
  lead = jax.process_index() == 0
  if lead:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))

  mesh = parallel.make_mesh(config.get("num_devices") or None)
  parallel.check_batch_size(config.batch_size, mesh)
  replicated = parallel.replicated(mesh)
  train_np = data.load_numpy(config.dataset, "train", config.get("data_dir") or None)
  test_np = data.load_numpy(config.dataset, "test", config.get("data_dir") or None)
  model = models.create(config, train_np["image"].shape[1:])
  # A model may relabel the training set (e.g. mark unlabelled examples with label -1)
  # and name a labelled subset that each step samples from (``labeled_*`` batch keys).
  prepare = getattr(model, "prepare_train_data", None)
  train_np, labeled_np = prepare(train_np, config) if prepare else (train_np, None)
  # Several processes: the train set stays on host, each process sending its rows of each
  # batch; eval and plots use process-local copies (``local``), free of collectives.
  multi = parallel.is_multiprocess()
  local = jax.local_devices()[0] if multi else replicated
  train = (distributed.ProcessShardedDataset(train_np, mesh) if multi
           else data.DeviceDataset(train_np, replicated))
  labeled = data.DeviceDataset(labeled_np, replicated).arrays if labeled_np else None
  test = data.DeviceDataset(test_np, local).arrays
  steps_per_epoch = train.steps_per_epoch(config.batch_size)

  root = jax.random.key(config.seed)
  init_rng, data_rng, eval_rng = jax.random.split(root, 3)
  state = jax.jit(model.init)(init_rng, models.hparams_from_config(model, config))
  state = parallel.replicate(state, mesh)
  ckpt = checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"), config.checkpoint_every,
                                  config.get("max_checkpoints", 3))
  resume_step = ckpt.latest_step()
  if resume_step is not None:
    state = ckpt.restore(state)
  writer = MetricsWriter(workdir, resume_step)

  train_fn = make_train_fn(model, config.batch_size, mesh,
                           getattr(model, "labeled_batch_size", config.batch_size), multi)
  perm_fn = jax.jit(data.epoch_permutation, static_argnums=2, out_shardings=replicated)
  eval_fn = make_eval_fn(model)
  n_eval_train = min(EVAL_TRAIN_CODES, train.num_examples)
  train_subset = data.DeviceDataset({k: v[:n_eval_train] for k, v in train_np.items()},
                                    local).arrays

  step = int(state.step)
  last_eval: dict[str, float] = {}
  bar = tqdm.tqdm(total=config.num_steps, initial=step, disable=not lead or config.get(
      "disable_progress", False), dynamic_ncols=True, desc=config.model)
  clock = [time.perf_counter(), step]  # start of the current timing window
  holder = {"state": state, "epoch": None, "perm": None}

  def one_step(step):
    if step // steps_per_epoch != holder["epoch"]:
      holder["epoch"] = epoch = step // steps_per_epoch
      holder["perm"] = (train.permutation(data_rng, epoch) if multi
                        else perm_fn(data_rng, epoch, train.num_examples))
    if multi:
      batch = train.batch(holder["perm"], step % steps_per_epoch, config.batch_size)
      holder["state"], metrics = train_fn(holder["state"], batch, labeled)
    else:
      holder["state"], metrics = train_fn(holder["state"], train.arrays, holder["perm"],
                                          step % steps_per_epoch, labeled)
    bar.update(1)
    return metrics

  def log(s, m):
    row = {f"train/{k}": v for k, v in jax.device_get(m).items()}
    now = time.perf_counter()
    row["train/steps_per_sec"] = (s - clock[1]) / (now - clock[0])
    clock[:] = [now, s]
    writer.write(s, row)
    bar.set_postfix({k.split("/")[1]: f"{v:.3g}" for k, v in row.items()
                     if k.split("/")[1] in ("recon_loss", "critic_loss", "gen_loss", "penalty")})

  def evaluate_at(s):
    nonlocal last_eval
    st = holder["state"]
    last_eval = writer.write(s, evaluate(model, parallel.local_copy(st) if multi else st,
                                         eval_fn, test, train_subset, eval_rng))
    bar.write(f"step {s}: " + ", ".join(f"{k}={v:.4g}" for k, v in last_eval.items()
                                        if k != "step"))
    clock[:] = [time.perf_counter(), s]  # steps/s excludes evaluation

  run_steps(config, step, one_step, log, evaluate_at,
            lambda s: ckpt.save(s, holder["state"], force=True))
  state = holder["state"]
  bar.close()
  ckpt.wait()
  ckpt.close()
  if lead and config.get("plots", True):
    make_plots(model, parallel.local_copy(state) if multi else state, workdir, test, eval_rng)
    rows = [json.loads(r) for r in open(writer.path)]
    plots.loss_curves(os.path.join(workdir, "plots", "curves.png"), rows,
                      sorted({k for r in rows for k in r if k != "step"}))
  writer.close()
  if not last_eval and lead and os.path.exists(writer.path):
    # Nothing left to train: report the last eval event of the finished run.
    for r in open(writer.path):
      row = json.loads(r)
      if any(k.startswith("eval/") for k in row):
        last_eval = row
  return last_eval
