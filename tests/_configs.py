"""Small experiment configs for tests (importable by subprocess workers too)."""

import importlib
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Evaluators of generated images (for 28x28 data) that the small runs skip.
SKIP_GENERATED = ("mode_coverage", "fd_digits", "parzen_ll")


def small_config(name: str = "aae_unsupervised", **fields):
  """``experiments/configs/<name>.py`` without progress bar, plots or the evaluators of
  generated images (the digit classifier's mode coverage and FD train a classifier on first
  use; Parzen costs seconds), with ``fields`` set."""
  c = importlib.import_module(f"configs.{name}").get_config()
  c.disable_progress = True
  c.plots = False
  c.skip_evaluators = SKIP_GENERATED
  for k, v in fields.items():
    c[k] = tuple(v) if isinstance(v, list) else v
  return c
