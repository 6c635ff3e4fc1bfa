"""Small experiment configs for tests (importable by subprocess workers too)."""

import importlib
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_config(name: str = "aae_unsupervised", **fields):
  """``experiments/configs/<name>.py`` without progress bar, plots or the digit classifier's
  mode coverage (it trains a classifier on first use), with ``fields`` set."""
  c = importlib.import_module(f"configs.{name}").get_config()
  c.disable_progress = True
  c.plots = False
  c.skip_evaluators = ("mode_coverage",)
  for k, v in fields.items():
    c[k] = tuple(v) if isinstance(v, list) else v
  return c
