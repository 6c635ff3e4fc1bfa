"""Writes torch ``.pth`` state dicts without torch, byte-for-byte in the layout ``torch.save`` uses
(zip format and legacy format), so that :mod:`aaejax.nets.pth` and the network loaders can be tested
without torch or downloaded weights.

The pickles refer to ``torch._utils._rebuild_tensor_v2``, ``torch.FloatStorage``, … exactly as
torch's do; to write those globals without torch, stand-in modules ``torch`` and
``torch._utils`` are put in ``sys.modules`` only while pickling.
"""

from __future__ import annotations

import collections
import contextlib
import io
import pickle
import struct
import sys
import types
import zipfile
from dataclasses import dataclass

import numpy as np

_STORAGE_NAMES = {np.dtype("float64"): "DoubleStorage", np.dtype("float32"): "FloatStorage",
                  np.dtype("float16"): "HalfStorage", np.dtype("int64"): "LongStorage",
                  np.dtype("int32"): "IntStorage", np.dtype("int16"): "ShortStorage",
                  np.dtype("int8"): "CharStorage", np.dtype("uint8"): "ByteStorage",
                  np.dtype("bool"): "BoolStorage"}


@dataclass
class StridedView:
  """A tensor that views ``storage`` (1-D; shared by identity between views) at ``offset``
  with ``size`` and ``stride`` in elements."""
  storage: np.ndarray
  offset: int
  size: tuple
  stride: tuple


class _Tensor:
  def __init__(self, storage_key, offset, size, stride):
    self.storage_key, self.offset, self.size, self.stride = storage_key, offset, size, stride


class _StorageRef:
  def __init__(self, key, cls, numel):
    self.key, self.cls, self.numel = key, cls, numel


@contextlib.contextmanager
def _fake_torch():
  saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
  torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

  def _rebuild_tensor_v2(*args):  # never called: only pickled by name
    raise AssertionError

  _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
  utils._rebuild_tensor_v2 = _rebuild_tensor_v2
  torch._utils = utils
  for name in _STORAGE_NAMES.values():
    cls = type(name, (), {"__module__": "torch"})
    setattr(torch, name, cls)
  sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
  try:
    yield torch
  finally:
    for k, v in saved.items():
      if v is None:
        sys.modules.pop(k, None)
      else:
        sys.modules[k] = v


def _prepare(state):
  """-> (OrderedDict of _Tensor, {key: 1-D storage array})."""
  storages, ids, tensors = {}, {}, collections.OrderedDict()
  for name, value in state.items():
    if isinstance(value, StridedView):
      flat, offset, size, stride = value.storage, value.offset, value.size, value.stride
    else:
      value = np.asarray(value)
      flat = np.ascontiguousarray(value).reshape(-1)
      offset, size = 0, value.shape
      stride = tuple(int(np.prod(value.shape[i + 1:])) for i in range(value.ndim))
    if id(flat) not in ids:
      ids[id(flat)] = str(len(storages))
      storages[ids[id(flat)]] = flat
    tensors[name] = _Tensor(ids[id(flat)], offset, tuple(size), tuple(stride))
  return tensors, storages


class _Pickler(pickle.Pickler):
  def __init__(self, f, torch, storages, legacy):
    super().__init__(f, protocol=2)
    self._torch, self._storages, self._legacy = torch, storages, legacy

  def reducer_override(self, obj):
    if isinstance(obj, _Tensor):
      storage = self._storages[obj.storage_key]
      ref = _StorageRef(obj.storage_key, getattr(self._torch, _STORAGE_NAMES[storage.dtype]),
                        storage.size)
      return (self._torch._utils._rebuild_tensor_v2,
              (ref, obj.offset, obj.size, obj.stride, False, collections.OrderedDict()))
    return NotImplemented

  def persistent_id(self, obj):
    if isinstance(obj, _StorageRef):
      pid = ("storage", obj.cls, obj.key, "cpu", obj.numel)
      return pid + (None,) if self._legacy else pid
    return None


def save(state: dict, path, legacy: bool = False, wrap=None) -> None:
  """Writes ``state`` ({name: array or StridedView}) as torch would, in the zip format (default,
  torch >= 1.6) or the legacy one; ``wrap(tensors) -> obj`` nests the dict (e.g. a checkpoint
  ``{"state_dict": ...}``)."""
  tensors, storages = _prepare(state)
  obj = wrap(tensors) if wrap else tensors
  with _fake_torch() as torch:
    buf = io.BytesIO()
    _Pickler(buf, torch, storages, legacy).dump(obj)
  if legacy:
    with open(path, "wb") as f:
      for header in (0x1950A86A20F9469CFC6C, 1001,
                     {"protocol_version": 1001, "little_endian": True,
                      "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(header, f, protocol=2)
      f.write(buf.getvalue())
      pickle.dump(list(storages), f, protocol=2)
      for flat in storages.values():
        f.write(struct.pack("<q", flat.size))
        f.write(flat.astype(flat.dtype.newbyteorder("<")).tobytes())
  else:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
      z.writestr("archive/data.pkl", buf.getvalue())
      z.writestr("archive/byteorder", "little")
      for key, flat in storages.items():
        z.writestr(f"archive/data/{key}", flat.tobytes())
      z.writestr("archive/version", "3\n")


def save_raw_pickle(obj, path) -> None:
  """A zip checkpoint whose data.pkl is ``pickle.dumps(obj)`` (for the unsafe-global tests)."""
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("archive/data.pkl", pickle.dumps(obj, protocol=2))
