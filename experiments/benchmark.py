"""Training throughput of the models: samples/s, FLOPs, and the fraction of the matmul peak.

  python experiments/benchmark.py --model=aae --batch_size=100 --steps=50
  python experiments/benchmark.py --model=aae,wae_mmd_rbf,wae_mmd_imq,wae_gan --steps=50 \
      --json=bench.json
  python experiments/benchmark.py --model=aae --hidden=128 --critic_hidden=128 --sweep=1,16
  python experiments/benchmark.py --model=wae:celeba_cpu,vae:celeba_cpu --compute_dtype=bfloat16

Prints one table, a row per (model, K):

- samples/s: training examples per second (summed over the K members of a
  sweep), the median over ``--repeats`` timed windows of ``--steps`` steps each,
  after compilation (done ahead of time, reported apart) and ``--warmup`` steps;
- ms/step: the time of one compiled step (all K members);
- GFLOP/step: the dense/conv multiply-adds (×2) of every phase, forward and
  backward, counted on the step's jaxpr by :mod:`aaejax.run.flops` (per phase in
  the JSON); conv nets are counted with XLA's convolutions (``conv_impl="xla"``) and
  without the products with inserted zeros, so that the count is the model's math,
  the same for every implementation (and for the PyTorch anchor's rows);
- GFLOP/s and % peak: achieved rate, and its fraction of the float32 matmul
  rate of this machine, measured in the same run: before each timed window the
  best rate of square matmuls (512, 1024, 2048) is measured, and the fraction
  is the median over windows of (window's rate / that peak), which keeps it
  meaningful when other processes share the cores;
- penalty %: for MMD penalties, the time of the MMD's forward and backward pass
  (timed alone right after each window, 20 per dispatch) over the step's time,
  at the row's batch size (median over windows); a line under the table checks
  it at ``--penalty_batch`` (256: must stay under 10 %).

The step is the training loop's own (:func:`aaejax.run.builder.make_train_fn`: one
compiled program for all phases, the batch gathered from a device-resident
dataset, the model's streams drawn on device, the state donated, no host round
trip); a sweep (``--sweep=K``) is the sweep loop's own
(:func:`aaejax.run.sweeps.make_sweep_fn`) over K states stacked by
``jax.vmap(model.init)`` (seeds 0..K-1), compiled as one program for all K with
``aaejax.run.builder.jit_step(..., vmapped=True)`` (on CPU each member gets its own
copy of the permutation, so of the batch, as in :func:`aaejax.run.sweeps.run_sweep`).

A line under the table gives the ceiling the matmul shapes themselves allow:
a ``--hidden``-wide square layer's three matmuls at the batch size (forward
x·W, input gradient dy·Wᵀ, weight gradient xᵀ·dy) timed alone, as a fraction
of the square-matmul peak (median over ``--repeats`` interleaved pairs).
``--model`` takes the aliases above (the anchor MLPs: 784-1000-1000-8, critic
8-1000-1000-1 for ``aae``; WAE-GAN keeps its config's critic; ``vae`` the same
784-1000-1000-8 MLPs; ``gan`` generator 100-1000-1000-784 and critic
784-1000-1000-1) or any config file's name, optionally with its variant
(``wae:celeba_cpu``; label-aware AAEs get their streams as in training).
``--compute_dtype=float32,bfloat16`` gives each model a row per compute dtype
(``config.compute_dtype``), named ``model/dtype``, timed interleaved.
Data: the config's dataset (MNIST for the aliases) from ``$AAEJAX_DATA_DIR`` when
present, else random bytes of the same shape (the speed is the same). Rows are timed interleaved (window 1 of
every row, then window 2, ...), so that they share the background load.

``--width=1,2`` gives each model a row per width of its conv nets (every conv channel count
times W, named ``model xW``); ``--conv_impl=xla,auto`` a row per convolution implementation
(:mod:`aaejax.nets.conv`; ``xla``: XLA's own convolutions, as ``flax.linen.Conv``);
``--anchor=../torchenv/bin/python`` adds, for ``wae:celeba_cpu``, ``vae:celeba_cpu`` and
``gan:dcgan`` at each width, two rows of the PyTorch anchor
(``experiments/tools/torch_anchor.py``, the same nets and losses in eager PyTorch, in its
default NCHW and its channels-last layouts), timed in windows interleaved with ours, and a
line per model with our samples/s over the anchor's (FLOPs of the anchor rows: ours).

``--steps_per_call=S`` runs S steps per dispatch (a ``lax.scan``, to measure
what a scanned training loop would gain); ``--profile_dir`` writes a
``jax.profiler`` trace of each row's last window (TensorBoard or Perfetto),
``--dump_hlo`` each step's optimised HLO. The JSON also has each window's
ms/step, the process's CPU ms/step and the FLOPs per phase.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import json
import os
import platform
import statistics
import subprocess
import time
from typing import Any, Callable

from absl import app, flags


import jax
import jax.numpy as jnp
import numpy as np

from aaejax import data, models, penalties
from aaejax.models import gan as gan_model
from aaejax.run import builder, flops, parallel, sweeps

FLAGS = flags.FLAGS
flags.DEFINE_list("model", ["aae"], "Models, comma-separated: aae, wae_mmd_rbf, wae_mmd_imq, "
                  "wae_gan, vae, gan, or the name of a config file in experiments/configs.")
flags.DEFINE_integer("batch_size", 100, "Global batch size (per sweep member).")
flags.DEFINE_integer("steps", 50, "Steps per timed window.")
flags.DEFINE_list("sweep", ["1"], "Sweep sizes K, comma-separated (1: a single model).")
flags.DEFINE_integer("repeats", 5, "Timed windows per row; the median is reported.")
flags.DEFINE_integer("warmup", 3, "Untimed steps after compilation.")
flags.DEFINE_string("json", None, "Also write the results here as JSON.")
flags.DEFINE_integer("num_devices", 0, "Devices of the data-parallel mesh (0: all).")
flags.DEFINE_integer("latent_dim", None, "Latent dimension (default: the alias's, 8 for the "
                     "autoencoder anchors; else the config's, e.g. the GAN's 100-D noise).")
flags.DEFINE_list("hidden", ["1000", "1000"], "Encoder/decoder MLP hidden layers.")
flags.DEFINE_list("critic_hidden", None, "Critic hidden layers (default: 1000,1000 for aae, "
                  "the config's for wae_gan).")
flags.DEFINE_multi_string("set", [], "Extra config overrides FIELD=VALUE (python literal).")
flags.DEFINE_integer("penalty_batch", 256, "Batch size of the MMD-share check (0: skip).")
flags.DEFINE_list("peak_sizes", ["512", "1024", "2048"], "Square matmul sizes of the peak.")
flags.DEFINE_float("peak_seconds", 0.15, "Seconds spent timing each peak matmul size per window.")
flags.DEFINE_enum("data", "auto", ["auto", "mnist", "random"], "MNIST from $AAEJAX_DATA_DIR "
                  "(auto: when present), or random bytes of its shape.")
flags.DEFINE_integer("steps_per_call", 1, "Train steps per dispatch (a lax.scan over steps; "
                     "the training loop dispatches one step per call).")
flags.DEFINE_string("profile_dir", None, "Write a jax.profiler trace of one window here.")
flags.DEFINE_string("dump_hlo", None, "Write each step's optimised HLO into this directory.")
flags.DEFINE_list("conv_impl", None, "config.conv_impl of the rows, comma-separated (auto, "
                  "subpixel, xla; each model gets a row per impl, named model/impl); default: "
                  "the config's.")
flags.DEFINE_list("width", ["1"], "Width multipliers of the conv nets, comma-separated (each "
                  "model gets a row per width, named 'model xW' for W > 1): every conv channel "
                  "count of the config (conv_channels, decoder_channels, gen_channels, "
                  "critic_channels; the DCGAN defaults where unset) times W.")
flags.DEFINE_string("anchor", None, "A Python with torch (e.g. ../torchenv/bin/python): also "
                    "time experiments/tools/torch_anchor.py's PyTorch step of each model it "
                    "has (wae:celeba_cpu, vae:celeba_cpu, gan:dcgan) at each width, in its "
                    "default (NCHW) and channels-last layouts, windows interleaved with ours.")
flags.DEFINE_list("compute_dtype", None, "config.compute_dtype of the rows, comma-separated "
                  "(float32, bfloat16; each model gets a row per dtype, named model/dtype); "
                  "default: the config's.")

# Benchmark name -> (config file, overrides).
ALIASES = {
    "aae": ("aae_unsupervised", {"prior": "gaussian", "critic_hidden": (1000, 1000),
                                 "latent_dim": 8, "r1_weight": 0.0}),
    "wae_mmd_rbf": ("wae", {"penalty": "mmd_rbf", "latent_dim": 8}),
    "wae_mmd_imq": ("wae", {"penalty": "mmd_imq", "latent_dim": 8}),
    "wae_gan": ("wae", {"penalty": "gan", "latent_dim": 8}),
    "vae": ("vae", {"latent_dim": 8}),
    "gan": ("gan", {}),
    "triplegan": ("triplegan", {}),
}
IMAGE_SHAPE = (28, 28, 1)
PENALTY_REPS = 20  # MMD evaluations per dispatch when timing the penalty alone


def make_config(name: str, latent_dim: int | None, hidden, critic_hidden=None, sets=()):
  """The benchmark's config for model ``name`` (an alias, or a config file's name with an
  optional ``:variant``)."""
  file, overrides = ALIASES.get(name, (name, {}))
  file, _, variant = file.partition(":")
  try:
    config = importlib.import_module(f"configs.{file}").get_config(*([variant] if variant else []))
  except ModuleNotFoundError:
    config = importlib.import_module("configs.default").get_config()
    config.model = name
  for k, v in overrides.items():
    config[k] = v
  if latent_dim is not None:
    config.latent_dim = latent_dim
  config.hidden = tuple(int(h) for h in hidden)
  if critic_hidden is not None:
    config.critic_hidden = tuple(int(h) for h in critic_hidden)
  for item in sets:
    field, _, value = item.partition("=")
    try:
      config[field] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      config[field] = value
  return config


def matmul_peak(sizes, seconds: float = 0.15) -> float:
  """Best float32 GFLOP/s over square matmuls of ``sizes`` (each timed ~``seconds``)."""
  best = 0.0
  for n in sizes:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = _matmul(n)
    f(a, b).block_until_ready()
    t = time.perf_counter()
    f(a, b).block_until_ready()
    once = max(time.perf_counter() - t, 1e-6)
    reps = max(1, int(seconds / once))
    t = time.perf_counter()
    for _ in range(reps):
      c = f(a, b)
    c.block_until_ready()
    best = max(best, 2 * n**3 * reps / (time.perf_counter() - t) / 1e9)
  return best


_MATMULS: dict = {}


def _matmul(n):
  if n not in _MATMULS:
    _MATMULS[n] = jax.jit(lambda a, b: a @ b)
  return _MATMULS[n]


def layer_matmul_rate(batch: int, width: int, seconds: float = 0.15) -> float:
  """GFLOP/s of one dense layer's forward and backward matmuls at ``batch``, timed alone.

  The layer is ``width`` × ``width``: x·W, dy·Wᵀ and xᵀ·dy in one jitted call
  (what every hidden layer of a training step runs), repeated for ~``seconds``.
  """
  key = ("layer", batch, width)
  if key not in _MATMULS:
    _MATMULS[key] = jax.jit(lambda x, w, dy: (x @ w, dy @ w.T, x.T @ dy))
  f = _MATMULS[key]
  x, dy = (jax.random.normal(jax.random.key(i), (batch, width), jnp.float32) for i in (0, 1))
  w = jax.random.normal(jax.random.key(2), (width, width), jnp.float32)
  jax.block_until_ready(f(x, w, dy))
  t = time.perf_counter()
  jax.block_until_ready(f(x, w, dy))
  reps = max(1, int(seconds / max(time.perf_counter() - t, 1e-6)))
  t = time.perf_counter()
  for _ in range(reps):
    out = f(x, w, dy)
  jax.block_until_ready(out)
  return 3 * 2 * batch * width * width * reps / (time.perf_counter() - t) / 1e9


def load_data(source="auto", dataset="mnist"):
  """``dataset``'s training split on the host (or random bytes of its shape), and its source."""
  arrays = None
  if source != "random":
    try:
      arrays = data.load_numpy(dataset, "train")
      source = dataset
    except Exception:  # noqa: BLE001 — no data here: the speed does not depend on it
      if source == "mnist":
        raise
  if arrays is None:
    rng = np.random.default_rng(0)
    n = 10_000 if dataset != "celeb_a" else 2_000
    arrays = {"image": rng.integers(0, 256, (n, *data.IMAGE_SHAPES[dataset]), dtype=np.uint8)}
    if data.has_labels(dataset):
      arrays["label"] = rng.integers(0, data.NUM_CLASSES[dataset], n).astype(np.int32)
    source = "random"
  return arrays, source


