r"""Trains a grid of configurations as one vmapped program (see aaejax/run/sweeps.py).

  python experiments/sweep.py --config=experiments/configs/wae.py --workdir=runs/wae_sweep \
      --grid=seed=0,1 --grid=penalty_weight=1,10,100 --grid=learning_rate=1e-3,3e-4 \
      [--config.FIELD=VALUE ...]

Writes DIR/member_<i>/{config.json,metrics.jsonl,plots/} and DIR/summary.md (one row
per member, final eval metrics). Sweepable fields: seed and every field that sets an
hparam of the model (learning rates, loss weights such as penalty_weight, prior_scale,
kernel_scale, critic_noise, ...); a bad field names the sweepable ones.

``--help`` lists the flags and the config's fields. Bad flags, config fields, grids or
data print one line, ``error: ...``, on stderr: exit code 2 for a usage or config error,
1 for a data error.
"""

import sys

from absl import flags, logging
from ml_collections import config_flags

import cli
from aaejax import models
from aaejax.errors import ConfigError


def define_flags(fv: flags.FlagValues, argv=None) -> None:
  """This script's flags, in ``fv``; the config flag reads its overrides from ``argv``."""
  flags.DEFINE_string("workdir", None, "Directory for the members' outputs and summary.md.",
                      flag_values=fv)
  flags.DEFINE_multi_string("grid", None, "FIELD=V1,V2,... (repeat for a Cartesian product).",
                            flag_values=fv)
  config_flags.DEFINE_config_file("config", None, "Experiment config file.", flag_values=fv,
                                  lock_config=True, sys_argv=argv)


FLAGS = flags.FLAGS
define_flags(FLAGS)  # for callers that parse flags.FLAGS themselves and call main()
flags.mark_flags_as_required(["config", "workdir", "grid"])


def check(fv: flags.FlagValues) -> None:
  """The config and the grid, before any data is read; raises ConfigError."""
  from aaejax.run import sweeps
  model = models.check(fv.config)
  try:
    sweeps.parse_grid(fv.grid, fv.config, model)
  except ValueError as e:
    raise ConfigError(f"--grid: {e}") from e


def main(argv, fv: flags.FlagValues = FLAGS) -> None:
  del argv
  check(fv)
  logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint write at INFO.
  from aaejax.run import sweeps
  results = sweeps.run_sweep(fv.config, fv.grid, fv.workdir)
  print(f"{len(results)} members; summary: {fv.workdir}/summary.md")
  print(open(f"{fv.workdir}/summary.md").read())


def run(argv) -> int:
  """The command line ``argv`` (``argv[0]`` the program); returns the exit code."""
  return cli.run(argv, define_flags, lambda fv: main([], fv), doc=__doc__,
                 required=("config", "workdir", "grid"))


if __name__ == "__main__":
  sys.exit(run(sys.argv))
