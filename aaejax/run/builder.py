"""The run builder: what a run of a config is made of, built once, and its compiled step.

:func:`build_run` checks the config, builds the model once, and loads the data its step
needs (the training set, the streams' sources, the eval splits) and the device mesh: the
training loop, sweeps, the benchmark and the tools all start from it. :func:`make_train_fn`
is the compiled step (also what ``experiments/benchmark.py`` times), :func:`run_data` the
device arrays a model's step reads (its training set and streams), :func:`jit_step` the
``jax.jit`` of train steps with :func:`compiler_options`.
"""


from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from aaejax import core, data, evaluation, models
from aaejax.run import guards, parallel


EVAL_TRAIN_CODES = 10_000  # training codes that the kNN classifier searches


def _validate(config):
  """Checks every field of ``config`` and builds its model (:class:`ConfigError`); returns it."""
  model = models.check(config)
  for field in ("num_steps", "batch_size", "log_every", "eval_every", "checkpoint_every",
                "max_checkpoints"):
    if field in config and int(config[field]) < 1:
      raise ValueError(f"config.{field} must be >= 1, got {config[field]}.")
  if not float(config.get("divergence_limit", guards.DEFAULT_DIVERGENCE_LIMIT)) > 0:
    raise ValueError(f"config.divergence_limit must be > 0 (inf: off), got "
                     f"{config.divergence_limit}.")
  if config.dataset not in data.SUPPORTED_DATASETS:
    raise ValueError(f"unknown dataset {config.dataset!r}; supported: {data.SUPPORTED_DATASETS}.")
  return model


def jit_step(fn, donate_argnums=0, *, vmapped: bool = False, **kwargs):
  """``jax.jit(fn)`` for train steps: the state's buffers donated, plus :func:`compiler_options`.

  Use it (or pass :func:`compiler_options` to your own ``jax.jit``) for steps
  that update their state in place; ``vmapped=True`` for a step lifted to
  stacked states (:func:`aaejax.run.sweeps.vmap_step`). JAX takes compiler options
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
  (:meth:`aaejax.run.distributed.ProcessShardedDataset.batch`). With ``jit=False``
  it returns the unjitted ``(state, arrays, perm, index, streams=None)``
  function, for callers that transform it further (:mod:`aaejax.run.sweeps` vmaps it).
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


def load_source(config, dataset: str | None, split: str) -> dict[str, np.ndarray]:
  """Split ``split`` of ``dataset`` (None: ``config.dataset``) on host, from the config's
  ``data_dir`` / ``cache_dir``."""
  return data.load_numpy(dataset or config.dataset, split, data_dir=config.get("data_dir") or None,
                         cache_dir=config.get("cache_dir") or None,
                         download=config.get("download", True))


def load_splits(config) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
  """The config's train and test splits, on host."""
  return load_source(config, None, "train"), load_source(config, None, "test")


def stream_sources(model, config, train_np: Mapping[str, np.ndarray]
                   ) -> dict[tuple[str | None, str], Mapping[str, np.ndarray]]:
  """The host arrays the model's streams draw from, by (data set, split): the run's own
  training split as ``(None, "train")``, any other source loaded and checked."""
  sources: dict = {(None, "train"): train_np}
  for name, stream in sorted(model.streams().items()):
    key = (stream.dataset, stream.split)
    if key in sources:
      continue
    if stream.dataset == config.dataset and stream.split == "train":
      sources[key] = train_np
      continue
    arrays = load_source(config, *key)
    _check_source(arrays, stream.image_shape or getattr(model, "image_shape", None),
                  f"stream {name!r}: {stream.dataset or config.dataset} {stream.split}")
    sources[key] = arrays
  return sources


def _check_source(arrays, image_shape, where: str) -> None:
  try:
    core.check_batch(arrays, image_shape, where=where)
  except ValueError as e:
    raise data.DataFileError(str(e)) from e


