"""Trains, evaluates and plots one experiment.

  python experiments/main.py --config=experiments/configs/aae_unsupervised.py \
      --workdir=runs/aae [--config.FIELD=VALUE ...]
"""

from absl import app, flags, logging
from ml_collections import config_flags

from aaejax import train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint write at INFO.
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
