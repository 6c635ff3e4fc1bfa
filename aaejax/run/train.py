"""The training loop: data on device, one compiled call per step, eval, plots, checkpoints.

:func:`train_and_evaluate` is what ``experiments/main.py`` runs. It writes into
``workdir``: ``config.json``, ``metrics.jsonl`` (one JSON object per logging or
eval event), TensorBoard events in ``tb/``, ``checkpoints/`` and ``plots/``.
Re-running with the same ``workdir`` resumes from the latest checkpoint and ends
bit-identical to an uninterrupted run: data order is a function of
``(seed, epoch)`` and step randomness of ``fold_in(state.rng, step)``.

A run is built by :func:`aaejax.run.builder.build_run` (model, data, streams, mesh, the
compiled step); :func:`loop` is the shell (resume, log one step late, evaluate, save,
finish) that single runs and sweeps (:func:`aaejax.run.sweeps.run_sweep`) both run.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
import tqdm

from aaejax import data, models
from aaejax.core import config_checks
from aaejax.evaluation import figures, plots
from aaejax.run import builder, checkpoints, distributed, guards, history, parallel



class MetricsWriter:
  """Appends events to ``metrics.jsonl`` and TensorBoard; process 0 only.

  Opening drops every event past ``resume_step`` (0 for a run that starts from
  scratch) from both, so that whatever the history of kills and re-runs,
  ``metrics.jsonl`` holds each step once: the resumed run writes them again.
  """

  def __init__(self, workdir: str, resume_step: int | None):
    self.active = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    if not self.active:
      return
    keep = resume_step or 0
    if os.path.exists(self.path):
      with open(self.path) as f:
        rows = [r for r in f if _step_of(r) is not None and _step_of(r) <= keep]
      tmp = self.path + ".tmp"
      with open(tmp, "w") as f:
        f.writelines(rows)
      os.replace(tmp, self.path)
    from tensorboardX import SummaryWriter
    self.tb = SummaryWriter(os.path.join(workdir, "tb"), purge_step=keep + 1)

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


def _step_of(line: str) -> int | None:
  """The step of one ``metrics.jsonl`` line; None for a torn (half-written) line."""
  try:
    return int(json.loads(line)["step"])
  except (ValueError, KeyError, TypeError):
    return None


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
  """``plots/curves.png``: every metric of ``workdir/metrics.jsonl`` against the step, but
  the sample counts evaluators record beside their results (``eval/fd_samples``, ...)."""
  rows = [json.loads(r) for r in open(os.path.join(workdir, "metrics.jsonl"))]
  return plots.loss_curves(os.path.join(workdir, "plots", "curves.png"), rows,
                           sorted({k for r in rows for k in r
                                   if k != "step" and not k.endswith("_samples")}))


# Steps dispatched but not finished. Dispatch runs ahead of the device; bounding it keeps the
# host at most this many steps ahead. Unbounded, 8 CPU devices deadlocked: with dozens of
# 8-device steps queued, XLA:CPU's collective rendezvous timed out waiting for a participant.
MAX_STEPS_IN_FLIGHT = 2
POSTFIX_LIMIT = 4  # metrics on the progress bar


def loop(config, *, state, ckpt: checkpoints.Checkpointer, workdirs: Sequence[str],
         train_step: Callable[[Any, int], tuple[Any, Any]],
         split: Callable[[Mapping], list[dict]],
         evaluate: Callable[[Any, int, list[int]], list[dict]], desc: str, lead: bool = True,
         on_start: Callable[[int | None], None] | None = None, multiprocess: bool = False):
  """The loop shell of single runs and sweeps: resume, train, log, evaluate, save, stop.

  Args:
    config: ``num_steps``, ``log_every``, ``eval_every``, ``checkpoint_every``,
      ``disable_progress``, ``divergence_limit``.
    state: a fresh state. The newest checkpoint of ``ckpt`` that restores
      replaces it, except for its ``hparams``, which stay the fresh state's (the
      config's; equal to the checkpoint's unless the config changed on purpose).
    ckpt: the run's checkpointer.
    workdirs: one directory per member (one for a single run); each gets its
      ``metrics.jsonl`` and TensorBoard events.
    train_step: ``(state, step) -> (state, device metrics)``, dispatching step ``step``.
    split: device-fetched metrics -> one dict per member.
    evaluate: ``(state, step, members) -> [eval metrics of each member in members]``
      (the members that have not diverged).
    desc: the progress bar's label.
    lead: whether this process writes (process 0).
    on_start: called with the step resumed from (None: from scratch) before training.
    multiprocess: several processes run this loop together (preemption is agreed
      through JAX's preemption service).

  Each ``log_every``-th step's metrics are logged one step late (after the next
  step is dispatched, so the host never waits for the device), at most
  :data:`MAX_STEPS_IN_FLIGHT` steps run ahead, evaluation runs every
  ``eval_every`` steps and at the last step, a checkpoint is saved every
  ``checkpoint_every`` steps and at the last step. The run stops early with a
  :class:`aaejax.run.guards.RunStopped`: :class:`~aaejax.run.guards.Diverged` when a
  logged metric is non-finite or above ``divergence_limit`` in size, or the
  state is non-finite at a save (it is not saved); with several members (a
  sweep) a diverged member is only marked (its ``status`` in the returned
  metrics, its metrics and evaluation stop) until every member has diverged;
  :class:`~aaejax.run.guards.Preempted` after SIGTERM/SIGINT, once the state of the
  step in progress is saved; :class:`~aaejax.run.guards.CheckpointFailed` when a
  save fails.

  Returns:
    ``(final state, last eval metrics per member)``.
  """
  say = (lambda msg: tqdm.tqdm.write(msg)) if lead else (lambda msg: None)
  fresh = state
  state, resume_step = ckpt.restore_latest(fresh, log=say)
  if resume_step is not None:
    state = state.replace(hparams=fresh.hparams)
  del fresh
  if on_start is not None:
    on_start(resume_step)
  writers = [MetricsWriter(d, resume_step) if lead else None for d in workdirs]
  step = int(np.ravel(jax.device_get(state.step))[0])
  if resume_step is not None:
    say(f"{desc}: resumed from {os.path.join(ckpt.directory, str(resume_step))}"
        + (" (the run is complete)" if step >= config.num_steps else ""))
  limit = float(config.get("divergence_limit", guards.DEFAULT_DIVERGENCE_LIMIT))
  k = len(workdirs)
  status: list[str | None] = [None] * k  # why a member stopped
  last_eval: list[dict] = [{} for _ in workdirs]
  bar = tqdm.tqdm(total=config.num_steps, initial=step, dynamic_ncols=True, desc=desc,
                  disable=not lead or config.get("disable_progress", False))
  clock = [time.perf_counter(), step]  # start of the current timing window
  pending = None
  in_flight: collections.deque = collections.deque()

  def diverged(i, s, message, short):
    if k == 1:
      raise guards.Diverged(message)
    status[i] = short
    say(message)
    if all(status):
      raise guards.Diverged(f"every member of the sweep diverged (last: {message})")

  def log(s, m):
    rows = split(jax.device_get(m))
    now = time.perf_counter()
    rate = (s - clock[1]) / (now - clock[0])
    clock[:] = [now, s]
    for i, (w, row) in enumerate(zip(writers, rows)):
      if status[i] is not None:
        continue
      if w is not None:
        w.write(s, {**{f"train/{k}": v for k, v in row.items()}, "train/steps_per_sec": rate})
      bad = guards.bad_metric(row, limit)
      if bad is not None:
        name, value = f"train/{bad[0]}", bad[1]
        diverged(i, s, guards.divergence_message(s, name, value, limit, None if k == 1 else i),
                 f"diverged at step {s}: {name}={value:g}")
    bar.set_postfix({n: f"{float(v):.3g}" for n, v in postfix_metrics(rows[0]).items()})

  def save(s):
    if k == 1:
      guards.check_state(state, s)
    else:
      for i, ok in enumerate(guards.finite_members(state)):
        if not ok and status[i] is None:
          diverged(i, s, f"member {i}: training diverged by step {s}: its state holds "
                   "non-finite values", f"diverged by step {s}: non-finite state")
    ckpt.save(s, state, force=True)

  try:
    with guards.StopSignals(multiprocess) as signals:
      while step < config.num_steps:
        state, metrics = train_step(state, step)
        step += 1
        in_flight.append(metrics)
        if len(in_flight) > MAX_STEPS_IN_FLIGHT:
          jax.block_until_ready(in_flight.popleft())
        ckpt.check()
        bar.update(1)
        last = step == config.num_steps
        if pending is not None:
          log(*pending)
          pending = None
        if step % config.log_every == 0 or last:
          pending = (step, metrics)
        signum = signals.stop_requested(step)
        if step % config.eval_every == 0 or last or signum is not None:
          if pending is not None:
            log(*pending)
            pending = None
        if step % config.eval_every == 0 or last:
          members = [i for i in range(k) if status[i] is None]
          for i, r in zip(members, evaluate(state, step, members)):
            last_eval[i] = (writers[i].write(step, r) if writers[i] is not None
                            else {"step": step, **r})
          for i in members:
            bar.write(f"step {step}" + (f" member {i}" if k > 1 else "") + ": "
                      + ", ".join(f"{n}={v:.4g}" for n, v in last_eval[i].items()
                                  if n != "step"))
          clock[:] = [time.perf_counter(), step]  # steps/s excludes evaluation
        if step % config.checkpoint_every == 0 or last or signum is not None:
          save(step)
        if signum is not None:
          ckpt.wait()
          name = signal.Signals(signum).name
          raise guards.Preempted(
              f"preempted by {name} at step {step} of {config.num_steps}: saved checkpoint "
              f"{os.path.join(ckpt.directory, str(step))}; re-run the same command to resume.",
              signum)
  except BaseException:
    _shutdown(bar, ckpt, writers, quiet=True)
    raise
  _shutdown(bar, ckpt, writers, quiet=False)
  for i, d in enumerate(workdirs):
    if not last_eval[i] and lead:  # nothing left to train: the finished run's last eval
      last_eval[i] = _last_eval(os.path.join(d, "metrics.jsonl"))
    if status[i] is not None:
      last_eval[i] = {**last_eval[i], "status": status[i]}
  return state, last_eval


def postfix_metrics(row: dict, limit: int = POSTFIX_LIMIT) -> dict:
  """The progress bar's metrics of a step: the model's own losses (names holding "loss", and
  "penalty"), in its order, at most ``limit``; a model without any shows its first metrics.

  >>> postfix_metrics({"q_cat_acc": 1.0, "critic_loss": 0.7, "gen_loss": 1.2, "info_loss": 0.1})
  {'critic_loss': 0.7, 'gen_loss': 1.2, 'info_loss': 0.1}
  """
  losses = {n: v for n, v in row.items() if "loss" in n or n == "penalty"}
  return dict(list((losses or row).items())[:limit])


def _shutdown(bar, ckpt, writers, quiet: bool) -> None:
  """Closes the progress bar, the checkpointer (waiting for saves) and the writers.

  ``quiet``: another error is on its way up; a failing close must not hide it.
  """
  bar.close()
  try:
    ckpt.close()
  except Exception:  # noqa: BLE001
    if not quiet:
      raise
  finally:
    for w in writers:
      if w is not None:
        w.close()


def log_images(workdir: str, step: int, directory: str) -> None:
  """Adds every PNG of ``directory`` to ``workdir``'s TensorBoard events as ``plots/<name>``."""
  if jax.process_index() != 0 or not os.path.isdir(directory):
    return
  import matplotlib.image
  from tensorboardX import SummaryWriter
  with SummaryWriter(os.path.join(workdir, "tb")) as tb:
    for name in sorted(os.listdir(directory)):
      if name.endswith(".png"):
        img = matplotlib.image.imread(os.path.join(directory, name))
        tb.add_image(f"plots/{name[:-4]}", img[..., :3] if img.ndim == 3 else img, step,
                     dataformats="HWC" if img.ndim == 3 else "HW")