def device_data(model, config, host, mesh):
  """``({"train": arrays, "streams": {name: arrays}}, perm, DeviceDataset)`` on device.

  The training set as the model's step sees it and its streams
  (:func:`aaejax.run.builder.run_data`), as in the training loop.
  """
  key = (id(host), id(mesh), id(model) if model.streams() else None)
  if key not in _DEVICE_DATA:
    train_np, streams_np = builder.run_data(model, dict(host), config.seed,
                                          builder.stream_sources(model, config, dict(host)))
    rep = parallel.replicated(mesh)
    dataset = data.DeviceDataset(train_np, rep)
    streams = {k: data.DeviceDataset(v, rep).arrays for k, v in streams_np.items()}
    perm = jax.device_put(data.epoch_permutation(jax.random.key(0), 0, dataset.num_examples),
                          rep)
    _DEVICE_DATA[key] = {"train": dataset.arrays, "streams": streams}, perm, dataset
  return _DEVICE_DATA[key]


_DEVICE_DATA: dict = {}


def make_step(model, batch_size, mesh, k, steps_per_call=1, steps_per_epoch=None):
  """(step, its initial state): ``(state, data, perm, index) -> (state, metrics)``, to jit
  with :func:`aaejax.run.builder.jit_step`.

  ``data`` is :func:`device_data`'s dict. K = 1: the training loop's own step
  (:func:`aaejax.run.builder.make_train_fn`); K > 1: the sweep's step
  (:func:`aaejax.run.sweeps.make_sweep_fn`) over K states (seeds 0..K-1), all members
  on the same data order, each with its own copy of the permutation on CPU as
  :func:`aaejax.run.sweeps.run_sweep` does (one shared elsewhere). With
  ``steps_per_call`` S > 1, one call runs S train steps in a ``lax.scan``
  (batches ``index·S … index·S + S − 1``).
  """
  if k == 1:
    state = jax.device_put(jax.jit(model.init)(jax.random.key(0)), parallel.replicated(mesh))
    train_fn = builder.make_train_fn(model, batch_size, mesh, jit=False)
    step = lambda s, d, perm, i: train_fn(s, d["train"], perm, i, d["streams"])
    return _scanned(step, steps_per_call, steps_per_epoch), state
  states = jax.jit(jax.vmap(lambda s: model.init(jax.random.key(s))))(jnp.arange(k))
  states = jax.device_put(states, parallel.replicated(mesh))
  per_member = jax.default_backend() == "cpu"

  def sweep_fn(states, d, perm, index):
    # Every member sees the same data (shared arrays, axis None), as a sweep over one seed.
    axes = {name: {key: None for key in arrays} for name, arrays in d["streams"].items()}
    fn = sweeps.make_sweep_fn(model, batch_size, mesh, {key: None for key in d["train"]},
                              0 if per_member else None, axes)
    if per_member:
      perm = jnp.broadcast_to(perm, (k, *perm.shape))
    return fn(states, d["train"], perm, index, d["streams"])

  return _scanned(sweep_fn, steps_per_call, steps_per_epoch), states


