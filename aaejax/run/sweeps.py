"""Vmapped hyperparameter sweeps: K configurations trained as one compiled program.

Everything a sweep may vary is an array in the :class:`~aaejax.models.TrainState`
(``state.hparams``: learning rates, loss weights, prior and kernel scales; the
run's key ``state.rng``), so K members are one *stacked* state, a pytree whose
leaves have a leading member axis, and one train step ``jax.vmap``-ped over that
axis trains them all.

- :func:`vmap_step` lifts any ``(state, batch, rng) -> (state, metrics)`` step
  to stacked states; :func:`init_members`, :func:`stack_states` and
  :func:`member` build and slice stacked states.
- :func:`run_sweep` (what ``experiments/sweep.py`` runs) trains the Cartesian
  product of a grid of config fields on device-resident data and writes
  ``workdir/member_<i>/`` (``config.json``, ``metrics.jsonl``, TensorBoard
  events, plots) for each member, ``workdir/summary.md`` (one row per member,
  final eval metrics) and ``workdir/sweep.json``; stacked checkpoints in
  ``workdir/checkpoints`` make it resumable like a solo run.

Member ``i`` is the solo run (:func:`aaejax.run.train.train_and_evaluate`) of its
configuration: same init key, same data order (each member's permutation comes
from its own seed's data key), same per-step keys, same eval. It is not bitwise
equal on CPU: XLA compiles the vmapped program differently (other fusions, and
with :func:`aaejax.run.builder.compiler_options` ``(vmapped=True)`` other matmul
kernels), which moves a few parameters by an ulp per step; the tests
bound the difference after 25 steps (losses and eval metrics to ``rtol=1e-4``,
see ``tests/test_sweeps.py``).
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from aaejax import data, models
from aaejax.core import config_checks
from aaejax.evaluation import figures
from aaejax.run import builder, checkpoints, history, parallel, train

Grid = Mapping[str, Sequence[Any]]


# ---- stacked states -------------------------------------------------------------------


def vmap_step(train_step: Callable, in_axes: tuple = (0, None, 0)) -> Callable:
  """Lifts ``train_step(state, batch, rng) -> (state, metrics)`` to a batch of states.

  The returned step takes *stacked* states (every leaf with a leading member
  axis of size K, e.g. from :func:`init_members` or :func:`stack_states`) and
  returns the K updated states, stacked, and metrics of shape ``(K,)``. By
  default the batch is shared by every member and the keys are per member (a
  ``(K,)`` key array); ``in_axes`` (as for ``jax.vmap``, one entry per argument
  of ``train_step``, the first 0) says otherwise. Jit the result yourself
  (donating the states, e.g. with ``aaejax.run.builder.jit_step(step, vmapped=True)``,
  which also picks XLA options for vmapped programs): it is one program for all
  members. On CPU, a batch stacked per member (``in_axes``
  1 = 0, the same data ``jnp.broadcast_to`` K times) runs faster than a shared
  one: the matmuls become batched instead of transposing the stacked weights.

  Example:

    >>> import jax, jax.numpy as jnp
    >>> from aaejax import models
    >>> from aaejax.nets import networks
    >>> from aaejax.run import sweeps
    >>> model = models.WAE(image_shape=(28, 28, 1), latent_dim=8, penalty="mmd_imq",
    ...                    encoder=networks.MLPEncoder(8, (32,)),
    ...                    decoder=networks.MLPDecoder((28, 28, 1), (32,)))
    >>> states = sweeps.stack_states([model.init(jax.random.key(s), {"penalty_weight": lam})
    ...                               for s, lam in [(0, 1.0), (0, 10.0), (1, 10.0)]])
    >>> step = jax.jit(sweeps.vmap_step(model.train_step), donate_argnums=0)
    >>> batch = {"image": jnp.zeros((16, 28, 28, 1), jnp.uint8),
    ...          "label": jnp.zeros(16, jnp.int32)}
    >>> states, metrics = step(states, batch, jax.random.split(jax.random.key(1), 3))
    >>> metrics["penalty"].shape, states.hparams["penalty_weight"].tolist()
    ((3,), [1.0, 10.0, 10.0])
    >>> solo = sweeps.member(states, 2)   # member 2 as an ordinary state
  """
  if not in_axes or in_axes[0] != 0:
    raise ValueError(f"in_axes[0] must be 0 (the stacked states), got {in_axes}.")
  return jax.vmap(train_step, in_axes=in_axes)


def stack_states(states: Sequence[Any]) -> Any:
  """Stacks K pytrees of the same structure into one with a leading member axis."""
  if not states:
    raise ValueError("stack_states needs at least one state.")
  return jax.tree.map(lambda *xs: jnp.stack(xs), *states)


def num_members(states: Any) -> int:
  """K, the leading-axis size of stacked states."""
  return jax.tree.leaves(states)[0].shape[0]


@jax.jit
def member(states: Any, i: int | jax.Array) -> Any:
  """Member ``i`` of stacked states, as an ordinary (unstacked) state."""
  return jax.tree.map(lambda x: x[i], states)


def member_keys(seed: int) -> jax.Array:
  """``(init, data, eval)`` keys of a run with ``seed``, exactly as in :mod:`aaejax.run.train`."""
  return jax.random.split(jax.random.key(seed), 3)


def init_members(model, configs: Sequence[Mapping]) -> Any:
  """Stacked fresh states, member ``i`` initialised as a solo run of ``configs[i]``.

  Each member's init key comes from its ``seed`` and its hparams from its
  config (:func:`aaejax.models.hparams_from_config`). The configs must agree on
  everything that shapes ``model`` (only sweepable fields may differ).
  """
  init = jax.jit(model.init)  # as in a solo run
  return stack_states([init(member_keys(c["seed"])[0], models.hparams_from_config(model, c))
                       for c in configs])


# ---- grids ----------------------------------------------------------------------------


def _as_dict(config) -> dict:
  return dict(config_checks.plain(config))


def sweepable_fields(model, config=None) -> dict[str, str]:
  """Config fields a sweep may vary -> what they set: ``"seed"`` or an hparam name.

  The seed and the fields that set ``model``'s hparams, as the model declares
  them (:meth:`aaejax.core.Model.hparam_fields`: learning rates, loss weights such
  as λ = ``penalty_weight``, ``prior_scale``, ``kernel_scale``, ``critic_noise``…):
  arrays in the state, not trace constants. Fields that shape the model or the
  data (``latent_dim``, ``prior``, ``penalty``, ``batch_size``…) are not.
  """
  del config
  return {"seed": "seed", **{f: h for h, f in model.hparam_fields().items()}}


def _describe(fields: Mapping[str, str]) -> str:
  return ", ".join(name if name == target else f"{name} (-> {target})"
                   for name, target in fields.items())


def _parse_value(field: str, kind: type, value: Any) -> Any:
  if kind is int and isinstance(value, str):
    try:
      return int(value)
    except ValueError:
      raise ValueError(f"grid value {value!r} for {field} is not an int.") from None
  try:
    out = kind(value)
  except (TypeError, ValueError):
    raise ValueError(f"grid value {value!r} for {field} is not a {kind.__name__}.") from None
  if kind is int and out != value:
    raise ValueError(f"grid value {value!r} for {field} is not an int.")
  return out


def parse_grid(grid: Grid | Sequence[str], config, model) -> dict[str, list]:
  """Validates a grid; returns ``{field: [values…]}`` with values of the field's type.

  Args:
    grid: ``{"penalty_weight": [1, 10], …}`` or strings ``"FIELD=V1,V2,…"``
      (the ``--grid`` flags of ``experiments/sweep.py``).
    config: the base config; each value is parsed as its field's type.
    model: the model the config builds (its hparams decide what is sweepable).

  Raises:
    ValueError: for an empty grid or value list, a field given twice, a
      malformed entry or value, or a field that is not sweepable (the message
      lists the sweepable ones).
  """
  if isinstance(grid, str):
    grid = [grid]
  entries: list[tuple[str, Sequence[Any]]] = []
  if isinstance(grid, Mapping):
    entries = [(k, list(v) if isinstance(v, (list, tuple)) else [v]) for k, v in grid.items()]
  else:
    for spec in grid:
      field, sep, values = str(spec).partition("=")
      if not sep or not field.strip():
        raise ValueError(f"bad grid entry {spec!r}; expected FIELD=V1,V2,...")
      entries.append((field.strip(), [v.strip() for v in values.split(",")]))
  if not entries:
    raise ValueError("empty grid: give at least one FIELD=V1,V2,...")
  fields = sweepable_fields(model, config)
  out: dict[str, list] = {}
  cfg = _as_dict(config)
  for field, values in entries:
    if field in out:
      raise ValueError(f"grid field {field!r} given twice.")
    if field not in fields or field not in cfg:
      why = "is not a config field" if field not in cfg else (
          "shapes the model, the data or the loop, so it cannot vary inside one vmapped program")
      raise ValueError(f"cannot sweep {field!r}: it {why}. Sweepable fields of this "
                       f"{type(model).__name__} config: {_describe(fields)}.")
    if not values or any(v == "" for v in values):
      raise ValueError(f"grid field {field!r} has an empty value list or value: {values!r}.")
    out[field] = [_parse_value(field, type(cfg[field]), v) for v in values]
  return out


def member_configs(config, grid: Mapping[str, Sequence[Any]]) -> list:
  """The Cartesian product of ``grid`` applied to ``config`` (last field fastest)."""
  configs = []
  for values in itertools.product(*grid.values()):
    c = config.copy_and_resolve_references() if hasattr(config, "copy_and_resolve_references") \
        else dict(config)
    for field, value in zip(grid, values):
      c[field] = value
    configs.append(c)
  return configs


# ---- data shared by members, or stacked when they differ ---------------------------------


def _share_or_stack(dicts: Sequence[Mapping[str, np.ndarray]], sharding):
  """One device array per key when every member's is equal (axis None), else stacked (axis 0)."""
  arrays, axes = {}, {}
  for k, first in dicts[0].items():
    same = all(d[k] is first or np.array_equal(d[k], first) for d in dicts[1:])
    arrays[k] = jax.device_put(first if same else np.stack([d[k] for d in dicts]), sharding)
    axes[k] = None if same else 0
  return arrays, axes


