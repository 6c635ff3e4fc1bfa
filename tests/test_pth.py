"""aaejax.nets.pth: torch checkpoints read without torch (files by tests/_pth_writer.py)."""

import os

import numpy as np
import pytest

import _pth_writer
from aaejax.nets import pth


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_round_trip_dtypes_strides_offsets(tmp_path, legacy):
  rng = np.random.default_rng(0)
  conv = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
  base = np.arange(20, dtype=np.float32)
  state = {
      "conv.weight": conv,
      "count": np.array(7, np.int64),
      "half": rng.normal(size=(5,)).astype(np.float16),
      "mask": np.array([True, False, True]),
      "bytes": np.arange(6, dtype=np.uint8).reshape(2, 3),
      # Two views of one storage: an offset slice and a transposed (non-contiguous) matrix.
      "tail": _pth_writer.StridedView(base, 12, (8,), (1,)),
      "transposed": _pth_writer.StridedView(base, 0, (3, 4), (1, 3)),
  }
  path = tmp_path / "w.pth"
  _pth_writer.save(state, path, legacy=legacy)
  got = pth.load_state_dict(path)
  assert list(got) == list(state)
  np.testing.assert_array_equal(got["conv.weight"], conv)
  assert got["count"].dtype == np.int64 and got["count"].shape == () and got["count"] == 7
  np.testing.assert_array_equal(got["half"], state["half"])
  assert got["half"].dtype == np.float16
  np.testing.assert_array_equal(got["mask"], [True, False, True])
  np.testing.assert_array_equal(got["bytes"], state["bytes"])
  np.testing.assert_array_equal(got["tail"], base[12:])
  np.testing.assert_array_equal(got["transposed"], base[:12].reshape(4, 3).T)
  assert got["transposed"].flags.c_contiguous


def test_nested_checkpoint_keys_are_joined(tmp_path):
  path = tmp_path / "ckpt.pth"
  _pth_writer.save({"a.weight": np.ones(2, np.float32)}, path,
                   wrap=lambda t: {"state_dict": t, "epoch": 3})
  got = pth.load_state_dict(path)
  assert list(got) == ["state_dict.a.weight"]


class _Evil:
  def __reduce__(self):
    return (os.system, ("echo pwned",))


def test_refuses_other_globals(tmp_path):
  path = tmp_path / "evil.pth"
  _pth_writer.save_raw_pickle({"x": _Evil()}, path)
  with pytest.raises(pth.PthError, match=r"evil\.pth: refusing to load the global (posix|os|nt)\.system"):
    pth.load_state_dict(path)


def test_out_of_bounds_view_is_an_error(tmp_path):
  path = tmp_path / "oob.pth"
  _pth_writer.save({"w": _pth_writer.StridedView(np.zeros(4, np.float32), 2, (3,), (1,))}, path)
  with pytest.raises(pth.PthError, match=r"oob\.pth: tensor .* reads past its storage"):
    pth.load_state_dict(path)


def test_bad_files_name_the_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="missing.pth"):
    pth.load_state_dict(tmp_path / "missing.pth")
  junk = tmp_path / "junk.pth"
  junk.write_bytes(b"not a checkpoint at all")
  with pytest.raises(pth.PthError, match="junk.pth"):
    pth.load_state_dict(junk)
  path = tmp_path / "cut.pth"
  _pth_writer.save({"w": np.zeros(100, np.float32)}, path, legacy=True)
  path.write_bytes(path.read_bytes()[:-10])
  with pytest.raises(pth.PthError, match=r"cut\.pth: truncated"):
    pth.load_state_dict(path)


def test_flax_variables_from_torch_checks_every_key():
  template = {"params": {"c": {"kernel": np.zeros((3, 3, 2, 4)), "bias": np.zeros(4)},
                         "bn": {"scale": np.zeros(4), "bias": np.zeros(4)}},
              "batch_stats": {"bn": {"mean": np.zeros(4), "var": np.zeros(4)}}}
  w = np.arange(4 * 2 * 3 * 3, dtype=np.float32).reshape(4, 2, 3, 3)
  state = {"c.weight": w, "c.bias": np.ones(4), "bn.weight": np.ones(4), "bn.bias": np.zeros(4),
           "bn.running_mean": np.zeros(4), "bn.running_var": np.ones(4),
           "bn.num_batches_tracked": np.array(1)}
  name = ".".join
  got = pth.flax_variables_from_torch(state, template, name, "f.pth",
                                      ignore=("num_batches_tracked",))
  np.testing.assert_array_equal(got["params"]["c"]["kernel"], w.transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(got["batch_stats"]["bn"]["var"], np.ones(4))
  with pytest.raises(pth.PthError, match=r"f\.pth: .*'bn\.num_batches_tracked'"):
    pth.flax_variables_from_torch(state, template, name, "f.pth")
  with pytest.raises(pth.PthError, match=r"f\.pth: missing the key 'c\.bias'"):
    pth.flax_variables_from_torch({k: v for k, v in state.items() if k != "c.bias"}, template,
                                  name, "f.pth", ignore=("num_batches_tracked",))
  with pytest.raises(pth.PthError, match=r"f\.pth: key 'c\.weight' has shape \(4, 2, 3, 1\)"):
    pth.flax_variables_from_torch({**state, "c.weight": w[..., :1]}, template, name, "f.pth",
                                  ignore=("num_batches_tracked",))