def _scanned(step, steps_per_call, steps_per_epoch):
  if steps_per_call == 1:
    return step

  def multi(state, arrays, perm, index):
    def body(state, j):
      return step(state, arrays, perm, (index * steps_per_call + j) % steps_per_epoch)
    state, metrics = jax.lax.scan(body, state, jnp.arange(steps_per_call))
    return state, jax.tree.map(lambda m: m[-1], metrics)

  return multi


def make_runner(step, arrays, perm, steps_per_epoch):
  """``run(n, state) -> state``: n calls on consecutive batches, dispatched asynchronously."""
  index = [0]

  def run(n, state):
    for _ in range(n):
      state, _ = step(state, arrays, perm, index[0] % steps_per_epoch)
      index[0] += 1
    return jax.block_until_ready(state)

  return run


@dataclasses.dataclass
class Case:
  """One row of the table: a compiled step, its state, its FLOPs and its timed windows."""

  name: str
  batch: int
  k: int
  model: Any
  run: Callable
  state: Any
  flops: dict
  compile_s: float
  xla_flops: float | None
  devices: int
  steps_per_call: int = 1
  params: int | None = None
  # Per window: (s/step, peak GFLOP/s, CPU s/step, MMD fwd+bwd s or None).
  windows: list = dataclasses.field(default_factory=list)


