"""Shared by test_parallel.py, test_multiprocess.py and _multiprocess_worker.py.

Runs go through ``train.train_and_evaluate`` in fresh Python processes (the
device count of a JAX process is fixed when its backend starts) on a small
MNIST: the first images of the real one when ``$AAEJAX_DATA_DIR`` has it, else
random images, written as canonical IDX files.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from _configs import small_config

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKER = os.path.join(HERE, "_multiprocess_worker.py")


def _write_idx(path: str, array: np.ndarray) -> None:
  header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big")
                                                       for d in array.shape)
  with gzip.open(path, "wb", compresslevel=1) as f:
    f.write(header + np.ascontiguousarray(array, np.uint8).tobytes())


def write_small_mnist(root: str, num_train: int = 256, num_test: int = 200) -> str:
  """Writes ``root/mnist/`` with ``num_train`` / ``num_test`` examples; returns ``root``."""
  from aaejax import data
  splits = {}
  try:
    for split, n in (("train", num_train), ("test", num_test)):
      arrays = data.load_numpy("mnist", split)
      splits[split] = {k: np.asarray(v[:n]) for k, v in arrays.items()}
  except (data.DatasetNotFoundError, ImportError):
    rng = np.random.default_rng(0)
    splits = {s: {"image": (rng.random((n, 28, 28, 1)) < 0.2).astype(np.uint8) * 255,
                  "label": rng.integers(0, 10, n).astype(np.int32)}
              for s, n in (("train", num_train), ("test", num_test))}
  d = os.path.join(root, "mnist")
  os.makedirs(d, exist_ok=True)
  for split, (image_file, label_file) in data.IDX_FILES.items():
    _write_idx(os.path.join(d, image_file + ".gz"), splits[split]["image"][..., 0])
    _write_idx(os.path.join(d, label_file + ".gz"), splits[split]["label"].astype(np.uint8))
  return root


def tiny_config(name: str = "aae_unsupervised", **overrides):
  """A small, fast configuration of ``experiments/configs/<name>.py``."""
  return small_config(name, **{**dict(hidden=(32,), critic_hidden=(16,), batch_size=64,
                                      num_steps=6, log_every=1, eval_every=3,
                                      checkpoint_every=3), **overrides})


@pytest.fixture(scope="session")
def jax_cache_dir(tmp_path_factory) -> str:
  """A persistent compilation cache shared by this session's worker processes."""
  d = tmp_path_factory.getbasetemp() / "jax_cache"
  d.mkdir(exist_ok=True)
  return str(d)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def worker_env(num_devices: int, jax_cache_dir: str | None = None) -> dict:
  env = dict(os.environ)
  if jax_cache_dir:  # every compiled program is cached on disk for the later runs and workers
    env.update(JAX_COMPILATION_CACHE_DIR=jax_cache_dir,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  flags = [f for f in env.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={num_devices}"])
  env.pop("JAX_NUM_CPU_DEVICES", None)
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = os.pathsep.join([ROOT, os.path.join(ROOT, "experiments"),
                                       env.get("PYTHONPATH", "")])
  return env


def start_worker(spec: dict, num_devices: int, log_path: str,
                 jax_cache_dir: str | None = None) -> subprocess.Popen:
  """Starts ``_multiprocess_worker.py`` on ``spec`` with ``num_devices`` CPU devices."""
  with open(log_path, "w") as log:
    return subprocess.Popen([sys.executable, WORKER, json.dumps(spec)],
                            env=worker_env(num_devices, jax_cache_dir), stdout=log,
                            stderr=subprocess.STDOUT, cwd=ROOT)


def wait_all(procs: list[subprocess.Popen], logs: list[str], timeout: float) -> None:
  """Waits for every worker; kills the rest and fails with the logs if one fails or hangs."""
  import time
  deadline = time.monotonic() + timeout
  try:
    for p in procs:
      p.wait(timeout=max(1.0, deadline - time.monotonic()))
  except subprocess.TimeoutExpired:
    pass
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  bad = [(p.returncode, log) for p, log in zip(procs, logs) if p.returncode != 0]
  if bad:
    tails = "\n".join(f"--- {log} (rc {rc}) ---\n" + open(log).read()[-3000:] for rc, log in bad)
    raise AssertionError(f"worker(s) failed or timed out after {timeout}s:\n{tails}")


def rows(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(r) for r in f]


def losses(workdir: str) -> dict[tuple[int, str], float]:
  """(step, name) -> value of every train/eval scalar but the timing."""
  return {(r["step"], k): v for r in rows(workdir) for k, v in r.items()
          if k not in ("step", "train/steps_per_sec")}


def max_rel_diff(a: dict, b: dict) -> float:
  assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
  return max(abs(a[k] - b[k]) / max(abs(a[k]), abs(b[k]), 1e-3) for k in a)


def final_state(config, workdir: str, step: int | None = None):
  """The checkpointed state of ``workdir`` restored on this process's default device."""
  import jax
  from aaejax import models
  from aaejax.run import checkpoints
  model = models.create(config, (28, 28, 1))
  hparams = models.hparams_from_config(model, config)
  key = jax.random.key(0)
  shapes = jax.eval_shape(lambda k: model.init(k, hparams), key)

  def zeros(s):  # a template without running (and compiling) the initialisers
    if jax.dtypes.issubdtype(s.dtype, jax.dtypes.prng_key):
      data = jax.eval_shape(jax.random.key_data, s)
      return jax.random.wrap_key_data(jax.device_put(np.zeros(data.shape, data.dtype)),
                                      impl=jax.random.key_impl(key))
    return jax.device_put(np.zeros(s.shape, s.dtype))

  ckpt = checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"))
  try:
    return ckpt.restore(jax.tree.map(zeros, shapes), step)
  finally:
    ckpt.close()


def state_max_abs_diff(a, b) -> float:
  import jax
  unwrap = lambda x: np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(
      x.dtype, jax.dtypes.prng_key) else x, np.float64)
  return max(float(np.max(np.abs(unwrap(x) - unwrap(y)), initial=0.0))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
