"""Small experiment configs for tests (importable by subprocess workers too)."""

import importlib
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_config(name: str = "aae_unsupervised", **fields):
  """``experiments/configs/<name>.py`` without progress bar or plots, with ``fields`` set."""
  if os.path.join(ROOT, "experiments") not in sys.path:
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
  c = importlib.import_module(f"configs.{name}").get_config()
  c.disable_progress = True
  c.plots = False
  for k, v in fields.items():
    c[k] = tuple(v) if isinstance(v, list) else v
  return c
