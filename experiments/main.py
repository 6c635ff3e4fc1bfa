r"""Trains, evaluates and plots one experiment.

  python experiments/main.py --config=experiments/configs/aae_unsupervised.py \
      --workdir=runs/aae [--config.FIELD=VALUE ...]

``--help`` lists the flags and the config's fields (``--config=FILE --help``: that
config's, with the values the overrides give). Bad flags, config fields or data print one
line, ``error: ...``, on stderr: exit code 2 for a usage or config error, 1 for a data error.

Several processes (TPU pod slices, multi-node GPU): run the same command on every
host with ``--multiprocess`` (the cluster is detected on TPU VMs, SLURM and Open
MPI), or name it: ``--coordinator_address=HOST:PORT --num_processes=N
--process_id=I``. ``--workdir`` must be a directory that every process sees.
"""

import sys

from absl import flags, logging
from ml_collections import config_flags

import cli
from aaejax import models


def define_flags(fv: flags.FlagValues, argv=None) -> None:
  """This script's flags, in ``fv``; the config flag reads its overrides from ``argv``."""
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.",
                      flag_values=fv)
  config_flags.DEFINE_config_file("config", None, "Experiment config file.", flag_values=fv,
                                  lock_config=True, sys_argv=argv)
  flags.DEFINE_bool("multiprocess", False,
                    "Join a multi-process JAX cluster (jax.distributed.initialize) first.",
                    flag_values=fv)
  flags.DEFINE_string("coordinator_address", None,
                      "host:port of process 0 (implies --multiprocess; default: auto-detect).",
                      flag_values=fv)
  flags.DEFINE_integer("num_processes", None, "Number of processes (default: auto-detect).",
                       flag_values=fv)
  flags.DEFINE_integer("process_id", None, "This process's index (default: auto-detect).",
                       flag_values=fv)


def main(fv: flags.FlagValues) -> None:
  """Checks the config (before any data is read), then trains (the loop checks the data)."""
  models.check(fv.config)
  logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint write at INFO.
  from aaejax.run import distributed, train
  if fv.multiprocess or fv.coordinator_address:
    distributed.initialize(fv.coordinator_address, fv.num_processes, fv.process_id)
  train.train_and_evaluate(fv.config, fv.workdir)


def run(argv) -> int:
  """The command line ``argv`` (``argv[0]`` the program); returns the exit code."""
  return cli.run(argv, define_flags, main, doc=__doc__)


if __name__ == "__main__":
  sys.exit(run(sys.argv))
