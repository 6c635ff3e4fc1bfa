"""Trains, evaluates and plots one experiment.

  python experiments/main.py --config=experiments/configs/aae_unsupervised.py \
      --workdir=runs/aae [--config.FIELD=VALUE ...]

Several processes (TPU pod slices, multi-node GPU): run the same command on every
host with ``--multiprocess`` (the cluster is detected on TPU VMs, SLURM and Open
MPI), or name it: ``--coordinator_address=HOST:PORT --num_processes=N
--process_id=I``. ``--workdir`` must be a directory that every process sees.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from aaejax import distributed, guards, train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_bool("multiprocess", False,
                  "Join a multi-process JAX cluster (jax.distributed.initialize) first.")
flags.DEFINE_string("coordinator_address", None,
                    "host:port of process 0 (implies --multiprocess; default: auto-detect).")
flags.DEFINE_integer("num_processes", None, "Number of processes (default: auto-detect).")
flags.DEFINE_integer("process_id", None, "This process's index (default: auto-detect).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint write at INFO.
  if FLAGS.multiprocess or FLAGS.coordinator_address:
    distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  try:
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except guards.RunStopped as e:  # divergence, a stop signal, a failed checkpoint
    print(f"{FLAGS.config.model}: stopped: {e}", file=sys.stderr, flush=True)
    sys.exit(e.exit_code)


if __name__ == "__main__":
  app.run(main)
