"""A model outside the package (experiments/examples/denoising_ae.py) through config.model_module."""

import json
import os
import sys

import ml_collections
import pytest

from aaejax import models
from aaejax.errors import ConfigError
from aaejax.run import sweeps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = "experiments/examples/denoising_ae_config.py"


@pytest.fixture
def registry(monkeypatch):
  """The model registry as it was before the test (the example registers itself)."""
  monkeypatch.setattr(models, "MODELS", dict(models.MODELS))
  yield
  for name in [n for n in sys.modules if n.startswith("aaejax_user_model_")]:
    del sys.modules[name]


def test_a_model_module_registers_and_trains(mnist_dir, registry, tmp_path, monkeypatch):
  import main
  monkeypatch.chdir(ROOT)
  workdir = tmp_path / "dae"
  argv = ["main.py", f"--config={EXAMPLE}", f"--workdir={workdir}", "--config.num_steps=4",
          "--config.hidden=(16,)", "--config.eval_every=4", "--config.plots=False",
          "--config.disable_progress=True", "--config.noise_std=0.5"]
  assert main.run(argv) == 0
  rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  assert rows[-1]["step"] == 4 and "eval/recon_loss" in rows[-1]
  assert any("train/recon_loss" in r for r in rows)
  model = models.MODELS["denoising_ae"]
  built = models.create(ml_collections.ConfigDict(json.load(open(workdir / "config.json"))),
                        (28, 28, 1))
  assert isinstance(built, model)
  assert sweeps.sweepable_fields(built)["noise_std"] == "noise_std"
  assert sweeps.sweepable_fields(built)["learning_rate"] == "lr_ae"


@pytest.mark.parametrize("target, match", [
    ("no_such_module_here", "no module 'no_such_module_here' on sys.path"),
    ("/nowhere/model.py", "no such file '/nowhere/model.py'"),
])
def test_a_missing_model_module_is_a_config_error(target, match, registry):
  with pytest.raises(ConfigError, match=match):
    models.validate({"model": "aae", "model_module": target})
