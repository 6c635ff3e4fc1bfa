"""Reads PyTorch ``.pth`` checkpoints (state dicts) into numpy arrays, without torch.

:func:`load_state_dict` understands both formats that ``torch.save`` writes:

- the zip format (torch >= 1.6): a zip archive ``<name>/data.pkl`` (the pickled object, whose
  tensors refer to storages by key) plus one raw little-endian entry ``<name>/data/<key>`` per
  storage;
- the legacy format (torch < 1.6): consecutive pickles in one file (magic number, protocol
  version, system info, the object, the list of storage keys) followed by each storage as an
  int64 element count and its raw bytes.

Loading is safe: the unpickler resolves only the handful of globals a state dict needs
(``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_tensor`` /
``_rebuild_parameter`` and the typed storage classes such as ``torch.FloatStorage``); any other
global is refused with :class:`PthError`, so a malicious file cannot run code.

The tests write such files by hand (``tests/_pth_writer.py``), both formats, to check this
reader without torch.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any, BinaryIO

import ml_dtypes
import numpy as np

__all__ = ["PthError", "STORAGE_DTYPES", "flax_variables_from_torch", "load_state_dict"]

# torch's typed storage class name -> numpy dtype of one element (little-endian).
STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class PthError(ValueError):
  """A ``.pth`` file that is unreadable, unsafe (a global outside the allow-list) or corrupt."""


class _StorageType:
  """Stands for a torch typed storage class (``torch.FloatStorage``…): only its dtype matters."""

  def __init__(self, name: str):
    self.name = name
    self.dtype = STORAGE_DTYPES[name]


class _Storage:
  """A storage's elements: ``array`` is a flat numpy array, filled in on first use (legacy files
  hold the bytes after the pickle)."""

  def __init__(self, key: str, dtype: np.dtype, numel: int):
    self.key, self.dtype, self.numel = key, dtype, numel
    self.array: np.ndarray | None = None


class _TensorRef:
  """A tensor not yet materialised: a strided view of a storage."""

  def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
    self.storage, self.offset = storage, int(offset)
    self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
  """Stands for ``torch._utils._rebuild_tensor(_v2)``; extra arguments (requires_grad, hooks,
  metadata) are irrelevant for inference weights."""
  if not isinstance(storage, _Storage):
    raise pickle.UnpicklingError(f"tensor rebuilt from a {type(storage).__name__}, not a storage")
  return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused):
  """Stands for ``torch._utils._rebuild_parameter``: an ``nn.Parameter`` is its tensor here."""
  return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


class _Unpickler(pickle.Unpickler):
  """Resolves only :data:`_ALLOWED_GLOBALS`; storages come from ``storages(key, type, numel)``."""

  def __init__(self, file: BinaryIO, path: str, storages):
    super().__init__(file, encoding="utf-8")
    self._path, self._storages = path, storages

  def find_class(self, module: str, name: str):
    try:
      return _ALLOWED_GLOBALS[(module, name)]
    except KeyError:
      raise PthError(f"{self._path}: refusing to load the global {module}.{name}: only state "
                     "dicts of tensors can be read (allowed: "
                     + ", ".join(sorted(f"{m}.{n}" for m, n in _ALLOWED_GLOBALS)) + ")") from None

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] in ("storage", b"storage")):
      raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
    storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
    if not isinstance(storage_type, _StorageType):
      raise pickle.UnpicklingError(f"persistent id names no storage type: {pid!r:.80}")
    if len(pid) > 5 and pid[5] is not None:
      raise PthError(f"{self._path}: storage views (legacy view_metadata) are not supported")
    return self._storages(key, storage_type.dtype, numel)


def _materialise(ref: _TensorRef, path: str) -> np.ndarray:
  """Copies the strided view ``ref`` of its storage into a fresh C-contiguous array."""
  flat = ref.storage.array
  if flat is None:
    raise PthError(f"{path}: storage {ref.storage.key!r} has no data")
  if len(ref.size) != len(ref.stride):
    raise PthError(f"{path}: tensor size {ref.size} and stride {ref.stride} differ in rank")
  if any(s < 0 for s in ref.size + ref.stride) or ref.offset < 0:
    raise PthError(f"{path}: negative size/stride/offset {ref.size}/{ref.stride}/{ref.offset}")
  if 0 in ref.size:
    return np.zeros(ref.size, flat.dtype)
  last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
  if last >= flat.size:
    raise PthError(f"{path}: tensor (offset {ref.offset}, size {ref.size}, stride {ref.stride}) "
                   f"reads past its storage {ref.storage.key!r} of {flat.size} elements")
  view = np.lib.stride_tricks.as_strided(
      flat[ref.offset:], shape=ref.size,
      strides=tuple(s * flat.itemsize for s in ref.stride), writeable=False)
  return np.array(view, order="C", copy=True)


def _to_arrays(obj: Any, path: str, prefix: str = "") -> dict[str, np.ndarray]:
  """Flattens nested dicts of tensors into ``{"a.b.c": array}``; other leaves are dropped."""
  out: dict[str, np.ndarray] = {}
  if isinstance(obj, _TensorRef):
    out[prefix] = _materialise(obj, path)
  elif isinstance(obj, dict):
    for k, v in obj.items():
      out.update(_to_arrays(v, path, f"{prefix}.{k}" if prefix else str(k)))
  return out


def _load_zip(f: BinaryIO, path: str) -> Any:
  with zipfile.ZipFile(f) as z:
    names = z.namelist()
    pkl = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    if len(pkl) != 1:
      raise PthError(f"{path}: a zip that is not a torch checkpoint (no single data.pkl entry)")
    root = pkl[0][: -len("data.pkl")]
    byteorder = "little"
    if root + "byteorder" in names:
      byteorder = z.read(root + "byteorder").decode().strip()
    cache: dict[str, _Storage] = {}

    def storages(key, dtype, numel):
      if key not in cache:
        try:
          raw = z.read(f"{root}data/{key}")
        except KeyError:
          raise PthError(f"{path}: storage entry {root}data/{key} is missing") from None
        arr = np.frombuffer(raw, dtype.newbyteorder("<" if byteorder == "little" else ">"))
        st = _Storage(key, dtype, numel)
        st.array = arr.astype(dtype, copy=False)
        cache[key] = st
      return cache[key]

    with z.open(pkl[0]) as pf:
      return _Unpickler(io.BytesIO(pf.read()), path, storages).load()


def _load_legacy(f: BinaryIO, path: str) -> Any:
  def plain_load():
    return _Unpickler(f, path, lambda *a: (_ for _ in ()).throw(
        PthError(f"{path}: storage outside the main pickle"))).load()

  if plain_load() != _LEGACY_MAGIC:
    raise PthError(f"{path}: neither a zip nor a legacy torch checkpoint (bad magic number)")
  protocol = plain_load()
  if protocol != _LEGACY_PROTOCOL:
    raise PthError(f"{path}: legacy checkpoint protocol {protocol}, expected {_LEGACY_PROTOCOL}")
  plain_load()  # sys_info: endianness and type sizes; little-endian assumed below.
  cache: dict[str, _Storage] = {}

  def storages(key, dtype, numel):
    if key not in cache:
      cache[key] = _Storage(key, dtype, numel)
    return cache[key]

  result = _Unpickler(f, path, storages).load()
  keys = plain_load()
  for key in keys:
    key = str(key)
    if key not in cache:
      raise PthError(f"{path}: storage {key!r} is listed but no tensor uses it")
    st = cache[key]
    header = f.read(8)
    if len(header) != 8:
      raise PthError(f"{path}: truncated before storage {key!r}")
    (numel,) = struct.unpack("<q", header)
    raw = f.read(numel * st.dtype.itemsize)
    if len(raw) != numel * st.dtype.itemsize:
      raise PthError(f"{path}: truncated inside storage {key!r}")
    st.array = np.frombuffer(raw, st.dtype)
  return result


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads a torch checkpoint of tensors into ``{name: numpy array}``, without importing torch.

  Args:
    path: a file written by ``torch.save`` (zip or legacy format) holding a dict of tensors,
      possibly nested (nested keys are joined with ``.``; non-tensor leaves are dropped).

  Returns:
    Arrays in the tensors' dtypes (``float32`` for ``FloatStorage``, …), C-contiguous copies
    with the tensors' shapes (torch layout, e.g. OIHW for convolutions).

  Raises:
    FileNotFoundError: ``path`` does not exist.
    PthError: the file is not a torch checkpoint, is truncated, or names a global outside the
      allow-list (the message names the file).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such .pth file")
  with open(path, "rb") as f:
    try:
      if zipfile.is_zipfile(f):
        f.seek(0)
        obj = _load_zip(f, path)
      else:
        f.seek(0)
        obj = _load_legacy(f, path)
    except PthError:
      raise
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, TypeError,
            AttributeError, IndexError, KeyError, struct.error) as e:
      raise PthError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from e
  if not isinstance(obj, dict):
    raise PthError(f"{path}: holds a {type(obj).__name__}, not a dict of tensors")
  return _to_arrays(obj, path)


# flax leaf name -> (torch name, conversion of the torch array to the flax layout).
_LEAF_RULES = {
    # Conv kernels: torch OIHW (depthwise: (C, 1, kh, kw)) -> flax HWIO (depthwise: (kh, kw, 1, C));
    # Dense kernels: torch (out, in) -> flax (in, out).
    "kernel": ("weight", lambda w: w.transpose(2, 3, 1, 0) if w.ndim == 4 else w.T),
    "bias": ("bias", lambda b: b),
    "scale": ("weight", lambda s: s),            # BatchNorm γ
    "mean": ("running_mean", lambda m: m),       # BatchNorm running statistics
    "var": ("running_var", lambda v: v),
}


def flax_variables_from_torch(state: dict[str, np.ndarray], template: Any, module_name,
                              path: str, ignore=()) -> dict:
  """Fills a flax variables tree from a torch state dict, checking that it fits exactly.

  Args:
    state: ``{torch key: array}`` as :func:`load_state_dict` returns.
    template: the flax variables (or their ``jax.ShapeDtypeStruct``s, from ``jax.eval_shape``)
      of the model, collections ``params`` and optionally ``batch_stats``; leaves named
      ``kernel``, ``bias``, ``scale``, ``mean``, ``var`` (flax ``Conv``/``Dense``/``BatchNorm``).
    module_name: ``fn(flax module path tuple) -> torch module prefix`` (e.g.
      ``("blocks_3", "bn1") -> "_blocks.3._bn1"``).
    path: the file the state came from, for error messages.
    ignore: suffixes of torch keys that may be present but are not used (e.g.
      ``"num_batches_tracked"``, or a classifier head the flax model lacks).

  Returns:
    A variables dict of float32 numpy arrays with the template's structure.

  Raises:
    PthError: a key the model needs is missing, has the wrong shape, or the file has a key the
      model does not use (each message names the key and the file).
  """
  from flax import traverse_util  # Local: keeps `load_state_dict` free of JAX imports.

  flat = traverse_util.flatten_dict(template)
  out, used = {}, set()
  for keys, leaf in flat.items():
    *modules, leaf_name = keys[1:]
    if leaf_name not in _LEAF_RULES:
      raise PthError(f"{path}: no torch counterpart for the flax leaf {'/'.join(keys)}")
    torch_leaf, convert = _LEAF_RULES[leaf_name]
    key = f"{module_name(tuple(modules))}.{torch_leaf}"
    if key not in state:
      raise PthError(f"{path}: missing the key {key!r} (for {'/'.join(keys)}); is this the "
                     "right checkpoint?")
    value = np.asarray(convert(state[key]), np.float32)
    if value.shape != tuple(leaf.shape):
      raise PthError(f"{path}: key {key!r} has shape {state[key].shape}, which converts to "
                     f"{value.shape}, but {'/'.join(keys)} needs {tuple(leaf.shape)}")
    out[keys] = value
    used.add(key)
  unused = sorted(k for k in state if k not in used and not k.endswith(tuple(ignore)))
  if unused:
    raise PthError(f"{path}: {len(unused)} keys the model does not use, e.g. {unused[:3]}; is "
                   "this the right checkpoint?")
  return traverse_util.unflatten_dict(out)
