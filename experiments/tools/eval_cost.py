"""Seconds per evaluator call at a config's sample counts: each evaluator twice, cold and warm.

  AAEJAX_DATA_DIR=../shared/data python experiments/tools/eval_cost.py \
      --config=experiments/configs/gan.py [--config.fd_samples=...] [--workdir=RUN]

The state is a fresh initialisation, or the newest checkpoint of ``--workdir`` (an earlier
run of the same config). "cold" includes compiling, loading the feature net and computing
the real-data statistics (cached in ``cache_dir`` afterwards), "warm" is a later eval of
the same run. Every evaluator that applies is timed, final-only ones included.
"""

from __future__ import annotations

import os
import sys
import time

import jax
from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from aaejax import data, evaluation, models  # noqa: E402
from aaejax.run import builder, checkpoints

_CONFIG = config_flags.DEFINE_config_file("config", None, "The run's config file.")
flags.DEFINE_string("workdir", None, "A run of this config whose newest checkpoint to use.")


def main(argv):
  del argv
  config = _CONFIG.value
  run = builder.build_run(config, mesh=False)
  model = run.model
  subset = data.DeviceDataset(builder.eval_subset(run.data(config.seed)[0]), None).arrays
  state = jax.jit(model.init)(jax.random.key(config.seed),
                              models.hparams_from_config(model, config))
  if flags.FLAGS.workdir:
    ckpt = checkpoints.Checkpointer(os.path.join(flags.FLAGS.workdir, "checkpoints"), 1, 1)
    state, _ = ckpt.restore_latest(state, print)
    ckpt.close()
  ev = run.evaluation()
  print(f"{config.model} on {config.dataset}: {jax.devices()}; step {int(state.step)}")
  for e in ev.evaluators:
    for when in ("cold", "warm"):
      ctx = evaluation.Context(ev, state, subset, jax.random.key(1))
      start = time.perf_counter()
      out = e.fn(ctx)
      jax.block_until_ready(out)
      shown = ", ".join(f"{k}={v:.4g}" for k, v in out.items())
      print(f"{e.name:>16} {when}: {time.perf_counter() - start:7.1f} s  {shown}", flush=True)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