CONV_WIDTH_FIELDS = ("conv_channels", "decoder_channels", "gen_channels", "critic_channels")


def scale_widths(config, width: int) -> None:
  """Multiplies every conv channel count of ``config`` by ``width`` (the DCGAN nets' defaults
  of :mod:`aaejax.models.gan` filled in where a GAN config leaves them unset)."""
  if width == 1:
    return
  if config.get("network", "mlp") != "conv":
    raise app.UsageError(f"--width={width}: model {config.model!r} has no conv nets "
                         "(config.network != 'conv').")
  side = data.IMAGE_SHAPES.get(config.get("dataset", "mnist"), IMAGE_SHAPE)[0]
  dcgan = {"gen_channels": gan_model.DCGAN_GEN_CHANNELS.get(side, ()),
           "critic_channels": gan_model.DCGAN_CRITIC_CHANNELS.get(side, ())}
  for field in CONV_WIDTH_FIELDS:
    channels = tuple(config.get(field, ()) or ())
    if not channels and config.model in ("gan", "infogan"):
      channels = dcgan.get(field, ())
    if channels:
      config[field] = tuple(width * c for c in channels)


ANCHOR_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tools",
                             "torch_anchor.py")
ANCHOR_MODELS = ("wae:celeba_cpu", "vae:celeba_cpu", "gan:dcgan")


