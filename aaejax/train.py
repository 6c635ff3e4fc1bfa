"""The training loop: data on device, one compiled call per step, eval, plots, checkpoints.

:func:`train_and_evaluate` is what ``experiments/main.py`` runs. It writes into
``workdir``: ``config.json``, ``metrics.jsonl`` (one JSON object per logging or
eval event), TensorBoard events in ``tb/``, ``checkpoints/`` and ``plots/``.
Re-running with the same ``workdir`` resumes from the latest checkpoint and ends
bit-identical to an uninterrupted run: data order is a function of
``(seed, epoch)`` and step randomness of ``fold_in(state.rng, step)``.

The pieces are shared: :func:`make_train_fn` is the compiled step (also what
``experiments/benchmark.py`` times), :func:`run_data` the data a model's step
needs (its training set and streams), :func:`loop` the shell (resume, log one
step late, evaluate, save, finish) that single runs and sweeps
(:func:`aaejax.sweeps.run_sweep`) both run.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from aaejax import (checkpoints, data, distributed, evaluation, figures, models, parallel,
                    plots)

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
  donated parameter and Adam moment before updating it in place.

  On CPU with ``vmapped=True`` (a sweep's step over stacked states), also no
  YNNPACK library fusions: XLA's default hands reductions and elementwise ops
  to YNNPACK subgraphs, and then materialises each of their inputs (every
  member's Bernoulli loss terms, one array per op) instead of fusing them into
  one loop, which slows sweeps down. A single model keeps them: there
  YNNPACK's matmuls and reductions are faster. Skipped where this jaxlib lacks
  the option. Elsewhere no options. The timings behind both: BENCHMARKS.md.
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


def add_streams(model, batch: dict, streams: Mapping[str, Mapping[str, jax.Array]] | None,
                rng: jax.Array) -> dict:
  """``batch`` plus each stream's draw (see :class:`aaejax.core.Stream`) as ``<name>_<key>``."""
  specs = model.streams()
  if set(specs) != set(streams or {}):
    raise ValueError(f"{type(model).__name__} needs the data streams {sorted(specs)}, got "
                     f"{sorted(streams or {})}.")
  for i, name in enumerate(sorted(specs)):
    arrays = streams[name]
    n = next(iter(arrays.values())).shape[0]
    idx = jax.random.randint(jax.random.fold_in(rng, 1 + i), (specs[name].batch_size,), 0, n)
    batch.update({f"{name}_{k}": jnp.take(v, idx, axis=0) for k, v in arrays.items()})
  return batch


def make_train_fn(model, batch_size: int, mesh=None, host_batches: bool = False,
                  jit: bool = True):
  """Jitted ``(state, arrays, perm, index, streams=None) -> (state, metrics)`` on device data.

  Gathers batch ``index`` of permutation ``perm`` on device, adds the model's
  streams (:func:`add_streams`, ``streams`` a dict name -> device arrays),
  shards the batch over the mesh's batch axis, and runs ``model.train_step``
  with ``fold_in(state.rng, step)``. The state's buffers are donated. With
  ``host_batches`` (multi-process runs) the function is ``(state, batch,
  streams=None)`` and takes the global batch already built
  (:meth:`aaejax.distributed.ProcessShardedDataset.batch`). With ``jit=False``
  it returns the unjitted ``(state, arrays, perm, index, streams=None)``
  function, for callers that transform it further (:mod:`aaejax.sweeps` vmaps it).
  """

  def train_fn(state, arrays, perm=None, index=None, streams=None):
    batch = dict(arrays) if host_batches else data.gather_batch(arrays, perm, index, batch_size)
    rng = jax.random.fold_in(state.rng, state.step)
    batch = add_streams(model, batch, streams, rng)
    if mesh is not None:
      batch = jax.lax.with_sharding_constraint(batch, parallel.batch_sharding(mesh))
    return model.train_step(state, batch, rng)

  if not jit:
    return train_fn
  if host_batches:
    return jit_step(lambda state, batch, streams=None: train_fn(state, batch, streams=streams))
  return jit_step(train_fn)


