"""Trains a grid of configurations as one vmapped program (see aaejax/sweeps.py).

  python experiments/sweep.py --config=experiments/configs/wae.py --workdir=runs/wae_sweep \
      --grid=seed=0,1 --grid=penalty_weight=1,10,100 --grid=learning_rate=1e-3,3e-4 \
      [--config.FIELD=VALUE ...]

Writes DIR/member_<i>/{config.json,metrics.jsonl,plots/} and DIR/summary.md (one row
per member, final eval metrics). Sweepable fields: seed and every field that sets an
hparam of the model (learning rates, loss weights such as penalty_weight, prior_scale,
kernel_scale, critic_noise, ...); a bad field names the sweepable ones.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from aaejax import sweeps

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for the members' outputs and summary.md.")
flags.DEFINE_multi_string("grid", None, "FIELD=V1,V2,... (repeat for a Cartesian product).")
config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir", "grid"])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint write at INFO.
  results = sweeps.run_sweep(FLAGS.config, FLAGS.grid, FLAGS.workdir)
  print(f"{len(results)} members; summary: {FLAGS.workdir}/summary.md")
  print(open(f"{FLAGS.workdir}/summary.md").read())


if __name__ == "__main__":
  app.run(main)