def describe(model, state, config, workdir: str, train_n: int, test_n: int) -> list[str]:
  """The startup lines: devices, data, model size, checkpoint size, workdir."""
  devices = jax.devices()[:config.get("num_devices") or None]
  kinds = collections.Counter(d.device_kind for d in devices)
  where = data.source(config.dataset, "train", config.get("data_dir") or None,
                      config.get("cache_dir") or None)
  sizes = {name: sum(x.size for x in jax.tree.leaves(p)) for name, p in state.params.items()}
  nbytes = sum(x.nbytes for x in jax.tree.leaves(state)
               if not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key))
  procs = f" in {jax.process_count()} processes" if jax.process_count() > 1 else ""
  return [
      f"{config.model}: {len(devices)} device(s){procs}: "
      + ", ".join(f"{n} x {kind}" for kind, n in kinds.items()) + f" ({jax.default_backend()})",
      f"{config.model}: data {config.dataset} from {where} ({train_n:,} train, {test_n:,} test)",
      f"{config.model}: parameters "
      + ", ".join(f"{name} {n:,}" for name, n in sizes.items())
      + f" ({sum(sizes.values()) / 1e6:.2f} M); a checkpoint holds {nbytes / 2**20:.1f} MiB",
      f"{config.model}: workdir {os.path.abspath(workdir)}",
  ]


