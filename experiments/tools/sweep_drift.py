"""How far a sweep member drifts from its solo run, against how far a solo run drifts from
itself when one float32 bit of its arithmetic changes.

  python experiments/tools/sweep_drift.py --config=experiments/configs/wae.py --steps=500

For the config (seed 0) it trains, each ``--steps`` steps with the eval at the end:

- ``solo``: the run ``main.py`` makes;
- ``member``: member 0 of a sweep over ``seed=0,1`` (``sweep.py``'s vmapped program);
- ``nudged``: the solo run with ``learning_rate`` one float32 ulp larger (every step's
  update then differs in its last bit, the size of a float reassociation);

and prints each eval metric of the three with the relative differences member − solo and
nudged − solo. At step 1 a member equals its solo run to rounding (``tests/test_sweeps.py``);
when the member's drift after many steps is of the nudged run's size, it is float
reassociation amplified by training (vmapped matmuls sum in another order), not a different
computation. Evaluators of generated images are skipped unless ``--generated``.
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np
from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cli  # noqa: E402  (experiments/cli.py)

from aaejax.run import sweeps, train  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("config", "experiments/configs/wae.py", "Config file[:variant].")
flags.DEFINE_integer("steps", 500, "Training steps of each run.")
flags.DEFINE_bool("generated", False, "Keep the evaluators of generated images.")
flags.DEFINE_string("workdir", "", "Where the runs go (default: a temporary directory).")


def config_for(path_arg: str, steps: int, generated: bool):
  c = cli.load_config(path_arg)
  c.num_steps, c.eval_every, c.checkpoint_every = steps, steps, steps
  c.plots, c.disable_progress, c.seed = False, True, 0
  if not generated:
    c.skip_evaluators = tuple(c.skip_evaluators) + tuple(
        e for e in ("mode_coverage", "fd_digits", "parzen_ll", "fd_effnet", "kid_effnet")
        if e not in c.skip_evaluators)
  return c


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint write at INFO
  root = FLAGS.workdir or tempfile.mkdtemp(prefix="sweep_drift_")
  base = config_for(FLAGS.config, FLAGS.steps, FLAGS.generated)
  solo = train.train_and_evaluate(base, os.path.join(root, "solo"))
  member = sweeps.run_sweep(base, ["seed=0,1"], os.path.join(root, "sweep"))[0]
  nudged_config = base.copy_and_resolve_references()
  lr = np.float32(base.learning_rate)
  nudged_config.learning_rate = float(np.nextafter(lr, np.float32(np.inf)))
  nudged = train.train_and_evaluate(nudged_config, os.path.join(root, "nudged"))
  keys = sorted(k for k in solo if k.startswith("eval/") and not k.endswith("_samples"))
  print(f"\n{FLAGS.config}, {FLAGS.steps} steps, seed 0 (runs in {root})\n")
  print("| metric | solo | member | nudged | (member − solo) / solo | (nudged − solo) / solo |")
  print("|---|---|---|---|---|---|")
  for k in keys:
    s, m, n = float(solo[k]), float(member[k]), float(nudged[k])
    rel = lambda x: f"{(x - s) / abs(s):+.2e}" if s else f"{x - s:+.2e} (abs)"
    print(f"| {k} | {s:.5g} | {m:.5g} | {n:.5g} | {rel(m)} | {rel(n)} |")


if __name__ == "__main__":
  app.run(main)
