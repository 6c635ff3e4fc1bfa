"""aaejax.nets.inception: the FID Inception-v3, checked without its (undownloadable) weights.

- Key names and shapes: tests/data/fid_inception_keys.txt lists every key of pytorch-fid's
  state dict with its torch shape (written from pytorch-fid 0.3.0 by
  experiments/tools/inception_reference.py); the flax tree must map onto exactly those.
- The loader: a .pth with those keys and random values, written by tests/_pth_writer.py in
  torch's legacy layout, loads into the right leaves (transposed to HWIO).
- The network: output shape, determinism, jit == eager (per layer kind: eager is slow).
  Against pytorch-fid itself (random weights, real torch files) the features agree to 1.5e-5
  (inception_reference.py, not run here: it needs torch).
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

import _pth_writer
from aaejax.nets import inception, pth

KEYS_FILE = os.path.join(os.path.dirname(__file__), "data", "fid_inception_keys.txt")


def _torch_state_from_flax(variables):
  """Flax variables -> torch-layout {key: array} (the inverse of the loader's mapping)."""
  state = {}
  for keys, leaf in traverse_util.flatten_dict(variables).items():
    v = np.asarray(leaf)
    key = inception.torch_key_prefix(keys[1:-1]) + "." + pth._LEAF_RULES[keys[-1]][0]
    state[key] = v.transpose(3, 2, 0, 1) if v.ndim == 4 else v.T if v.ndim == 2 else v
  return state


def test_flax_tree_maps_onto_pytorch_fid_keys():
  with open(KEYS_FILE) as f:
    expected = {k: tuple(int(d) for d in s.split(",") if d)
                for k, _, s in (line.rstrip("\n").partition(" ") for line in f)}
  expected = {k: s for k, s in expected.items()
              if not k.endswith("num_batches_tracked") and not k.startswith("fc.")}
  ours = {k: v.shape for k, v in _torch_state_from_flax(
      jax.tree_util.tree_map(lambda s: np.zeros(s.shape, np.float32),
                             inception.variable_shapes())).items()}
  assert sorted(set(expected) - set(ours)) == [] and sorted(set(ours) - set(expected)) == []
  assert {k: s for k, s in ours.items() if expected[k] != s} == {}
  assert len(ours) == 470  # 94 BasicConv2d × (conv weight + 4 BatchNorm tensors)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
  """(variables written as a legacy-format .pth and loaded back, the torch state written)."""
  variables = inception.init_variables(jax.random.key(0))
  state = _torch_state_from_flax(variables)
  rng = np.random.default_rng(0)
  for k in list(state):  # BatchNorm statistics that are not the identity
    if k.endswith("running_var") or k.endswith("bn.weight"):
      state[k] = rng.random(state[k].shape, np.float32) + 0.5
    elif k.endswith("running_mean") or k.endswith("bn.bias"):
      state[k] = rng.normal(0, 0.1, state[k].shape).astype(np.float32)
    if k.endswith("bn.running_var"):  # as torch >= 0.4.1 saves them; unused
      state[k.replace("running_var", "num_batches_tracked")] = np.array(0, np.int64)
  state["fc.weight"] = np.zeros((1008, 2048), np.float32)  # present in the real file, unused
  state["fc.bias"] = np.zeros((1008,), np.float32)
  path = tmp_path_factory.mktemp("fid") / inception.WEIGHTS_FILE
  _pth_writer.save(state, path, legacy=True)
  return inception.load_variables(str(path)), state, path


def test_loader_puts_every_tensor_in_its_leaf(loaded):
  variables, state, _ = loaded
  back = _torch_state_from_flax(variables)
  assert back.keys() == {k for k in state if not k.endswith("num_batches_tracked")
                         and not k.startswith("fc.")}
  for k, v in back.items():
    np.testing.assert_array_equal(v, state[k], err_msg=k)
  kernel = variables["params"]["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"]
  assert kernel.shape == (1, 7, 128, 128)  # torch (128, 128, 1, 7) -> HWIO


def test_loader_errors_name_the_key_and_the_download(loaded, tmp_path):
  _, state, _ = loaded
  bad = {k: v for k, v in state.items() if k != "Mixed_7c.branch_pool.bn.running_var"}
  bad["Mixed_7c.extra.weight"] = np.zeros(3, np.float32)
  path = tmp_path / "bad.pth"
  _pth_writer.save(bad, path)
  with pytest.raises(pth.PthError, match=r"bad\.pth: missing the key 'Mixed_7c\.branch_pool\.bn\.running_var'"):
    inception.load_variables(str(path))
  with pytest.raises(FileNotFoundError, match=r"pytorch-fid/releases/download/fid_weights/"
                     r"pt_inception-2015-12-05-6726825d\.pth.*inception_weights"):
    inception.load_variables(str(tmp_path / "nowhere.pth"))
  with pytest.raises(FileNotFoundError, match="inception_weights"):
    inception.load_variables(None)


def test_features_shape_and_determinism(loaded):
  variables, _, _ = loaded
  rng = np.random.default_rng(1)
  images = rng.random((2, 32, 24, 1), dtype=np.float32)  # grey, small: resized to 299
  f1 = np.asarray(inception.features(variables, images))
  f2 = np.asarray(inception.features(variables, images))
  assert f1.shape == (2, inception.FEATURE_DIM) and f1.dtype == np.float32
  np.testing.assert_array_equal(f1, f2)
  assert np.all(np.isfinite(f1)) and np.all(f1 >= 0)  # means of ReLU outputs
  assert np.abs(f1[0] - f1[1]).max() > 1e-3 * np.abs(f1).max()  # different images differ
  x = np.asarray(inception.preprocess(images))
  assert x.shape == (2, 299, 299, 3) and x.min() >= -1 and x.max() <= 1
  np.testing.assert_array_equal(x[..., 0], x[..., 2])


def test_jit_equals_eager_per_layer():
  """Eager execution of the whole net costs ~30 s here (op-by-op compiles), so jit == eager is
  checked on its layer kinds; the whole jitted net matches pytorch-fid (see the docstring)."""
  x = np.random.default_rng(1).normal(size=(1, 6, 6, 4)).astype(np.float32)
  layer = inception.BasicConv(5, (1, 3), stride=2, padding=(0, 1))
  variables = inception.imagenet.random_variables(
      jax.eval_shape(layer.init, jax.random.key(0), x), jax.random.key(2))
  eager = layer.apply(variables, x)
  assert eager.shape == (1, 3, 3, 5)
  np.testing.assert_allclose(jax.jit(layer.apply)(variables, x), eager, rtol=1e-6, atol=1e-6)
  pool = inception._avg_pool_3x3
  np.testing.assert_allclose(jax.jit(pool)(x), pool(x), rtol=1e-6, atol=1e-6)


def test_average_pool_excludes_the_padding():
  """TF's (and pytorch-fid's) 3×3 average pool: a constant stays constant at the borders."""
  out = inception._avg_pool_3x3(jnp.ones((1, 4, 4, 2)))
  np.testing.assert_allclose(out, 1.0, rtol=1e-6)
  x = jnp.arange(16.0).reshape(1, 4, 4, 1)
  assert float(inception._avg_pool_3x3(x)[0, 0, 0, 0]) == pytest.approx((0 + 1 + 4 + 5) / 4)