def load_splits(config) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
  """The config's train and test splits, on host."""
  data_dir = config.get("data_dir") or None
  return (data.load_numpy(config.dataset, "train", data_dir),
          data.load_numpy(config.dataset, "test", data_dir))


def run_data(model, train_np: Mapping[str, np.ndarray], seed: int
             ) -> tuple[Mapping[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
  """(the training set as the model's step sees it, its streams' arrays) for ``seed``.

  Streams select from the training set as loaded (e.g. before labels are hidden).
  """
  streams = {name: s.select(train_np, seed) for name, s in model.streams().items()}
  return model.train_data(train_np, seed), streams


def eval_subset(train_np: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The training examples evaluators use as a reference set (kNN, cluster labels)."""
  n = min(EVAL_TRAIN_CODES, next(iter(train_np.values())).shape[0])
  return {k: v[:n] for k, v in train_np.items()}


def _last_eval(path: str) -> dict:
  """The last eval event of ``metrics.jsonl`` (for a run with nothing left to train)."""
  last = {}
  if os.path.exists(path):
    for r in open(path):
      row = json.loads(r)
      if any(k.startswith("eval/") for k in row):
        last = row
  return last


def curves(workdir: str) -> str:
  """``plots/curves.png``: every metric of ``workdir/metrics.jsonl`` against the step."""
  rows = [json.loads(r) for r in open(os.path.join(workdir, "metrics.jsonl"))]
  return plots.loss_curves(os.path.join(workdir, "plots", "curves.png"), rows,
                           sorted({k for r in rows for k in r if k != "step"}))


def loop(config, *, state, ckpt: checkpoints.Checkpointer, workdirs: Sequence[str],
         train_step: Callable[[Any, int], tuple[Any, Any]],
         split: Callable[[Mapping], list[dict]],
         evaluate: Callable[[Any, int], list[dict]], desc: str, lead: bool = True):
  """The loop shell of single runs and sweeps: resume, train, log, evaluate, save.

  Args:
    config: ``num_steps``, ``log_every``, ``eval_every``, ``checkpoint_every``,
      ``disable_progress``.
    state: a fresh state (replaced by the latest checkpoint of ``ckpt`` if any).
    ckpt: the run's checkpointer.
    workdirs: one directory per member (one for a single run); each gets its
      ``metrics.jsonl`` and TensorBoard events.
    train_step: ``(state, step) -> (state, device metrics)``, dispatching step ``step``.
    split: device-fetched metrics -> one dict per member.
    evaluate: ``(state, step) -> [eval metrics per member]``.
    desc: the progress bar's label.
    lead: whether this process writes (process 0).

  Each ``log_every``-th step's metrics are logged one step late (after the next
  step is dispatched, so the host never waits for the device); evaluation runs
  every ``eval_every`` steps and at the last step, a checkpoint is saved every
  ``checkpoint_every`` steps and at the last step.

  Returns:
    ``(final state, last eval metrics per member)``.
  """
  resume_step = ckpt.latest_step()
  if resume_step is not None:
    state = ckpt.restore(state)
  writers = [MetricsWriter(d, resume_step) if lead else None for d in workdirs]
  step = int(np.ravel(jax.device_get(state.step))[0])
  last_eval: list[dict] = [{} for _ in workdirs]
  bar = tqdm.tqdm(total=config.num_steps, initial=step, dynamic_ncols=True, desc=desc,
                  disable=not lead or config.get("disable_progress", False))
  clock = [time.perf_counter(), step]  # start of the current timing window
  pending = None

  def log(s, m):
    rows = split(jax.device_get(m))
    now = time.perf_counter()
    rate = (s - clock[1]) / (now - clock[0])
    clock[:] = [now, s]
    for w, row in zip(writers, rows):
      if w is not None:
        w.write(s, {**{f"train/{k}": v for k, v in row.items()}, "train/steps_per_sec": rate})
    bar.set_postfix({k: f"{float(v):.3g}" for k, v in rows[0].items()
                     if k in ("recon_loss", "critic_loss", "gen_loss", "penalty", "loss")})

  try:
    while step < config.num_steps:
      state, metrics = train_step(state, step)
      step += 1
      bar.update(1)
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
        results = evaluate(state, step)
        for i, (w, r) in enumerate(zip(writers, results)):
          last_eval[i] = w.write(step, r) if w is not None else {"step": step, **r}
        bar.write(f"step {step}: " + ", ".join(f"{k}={v:.4g}" for k, v in results[0].items()))
        clock[:] = [time.perf_counter(), step]  # steps/s excludes evaluation
      if step % config.checkpoint_every == 0 or last:
        ckpt.save(step, state, force=True)
  finally:
    bar.close()
    ckpt.wait()
    ckpt.close()
    for w in writers:
      if w is not None:
        w.close()
  for i, d in enumerate(workdirs):
    if not last_eval[i] and lead:  # nothing left to train: the finished run's last eval
      last_eval[i] = _last_eval(os.path.join(d, "metrics.jsonl"))
  return state, last_eval


def write_config(config, workdir: str) -> None:
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def train_and_evaluate(config, workdir: str) -> dict[str, float]:
  """Trains ``config``'s model, evaluating, checkpointing and plotting into ``workdir``.

  Returns the last eval metrics.
  """
  _validate(config)
  os.makedirs(workdir, exist_ok=True)
  lead = jax.process_index() == 0
  if lead:
    write_config(config, workdir)

  mesh = parallel.make_mesh(config.get("num_devices") or None)
  parallel.check_batch_size(config.batch_size, mesh)
  replicated = parallel.replicated(mesh)
  train_np, test_np = load_splits(config)
  model = models.create(config, train_np["image"].shape[1:])
  train_np, streams_np = run_data(model, train_np, config.seed)
  # Several processes: the train set stays on host, each process sending its rows of each
  # batch; eval and plots use process-local copies (``local``), free of collectives.
  multi = parallel.is_multiprocess()
  local = jax.local_devices()[0] if multi else replicated
  train = (distributed.ProcessShardedDataset(train_np, mesh) if multi
           else data.DeviceDataset(train_np, replicated))
  streams = {k: data.DeviceDataset(v, replicated).arrays for k, v in streams_np.items()}
  test = data.DeviceDataset(test_np, local).arrays
  train_subset = data.DeviceDataset(eval_subset(train_np), local).arrays
  steps_per_epoch = train.steps_per_epoch(config.batch_size)
  evaluate = evaluation.Evaluation(model, config, test)

  init_rng, data_rng, eval_rng = jax.random.split(jax.random.key(config.seed), 3)
  state = jax.jit(model.init)(init_rng, models.hparams_from_config(model, config))
  state = parallel.replicate(state, mesh)
  ckpt = checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"), config.checkpoint_every,
                                  config.get("max_checkpoints", 3))
  train_fn = make_train_fn(model, config.batch_size, mesh, multi)
  perm_fn = jax.jit(data.epoch_permutation, static_argnums=2, out_shardings=replicated)
  order = {"epoch": None, "perm": None}

  def train_step(state, step):
    epoch = step // steps_per_epoch
    if epoch != order["epoch"]:
      order.update(epoch=epoch, perm=train.permutation(data_rng, epoch) if multi
                   else perm_fn(data_rng, epoch, train.num_examples))
    if multi:
      batch = train.batch(order["perm"], step % steps_per_epoch, config.batch_size)
      return train_fn(state, batch, streams)
    return train_fn(state, train.arrays, order["perm"], step % steps_per_epoch, streams)

  def evaluate_at(state, step):
    del step
    return [evaluate(parallel.local_copy(state) if multi else state, train_subset, eval_rng)]

  state, (last_eval,) = loop(config, state=state, ckpt=ckpt, workdirs=[workdir],
                             train_step=train_step, split=lambda m: [m],
                             evaluate=evaluate_at, desc=config.model, lead=lead)
  if lead and config.get("plots", True):
    figures.make_figures(model, parallel.local_copy(state) if multi else state,
                         os.path.join(workdir, "plots"), test, eval_rng)
    curves(workdir)
  return last_eval