def train_and_evaluate(config, workdir: str) -> dict[str, float]:
  """Trains ``config``'s model, evaluating, checkpointing and plotting into ``workdir``.

  A re-run with the same ``workdir`` resumes (see :mod:`aaejax.run.history` for the
  config changes that allows). The run stops early with a
  :class:`aaejax.run.guards.RunStopped` (divergence, a stop signal, a failed
  checkpoint) whose message says why and what is on disk.

  Returns the last eval metrics.
  """
  workdir = config_checks.check_workdir(workdir)
  run = builder.build_run(config)
  resuming = history.has_checkpoint(workdir)
  history.check(config, workdir, resuming)  # before anything in the workdir changes
  lead = jax.process_index() == 0
  say = print if lead else (lambda *a, **k: None)

  model, mesh, test_np = run.model, run.mesh, run.test
  replicated = parallel.replicated(mesh)
  train_np, streams_np = run.data(config.seed)
  # Several processes: the train set stays on host, each process sending its rows of each
  # batch; eval and plots use process-local copies (``local``), free of collectives.
  multi = parallel.is_multiprocess()
  local = jax.local_devices()[0] if multi else replicated
  train = (distributed.ProcessShardedDataset(train_np, mesh) if multi
           else data.DeviceDataset(train_np, replicated))
  streams = {k: data.DeviceDataset(v, replicated).arrays for k, v in streams_np.items()}
  evaluate = run.evaluation(local)
  test = evaluate.test
  train_subset = data.DeviceDataset(builder.eval_subset(train_np), local).arrays
  steps_per_epoch = train.steps_per_epoch(config.batch_size)

  init_rng, data_rng, eval_rng = jax.random.split(jax.random.key(config.seed), 3)
  state = jax.jit(model.init)(init_rng, models.hparams_from_config(model, config))
  state = parallel.replicate(state, mesh)
  for line in describe(model, state, config, workdir, len(train_np["image"]),
                       len(test_np["image"])):
    say(line, flush=True)
  evaluate.prepare(lambda line: say(f"{config.model}: {line}", flush=True))
  ckpt = checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"), config.checkpoint_every,
                                  config.get("max_checkpoints", 3))
  complete = (ckpt.latest_step() or 0) >= config.num_steps
  train_fn = builder.make_train_fn(model, config.batch_size, mesh, multi)
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

  def evaluate_at(state, step, members):
    del members
    return [evaluate(parallel.local_copy(state) if multi else state, train_subset, eval_rng,
                     final=step >= config.num_steps)]

  def on_start(step):
    if lead:
      history.record(config, workdir, step or 0)

  state, (last_eval,) = loop(config, state=state, ckpt=ckpt, workdirs=[workdir],
                             train_step=train_step, split=lambda m: [m],
                             evaluate=evaluate_at, desc=config.model, lead=lead,
                             on_start=on_start, multiprocess=multi)
  plots_dir = os.path.join(workdir, "plots")
  if lead and config.get("plots", True) and not (complete and os.path.isdir(plots_dir)):
    figures.make_figures(model, parallel.local_copy(state) if multi else state, plots_dir,
                         test, eval_rng, splits=evaluate.splits)
    curves(workdir)
    log_images(workdir, config.num_steps, plots_dir)
  shown = ", ".join(f"{k}={v:.4g}" for k, v in last_eval.items()
                    if k.startswith("eval/") and isinstance(v, float))
  say(f"{config.model}: {'already complete' if complete else 'done'}: step "
      f"{config.num_steps}: {shown or 'no eval metrics'}"
      + (f"; plots in {plots_dir}" if os.path.isdir(plots_dir) else ""), flush=True)
  return last_eval