class Anchor:
  """experiments/tools/torch_anchor.py in ``--serve`` mode under the Python ``python``: one
  window of its PyTorch step per :meth:`window` call."""

  def __init__(self, python: str, warmup: int):
    self.proc = subprocess.Popen([python, ANCHOR_SCRIPT, "--serve", f"--warmup={warmup}"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

  def window(self, **request) -> dict:
    self.proc.stdin.write(json.dumps(request) + "\n")
    self.proc.stdin.flush()
    answer = json.loads(self.proc.stdout.readline() or "{}")
    if "ms_per_step" not in answer:
      raise RuntimeError(f"torch anchor: {answer.get('error', 'no answer')} "
                         f"(request {request}).")
    return answer

  def close(self):
    self.proc.stdin.close()
    self.proc.wait(timeout=60)


def anchor_case(anchor: Anchor, model: str, width: int, channels_last: bool, like: "Case",
                warmup: int) -> "Case":
  """A row timing the anchor's step of ``model`` at ``width``, counted with ``like``'s FLOPs
  (the same nets and losses)."""
  request = {"model": model, "width": width, "batch_size": like.batch,
             "channels_last": channels_last}
  params = anchor.window(**request, steps=max(1, warmup))["params"]  # builds and warms up

  def run(n, state):
    anchor.window(**request, steps=n)
    return state

  name = f"torch{' NHWC' if channels_last else ''} {model}" + (f" x{width}" if width > 1 else "")
  return dataclasses.replace(like, name=name, run=run, state=None, compile_s=0.0,
                             xla_flops=None, model=None, windows=[], params=params)


def prepare(name, config, batch_size, k, mesh, host, warmup, dump_hlo=None,
            steps_per_call=1) -> Case:
  """Builds, counts, compiles and warms up the step of one row."""
  image_shape = data.IMAGE_SHAPES.get(config.get("dataset", "mnist"), IMAGE_SHAPE)
  model = models.create(config, image_shape)
  parallel.check_batch_size(batch_size, mesh)
  arrays, perm, dataset = device_data(model, config, host, mesh)
  spe = dataset.steps_per_epoch(batch_size)
  if spe % steps_per_call:
    raise ValueError(f"steps_per_call={steps_per_call} must divide the {spe} steps of an epoch.")
  step_fn, state = make_step(model, batch_size, mesh, k, steps_per_call, spe)
  args = (state, arrays, perm, 0)
  # FLOPs of the model's math, whichever conv implementation runs it: counted on XLA's convs.
  counted_fn = step_fn
  if config.get("network", "mlp") == "conv" and config.get("conv_impl", "auto") != "xla":
    native = config.copy_and_resolve_references()
    native.conv_impl = "xla"
    native = models.create(native, image_shape)
    counted_fn = make_step(native, batch_size, mesh, k, steps_per_call, spe)[0]
  counted = flops.count(counted_fn, *args, scopes=tuple(model.phase_paths()))
  counted = {"total": counted["total"] // steps_per_call,
             "by_scope": {p: v // steps_per_call for p, v in counted["by_scope"].items()}}
  step = builder.jit_step(step_fn, vmapped=k > 1)
  t = time.perf_counter()
  compiled = step.lower(*args).compile()
  compile_s = time.perf_counter() - t
  xla_flops = flops.compiled_flops(compiled)
  if dump_hlo:
    os.makedirs(dump_hlo, exist_ok=True)
    with open(os.path.join(dump_hlo, f"{name}_b{batch_size}_k{k}.hlo.txt"), "w") as f:
      f.write(compiled.as_text())
  del compiled  # the jitted function compiles (from its cache) on first call
  run = make_runner(step, arrays, perm, spe // steps_per_call)
  state = run(max(1, warmup // steps_per_call), state)
  params = sum(x.size for x in jax.tree.leaves(model.init(jax.random.key(0)).params)) \
      if k == 1 else None
  return Case(name, batch_size, k, model, run, state, counted, compile_s,
              None if xla_flops is None else xla_flops / steps_per_call, int(mesh.devices.size),
              steps_per_call, params)


def measure(cases, steps, repeats, peak_sizes, profile_dir=None, peak_seconds=0.15) -> None:
  """Times ``repeats`` windows of ``steps`` steps per case, the cases interleaved.

  Interleaving (window 1 of every case, then window 2, ...) exposes every row to
  the same background load, so that rows compare fairly on a shared machine;
  the matmul peak is measured right before each window and, for MMD models,
  the MMD alone right after it.
  """
  for r in range(repeats):
    for case in cases:
      peak = matmul_peak(peak_sizes, peak_seconds)
      trace = profile_dir and r == repeats - 1
      if trace:
        jax.profiler.start_trace(os.path.join(profile_dir, f"{case.name}_b{case.batch}_k{case.k}"))
      calls = max(1, steps // case.steps_per_call)
      t, cpu = time.perf_counter(), time.process_time()
      case.state = case.run(calls, case.state)
      n = calls * case.steps_per_call
      dt, cpu = (time.perf_counter() - t) / n, (time.process_time() - cpu) / n
      if trace:
        jax.profiler.stop_trace()
      kernel = mmd_kernel(case.model) if case.model is not None else None
      pen = penalty_timer(kernel, case.batch, case.model.latent_dim)() if kernel else None
      case.windows.append((dt, peak, cpu, pen))


def mmd_kernel(model) -> str | None:
  """The MMD kernel of a WAE-MMD ("rbf" or "imq"); None for other models."""
  if isinstance(model, models.WAE) and model.penalty.startswith("mmd_"):
    return model.penalty[4:]
  return None


@functools.lru_cache(maxsize=None)
def penalty_timer(kernel: str, n: int, d: int) -> Callable[[], float]:
  """A compiled MMD forward+backward (w.r.t. the codes) at batch ``n``; returns its timer.

  The timer returns the seconds of one evaluation, measured over ``PENALTY_REPS``
  evaluations chained in one ``fori_loop`` (one dispatch).
  """
  grad = jax.value_and_grad(lambda q, p: penalties.mmd(q, p, kernel, 1.0))

  @jax.jit
  def many(q, p):
    def body(_, q):  # the carry makes every evaluation depend on the last one
      v, g = grad(q, p)
      return q + 1e-9 * g + 1e-9 * v
    return jax.lax.fori_loop(0, PENALTY_REPS, body, q)

  q = jax.random.normal(jax.random.key(0), (n, d))
  p = jax.random.normal(jax.random.key(1), (n, d))
  many(q, p).block_until_ready()

  def timer():
    t = time.perf_counter()
    many(q, p).block_until_ready()
    return (time.perf_counter() - t) / PENALTY_REPS

  return timer


def summarize(case: Case) -> dict:
  """The table row of a measured case (plus details for the JSON)."""
  sec = statistics.median(w[0] for w in case.windows)
  gflop = case.flops["total"] / 1e9
  row = {
      "model": case.name, "devices": case.devices, "batch": case.batch, "K": case.k,
      "steps_per_call": case.steps_per_call,
      "samples_per_s": case.k * case.batch / sec, "ms_per_step": 1e3 * sec,
      "gflop_per_step": gflop,
      "gflop_per_step_by_phase": {p: v / 1e9 for p, v in case.flops["by_scope"].items()},
      "xla_cost_analysis_gflop": None if case.xla_flops is None else case.xla_flops / 1e9,
      "gflop_per_s": gflop / sec,
      "peak_gflop_per_s": statistics.median(w[1] for w in case.windows),
      "fraction_of_peak": statistics.median(gflop / w[0] / w[1] for w in case.windows),
      "window_ms_per_step": [1e3 * w[0] for w in case.windows],
      # CPU time of the process per step (all threads): less sensitive to other load.
      "cpu_ms_per_step": statistics.median(1e3 * w[2] for w in case.windows),
      "compile_s": case.compile_s, "penalty_share": None, "params": case.params,
  }
  if case.windows[0][3] is not None:
    row["penalty_ms"] = statistics.median(1e3 * w[3] for w in case.windows)
    row["penalty_share"] = statistics.median(case.k * w[3] / w[0] for w in case.windows)
  return row


def fmt_table(rows) -> str:
  head = ("| model | devices | batch | K | samples/s | ms/step | GFLOP/step | GFLOP/s "
          "| % of peak | penalty % |")
  lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
  for r in rows:
    pen = "–" if r["penalty_share"] is None else f"{100 * r['penalty_share']:.1f}"
    lines.append(f"| {r['model']} | {r['devices']} | {r['batch']} | {r['K']} | "
                 f"{r['samples_per_s']:,.0f} | {r['ms_per_step']:.2f} | "
                 f"{r['gflop_per_step']:.4g} | {r['gflop_per_s']:.1f} | "
                 f"{100 * r['fraction_of_peak']:.0f} | {pen} |")
  return "\n".join(lines)


def main(argv):
  del argv
  mesh = parallel.make_mesh(FLAGS.num_devices or None)
  peak_sizes = [int(x) for x in FLAGS.peak_sizes]
  hosts = {}
  cases, checks = [], []
  dtypes = FLAGS.compute_dtype or [None]
  bad = sorted(set(dtypes) - {None, "float32", "bfloat16"})
  if bad:
    raise app.UsageError(f"--compute_dtype: unknown {bad}; expected float32 and/or bfloat16.")
  impls = FLAGS.conv_impl or [None]
  bad = sorted(set(impls) - {None, "auto", "subpixel", "xla"})
  if bad:
    raise app.UsageError(f"--conv_impl: unknown {bad}; expected auto, subpixel and/or xla.")
  widths = [int(w) for w in FLAGS.width]
  anchor = Anchor(FLAGS.anchor, FLAGS.warmup) if FLAGS.anchor else None
  anchored = set()
  for base, width, impl, dtype in ((n, w, i, d) for n in FLAGS.model for w in widths
                                   for i in impls for d in dtypes):
    config = make_config(base, FLAGS.latent_dim, FLAGS.hidden, FLAGS.critic_hidden, FLAGS.set)
    scale_widths(config, width)
    name = base + (f" x{width}" if width > 1 else "")
    if impl:
      config.conv_impl = impl
      name = f"{name}/{impl}"
    if dtype:
      config.compute_dtype = dtype
      name = f"{name}/{dtype}"
    dataset = config.get("dataset", "mnist")
    if dataset not in hosts:
      hosts[dataset] = load_data(FLAGS.data if dataset == "mnist" else
                                 ("random" if FLAGS.data == "random" else "auto"), dataset)
    host, source = hosts[dataset]
    for k in (int(x) for x in FLAGS.sweep):
      cases.append(prepare(name, config, FLAGS.batch_size, k, mesh, host, FLAGS.warmup,
                           FLAGS.dump_hlo, FLAGS.steps_per_call))
      if anchor and base in ANCHOR_MODELS and k == 1 and (base, width) not in anchored:
        anchored.add((base, width))
        cases += [anchor_case(anchor, base, width, cl, cases[-1], FLAGS.warmup)
                  for cl in (False, True)]
    if (FLAGS.penalty_batch and str(config.get("penalty", "")).startswith("mmd_")
        and FLAGS.penalty_batch != FLAGS.batch_size):
      checks.append(prepare(name, config, FLAGS.penalty_batch, 1, mesh, host, FLAGS.warmup,
                            FLAGS.dump_hlo))
  source = ", ".join(sorted({s for _, s in hosts.values()}))
  measure(cases + checks, FLAGS.steps, FLAGS.repeats, peak_sizes, FLAGS.profile_dir,
          FLAGS.peak_seconds)
  if anchor:
    anchor.close()
  rows = [summarize(c) for c in cases]
  checks = [summarize(c) for c in checks]
  width = max(int(h) for h in FLAGS.hidden)
  layer = [(layer_matmul_rate(FLAGS.batch_size, width, FLAGS.peak_seconds),
            matmul_peak(peak_sizes, FLAGS.peak_seconds)) for _ in range(FLAGS.repeats)]
  layer_rate = statistics.median(r for r, _ in layer)
  layer_fraction = statistics.median(r / p for r, p in layer)
  peak = statistics.median(w[1] for c in cases for w in c.windows)
  print(f"devices: {jax.devices()}  (jax {jax.__version__}, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()})")
  print(f"float32 matmul peak measured in this run: {peak:.0f} GFLOP/s (median over windows of "
        f"the best of {peak_sizes}-square matmuls); data: {source}; {FLAGS.steps} steps x "
        f"{FLAGS.repeats} windows per row, rows interleaved, after {FLAGS.warmup} warm-up "
        f"steps; compilation excluded")
  print()
  print(fmt_table(rows))
  print()
  for r in rows:
    phases = ", ".join(f"{p} {v:.3f}" for p, v in r["gflop_per_step_by_phase"].items())
    xla = r["xla_cost_analysis_gflop"]
    print(f"  {r['model']} K={r['K']}: GFLOP/step by phase: {phases}"
          + ("" if xla is None else f" (XLA cost analysis: {xla:.3f})")
          + (f"; compiled in {r['compile_s']:.1f} s" if r["compile_s"] else ""))
  torch_rows = {r["model"]: r for r in rows if r["model"].startswith("torch")}
  for r in rows:
    base, _, impl = r["model"].partition("/")
    versus = [(t, torch_rows.get(f"{t} {base}")) for t in ("torch", "torch NHWC")]
    if r["K"] == 1 and not r["model"].startswith("torch") and versus[0][1]:
      print(f"  {r['model']}: " + ", ".join(
          f"{r['samples_per_s'] / a['samples_per_s']:.2f}x the samples/s of {t}"
          for t, a in versus if a) + " (params: ours " + f"{r['params']:,}" + ", torch "
          + f"{versus[0][1]['params']:,})")
  singles = {r["model"]: r for r in rows if r["K"] == 1}
  for r in rows:
    if r["K"] > 1 and r["model"] in singles:
      ratio = r["samples_per_s"] / singles[r["model"]]["samples_per_s"]
      print(f"  {r['model']} sweep K={r['K']}: {ratio:.2f}x the single model's samples/s "
            f"(> 1: faster than training the {r['K']} one after another)")
  print(f"  ceiling: the matmuls of one {width}x{width} layer at batch {FLAGS.batch_size} alone "
        f"(x·W, dy·Wᵀ, xᵀ·dy) run at {layer_rate:.0f} GFLOP/s = {100 * layer_fraction:.0f} % "
        f"of the square-matmul peak (median of {FLAGS.repeats} interleaved pairs)")
  for r in checks:
    ok = "OK" if r["penalty_share"] < 0.10 else "OVER 10 %"
    print(f"latent penalty of {r['model']} at batch {r['batch']}: {r['penalty_ms']:.2f} ms "
          f"fwd+bwd = {100 * r['penalty_share']:.1f} % of the {r['ms_per_step']:.1f} ms step "
          f"({ok})")
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump({"devices": str(jax.devices()), "jax": jax.__version__, "cpus": os.cpu_count(),
                 "peak_gflop_per_s": peak, "data": source, "flags": {
                     k: getattr(FLAGS, k) for k in ("model", "batch_size", "steps", "sweep",
                                                    "repeats", "warmup", "num_devices",
                                                    "latent_dim", "hidden", "critic_hidden",
                                                    "set", "penalty_batch", "steps_per_call",
                                                    "data", "compute_dtype", "conv_impl",
                                                    "width", "anchor")},
                 "xla_flags": os.environ.get("XLA_FLAGS", ""),
                 "layer_matmul": {"batch": FLAGS.batch_size, "width": width,
                                  "gflop_per_s": layer_rate, "fraction_of_peak": layer_fraction},
                 "rows": rows, "penalty_checks": checks}, f, indent=2)


if __name__ == "__main__":
  app.run(main)