def _dedupe(dicts: Sequence[Mapping[str, np.ndarray]], sharding) -> list[dict]:
  """Device copies of ``dicts``, equal ones sharing one copy."""
  out, seen = [], []
  for d in dicts:
    for host, dev in seen:
      if all(d[k] is host[k] or np.array_equal(d[k], host[k]) for k in d):
        out.append(dev)
        break
    else:
      dev = {k: jax.device_put(v, sharding) for k, v in d.items()}
      seen.append((d, dev))
      out.append(dev)
  return out


# ---- the sweep loop ---------------------------------------------------------------------


def _summary(path, config, grid, values, results):
  """``summary.md``: a row per member; the sample counts evaluators record beside their
  results (``eval/fd_samples``, ...), where equal in every member, are said once under the
  table instead of as columns."""
  keys = sorted({k for r in results for k in r if k not in ("step", "status")})
  same = [k for k in keys if k.endswith("_samples") and all(k in r for r in results)
          and len({repr(r[k]) for r in results}) == 1]
  keys = [k for k in keys if k not in same]
  if any("status" in r for r in results):  # a member diverged: say which, and when
    keys.append("status")
  fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
  lines = [f"# Sweep of `{config.model}`: {len(values)} members, {config.num_steps} steps", "",
           "| member | " + " | ".join(list(grid) + keys) + " |",
           "|" + "---|" * (1 + len(grid) + len(keys))]
  for i, (vals, res) in enumerate(zip(values, results)):
    cells = [fmt(vals[f]) for f in grid] + [
        fmt(res.get(k, "ok" if k == "status" else float("nan"))) for k in keys]
    lines.append(f"| {i} | " + " | ".join(cells) + " |")
  if same:
    lines += ["", "The same in every member: "
              + ", ".join(f"{k} = {fmt(results[0][k])}" for k in same) + "."]
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