def eval_splits(model, config, test_np: Mapping[str, np.ndarray]
                ) -> dict[str, dict[str, np.ndarray]]:
  """The host arrays of the model's eval splits but ``"test"`` (:meth:`Model.eval_splits`)."""
  out = {}
  for name, (dataset, split) in sorted(model.eval_splits().items()):
    if name == "test":
      continue
    arrays = load_source(config, dataset, split)
    _check_source(arrays, None, f"eval split {name!r}: {dataset or config.dataset} {split}")
    out[name] = arrays
  del test_np
  return out


def check_data(model, config, splits: Sequence[Mapping[str, np.ndarray]]) -> None:
  """Checks the loaded splits' values for ``model`` once, on host, before training.

  Raises ``aaejax.data.DataFileError`` naming the split (images neither uint8 nor floats in
  [0, 1], labels out of range, an empty split).
  """
  for split, arrays in zip(data.SPLITS, splits):
    try:
      model.check_batch(arrays, where=f"{config.dataset} {split}")
    except ValueError as e:
      raise data.DataFileError(str(e)) from e


def run_data(model, train_np: Mapping[str, np.ndarray], seed: int,
             sources: Mapping[tuple[str | None, str], Mapping[str, np.ndarray]] | None = None
             ) -> tuple[Mapping[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
  """(the training set as the model's step sees it, its streams' arrays) for ``seed``.

  Each stream selects from its source (:attr:`aaejax.core.Stream.dataset` and ``split``;
  ``sources`` from :func:`stream_sources`): the run's training set as loaded (e.g. before
  labels are hidden) unless it names another.
  """
  sources = {(None, "train"): train_np, **dict(sources or {})}
  streams = {}
  for name, s in model.streams().items():
    key = (s.dataset, s.split)
    if key not in sources:
      raise ValueError(f"stream {name!r} draws from {key}, not loaded (sources: "
                       f"{sorted(sources, key=str)}); see stream_sources.")
    streams[name] = s.arrays(sources[key], seed)
  return model.train_data(train_np, seed), streams


@dataclasses.dataclass
class Run:
  """What a run of a config is made of, built once (:func:`build_run`): the loop, sweeps,
  the benchmark and the tools start from it.

  Attributes:
    config: the config.
    model: its model, built once.
    mesh: the device mesh (batch axis).
    train: the training split as loaded (host arrays).
    test: the test split.
    splits: the model's other eval splits by name (:meth:`aaejax.core.Model.eval_splits`).
    sources: what the streams draw from (:func:`stream_sources`).
  """

  config: Any
  model: Any
  mesh: Any
  train: dict
  test: dict
  splits: dict
  sources: dict

  def data(self, seed: int):
    """(the training set as the step sees it, the streams' arrays) for ``seed``
    (:func:`run_data`)."""
    return run_data(self.model, self.train, seed, self.sources)

  def evaluation(self, device=None) -> evaluation.Evaluation:
    """The run's :class:`aaejax.evaluation.Evaluation`, its splits on ``device``."""
    put = lambda arrays: data.DeviceDataset(arrays, device).arrays
    return evaluation.Evaluation(self.model, self.config, put(self.test),
                                 {k: put(v) for k, v in self.splits.items()})


def build_run(config, mesh: bool = True) -> Run:
  """Checks ``config`` and builds its run: model (once), mesh, data, stream sources, eval
  splits, every split's values checked on host (:func:`check_data`)."""
  model = _validate(config)
  grid = None
  if mesh:
    grid = parallel.make_mesh(config.get("num_devices") or None)
    parallel.check_batch_size(config.batch_size, grid)
  train_np, test_np = load_splits(config)
  if tuple(train_np["image"].shape[1:]) != tuple(getattr(model, "image_shape",
                                                         train_np["image"].shape[1:])):
    model = models.create(config, train_np["image"].shape[1:])  # a data set of other shapes
  check_data(model, config, (train_np, test_np))
  return Run(config, model, grid, train_np, test_np, eval_splits(model, config, test_np),
             stream_sources(model, config, train_np))


def eval_subset(train_np: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The training examples evaluators use as a reference set (kNN, cluster labels)."""
  n = min(EVAL_TRAIN_CODES, next(iter(train_np.values())).shape[0])
  return {k: v[:n] for k, v in train_np.items()}