def make_sweep_fn(model, batch_size: int, mesh, train_axes: Mapping[str, int | None],
                  perm_axis: int | None, stream_axes: Mapping[str, Mapping[str, int | None]]):
  """The sweep's step over stacked states: :func:`vmap_step` of the training loop's step.

  ``(states, arrays, perm, index, streams) -> (states, metrics)``, each member
  running :func:`aaejax.run.builder.make_train_fn`'s step; ``train_axes``,
  ``perm_axis`` and ``stream_axes`` say which inputs are stacked per member (0)
  or shared (None). Jit it with ``aaejax.run.builder.jit_step(..., vmapped=True)``;
  ``experiments/benchmark.py`` times this same function.
  """
  step_fn = builder.make_train_fn(model, batch_size, mesh, jit=False)
  return vmap_step(step_fn, (0, dict(train_axes), perm_axis, None,
                             {k: dict(v) for k, v in stream_axes.items()}))


def run_sweep(config, grid: Grid | Sequence[str], workdir: str) -> list[dict[str, float]]:
  """Trains every configuration of ``grid`` over ``config`` as one vmapped program.

  Args:
    config: the base config (as for :func:`aaejax.run.train.train_and_evaluate`).
    grid: ``{field: values}`` or ``"FIELD=V1,V2,…"`` strings; see :func:`parse_grid`.
    workdir: output directory: ``member_<i>/`` per member, ``summary.md``,
      ``sweep.json``, ``checkpoints/`` (stacked states). Re-running with the
      same workdir and grid resumes from the latest checkpoint.

  Returns:
    Each member's last eval metrics, in member order.
  """
  if parallel.is_multiprocess():
    raise ValueError("sweeps run in one process; use jax.distributed for one model instead.")
  run = builder.build_run(config)
  model, mesh, train_np = run.model, run.mesh, run.train
  replicated = parallel.replicated(mesh)
  grid = parse_grid(grid, config, model)
  configs = member_configs(config, grid)
  values = [dict(zip(grid, v)) for v in itertools.product(*grid.values())]
  k = len(configs)

  workdir = config_checks.check_workdir(workdir)
  history.check(config, workdir, history.has_checkpoint(workdir))  # before anything changes
  os.makedirs(workdir, exist_ok=True)
  sweep_json = os.path.join(workdir, "sweep.json")
  manifest = {"model": config.model, "grid": grid,
              "members": [{"member": i, "dir": f"member_{i}", "values": v}
                          for i, v in enumerate(values)]}
  if os.path.exists(sweep_json):
    with open(sweep_json) as f:
      if json.load(f)["members"] != json.loads(json.dumps(manifest["members"])):
        raise ValueError(f"{workdir} holds a different sweep ({sweep_json}); use a new workdir.")
  with open(sweep_json, "w") as f:
    json.dump(manifest, f, indent=2)
  dirs = [os.path.join(workdir, f"member_{i}") for i in range(k)]

  # Data: as in a solo run, per member (a model may relabel the training set per seed);
  # arrays equal across members are stored once and broadcast by the vmap.
  prepared = [run.data(c.seed) for c in configs]
  train_arrays, train_axes = _share_or_stack([p[0] for p in prepared], replicated)
  streams, stream_axes = {}, {}
  for name in model.streams():
    streams[name], stream_axes[name] = _share_or_stack([p[1][name] for p in prepared],
                                                       replicated)
  num_train = train_np["image"].shape[0]
  if not 0 < config.batch_size <= num_train:
    raise ValueError(f"batch_size={config.batch_size} must be in [1, {num_train}]")
  steps_per_epoch = num_train // config.batch_size
  subsets = _dedupe([builder.eval_subset(p[0]) for p in prepared], replicated)
  evaluate = run.evaluation(replicated)
  test = evaluate.test

  keys = [member_keys(c.seed) for c in configs]
  seeds = [c.seed for c in configs]
  # Members with one seed share the data order. On CPU each still gets its own copy of the
  # permutation (so its own batch): with one batch shared by all, XLA transposes the stacked
  # weights for every first-layer matmul and its weight gradient; per-member batches make
  # them batched matmuls, which is faster (timings: BENCHMARKS.md).
  shared_order = len(set(seeds)) == 1 and jax.default_backend() != "cpu"
  states = jax.device_put(init_members(model, configs), replicated)
  for line in train.describe(model, member(states, 0), config, workdir, num_train,
                             len(test["image"])):
    print(line.replace("a checkpoint holds", "a member's state holds"), flush=True)
  print(f"{config.model}: sweep of {k} members over "
        + ", ".join(f"{f}={list(v)}" for f, v in grid.items())
        + f" (metrics and figures in {os.path.join(workdir, 'member_<i>')})", flush=True)
  evaluate.prepare(lambda line: print(f"{config.model}: {line}", flush=True))
  ckpt = checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"), config.checkpoint_every,
                                  config.get("max_checkpoints", 3))
  sweep_fn = builder.jit_step(make_sweep_fn(model, config.batch_size, mesh, train_axes,
                                          None if shared_order else 0, stream_axes),
                            vmapped=True)
  perm_fn = jax.jit(data.epoch_permutation, static_argnums=2, out_shardings=replicated)
  order = {"epoch": None, "perm": None}

  def permutations(epoch):
    by_seed = {s: perm_fn(keys[i][1], epoch, num_train) for i, s in enumerate(seeds)
               if i == seeds.index(s)}
    return by_seed[seeds[0]] if shared_order else jnp.stack([by_seed[s] for s in seeds])

  def train_step(states, step):
    epoch = step // steps_per_epoch
    if epoch != order["epoch"]:
      order.update(epoch=epoch, perm=permutations(epoch))
    return sweep_fn(states, train_arrays, order["perm"], step % steps_per_epoch, streams)

  def evaluate_at(states, step, members):
    final = step >= config.num_steps
    return [evaluate(member(states, i), subsets[i], keys[i][2], final=final) for i in members]

  def on_start(step):
    history.record(config, workdir, step or 0)
    for d, c in zip(dirs, configs):
      history.record(c, d, step or 0)

  states, last_eval = train.loop(
      config, state=states, ckpt=ckpt, workdirs=dirs, train_step=train_step,
      split=lambda m: [{n: v[i] for n, v in m.items()} for i in range(k)],
      evaluate=evaluate_at, desc=f"{config.model} x{k}", on_start=on_start)
  if config.get("plots", True):
    for i, d in enumerate(dirs):
      if "status" not in last_eval[i]:  # a diverged member has nothing to draw
        figures.make_figures(model, member(states, i), os.path.join(d, "plots"), test,
                             keys[i][2], splits=evaluate.splits)
        train.curves(d)
  _summary(os.path.join(workdir, "summary.md"), config, grid, values, last_eval)
  return last_eval
