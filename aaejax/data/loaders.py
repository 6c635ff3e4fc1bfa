"""Host-side loading of MNIST-like data sets into numpy arrays.

:func:`load_numpy` reads canonical IDX files (gzip or raw) from a data directory (argument or
the ``AAEJAX_DATA_DIR`` environment variable), from well-known system locations, from the
download cache (fetched there on first use by :mod:`aaejax.data.downloads`), or, as a
fallback, through ``tensorflow_datasets``. Data sets with a loader of their own (CelebA,
the MNIST-M-style set) are read by it.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import zlib

import numpy as np

from aaejax.data import downloads


DATA_DIR_ENV = "AAEJAX_DATA_DIR"
SUPPORTED_DATASETS = ("mnist", "fashion_mnist", "celeb_a", "mnist_m_style")
SPLITS = ("train", "test")
# Image shape (H, W, C) and number of classes of each supported dataset (0: no labels; its
# arrays have no "label").
IMAGE_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "celeb_a": (64, 64, 3),
                "mnist_m_style": (28, 28, 3)}
NUM_CLASSES = {"mnist": 10, "fashion_mnist": 10, "celeb_a": 0, "mnist_m_style": 10}
# Datasets with a loader module of their own (not plain IDX files): name -> aaejax module.
OWN_LOADERS = {"celeb_a": "celeba", "mnist_m_style": "mnistm"}
# Those of them whose load_numpy also takes download= and source cache_dir= (built from MNIST).
OWN_LOADERS_FROM_MNIST = ("mnist_m_style",)

# Canonical IDX file names (without the optional ``.gz`` suffix) per split.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Extra directories searched per dataset after ``<data_dir>/<name>/``.
EXTRA_DATA_DIRS: dict[str, list[str]] = {
    "mnist": [],
    "fashion_mnist": ["/usr/share/datasets/fashion-mnist"],
}

_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049
_IDX_UINT8 = 0x08
_GZIP_MAGIC = b"\x1f\x8b"

_CACHE: dict[tuple[str, ...], dict[str, np.ndarray]] = {}


class DatasetNotFoundError(FileNotFoundError):
  """Raised when a dataset is not found locally nor in the download cache, cannot be downloaded
  there, and cannot be loaded through tfds; the message says what was tried and how to fix it."""


class DataFileError(ValueError):
  """A data file is missing, unreadable, corrupt or inconsistent; the message names the file."""


def has_labels(name: str) -> bool:
  """Whether dataset ``name``'s arrays hold a ``"label"`` (CelebA's do not)."""
  return NUM_CLASSES.get(name, 0) > 0


def _own_loader(name: str):
  import importlib
  return importlib.import_module(f"aaejax.data.{OWN_LOADERS[name]}")


def resolve_data_dir(data_dir: str | None = None) -> str | None:
  """Returns the data directory to search.

  Args:
    data_dir: Explicit directory; wins when non-empty.

  Returns:
    ``data_dir`` if non-empty, else the value of ``$AAEJAX_DATA_DIR`` if
    non-empty, else ``None``. ``~`` is expanded.
  """
  path = data_dir or os.environ.get(DATA_DIR_ENV) or None
  return os.path.expanduser(path) if path else None


def read_idx(path: str) -> np.ndarray:
  """Reads an IDX file of uint8 images or labels.

  The file may be gzip-compressed or raw; compression is detected from the
  magic bytes, not the file name.

  Args:
    path: Path of the IDX file.

  Returns:
    A uint8 array of shape ``(n, rows, cols)`` (magic 2051) or ``(n,)``
    (magic 2049).

  Raises:
    DataFileError: (a ValueError) naming ``path``, if the file cannot be read, or is
      corrupt (a bad gzip stream, a failed CRC), truncated, or not a uint8 IDX file.

  Example:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "labels-idx1-ubyte")
    >>> with open(path, "wb") as f:  # magic 2049 (uint8, 1-D), 3 entries, then the data
    ...   _ = f.write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    >>> read_idx(path).tolist()
    [7, 8, 9]
  """
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise DataFileError(f"{path}: cannot read: {e.strerror or e}") from e
  if raw[:2] == _GZIP_MAGIC:
    try:
      raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:  # bad CRC or header, truncated, bad deflate data
      raise DataFileError(f"{path}: corrupt gzip stream ({type(e).__name__}: {e}); "
                          "download the file again") from e
  if len(raw) < 4:
    raise DataFileError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
  magic = int.from_bytes(raw[:4], "big")
  if magic not in (_IDX_IMAGES_MAGIC, _IDX_LABELS_MAGIC):
    raise DataFileError(
        f"{path}: bad IDX magic {magic:#010x}; expected {_IDX_IMAGES_MAGIC} "
        f"(images) or {_IDX_LABELS_MAGIC} (labels)"
    )
  if raw[2] != _IDX_UINT8:
    raise DataFileError(f"{path}: unsupported IDX dtype code {raw[2]:#04x} (want 0x08 uint8)")
  ndim = raw[3]
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise DataFileError(f"{path}: truncated IDX header")
  shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
  expected = header + int(np.prod(shape))
  if len(raw) != expected:
    raise DataFileError(
        f"{path}: IDX size mismatch for shape {shape}: {len(raw)} bytes, expected {expected}"
    )
  return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find_idx(directory: str, stem: str) -> str | None:
  """Returns ``directory/stem`` or ``directory/stem.gz`` if either exists."""
  for candidate in (stem, stem + ".gz"):
    path = os.path.join(directory, candidate)
    if os.path.isfile(path):
      return path
  return None


def _load_idx_pair(image_path: str, label_path: str, num_classes: int = 10
                   ) -> dict[str, np.ndarray]:
  """Reads an image/label IDX pair into the ``load_numpy`` output format.

  Raises:
    DataFileError: naming the file, if either file is bad (:func:`read_idx`), the images
      are not ``(n, 28, 28)`` with n >= 1, the labels not ``(n,)`` of the same n, or a label
      is outside ``[0, num_classes)``.
  """
  images = read_idx(image_path)
  labels = read_idx(label_path)
  if images.ndim != 3 or images.shape[1:] != (28, 28):
    raise DataFileError(f"{image_path}: expected (n, 28, 28) images (IDX magic "
                        f"{_IDX_IMAGES_MAGIC}), got shape {images.shape}")
  if not images.shape[0]:
    raise DataFileError(f"{image_path}: holds no images")
  if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
    raise DataFileError(
        f"{label_path}: {labels.shape[0] if labels.ndim == 1 else labels.shape} labels do not "
        f"match the {images.shape[0]} images of {image_path}"
    )
  bad = np.flatnonzero(labels >= num_classes)
  if bad.size:
    more = f" (and {bad.size - 1} more)" if bad.size > 1 else ""
    raise DataFileError(f"{label_path}: label {labels[bad[0]]} at index {bad[0]}{more} outside "
                        f"[0, {num_classes})")
  return {"image": images[..., None], "label": labels.astype(np.int32)}


_TFDS_CHUNK = 4096  # examples per tf.data batch read by _load_tfds


def _has_tensorflow() -> bool:
  """Whether TensorFlow is installed (checked without importing it)."""
  return importlib.util.find_spec("tensorflow") is not None


def _load_tfds(name: str, split: str, data_dir: str | None) -> dict[str, np.ndarray]:
  """Loads a whole split with ``tensorflow_datasets``, in :func:`load_numpy`'s format.

  With TensorFlow installed, ``tfds.load(..., batch_size=-1)`` (which downloads and prepares
  the dataset on first use); without it, ``tfds.data_source``, which reads a dataset already
  prepared in the ``array_record`` format (tfds needs TensorFlow to *prepare* mnist and
  fashion_mnist: ``tfds build mnist --file_format=array_record`` on a machine that has it).

  Returns:
    ``{"image": uint8 (N, H, W, C)}`` plus ``"label": int32 (N,)`` if the dataset has labels.

  Raises:
    ImportError: If tfds (or, to prepare a dataset, TensorFlow) is not installed.
    Exception: Whatever tfds raises when the dataset is unavailable.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  if _has_tensorflow():
    ds = tfds.load(name, split=split, data_dir=data_dir, download=True)
    keys = [k for k in ("image", "label") if k in ds.element_spec]
    # Fixed-size batches, not batch_size=-1: that needs the split's size in the dataset's
    # metadata (absent under tfds.testing.mock_data, where TF then aborts the process).
    ds = ds.map(lambda example: {k: example[k] for k in keys}).batch(_TFDS_CHUNK)
    chunks = list(tfds.as_numpy(ds))
  else:
    records = tfds.data_source(name, split=split, data_dir=data_dir)
    examples = [records[i] for i in range(len(records))]
    keys = [k for k in ("image", "label") if examples and k in examples[0]]
    chunks = [{k: np.stack([e[k] for e in examples]) for k in keys}] if examples else []
  if not chunks or "image" not in keys:
    raise ValueError(f"tfds {name!r} split {split!r} has no examples or no 'image' feature")
  arrays = {k: np.concatenate([c[k] for c in chunks]) for k in keys}
  image = np.asarray(arrays["image"], dtype=np.uint8)
  out = {"image": image[..., None] if image.ndim == 3 else image}
  if "label" in arrays:
    out["label"] = np.asarray(arrays["label"], dtype=np.int32)
  return out


def _cached(key: tuple[str, ...], arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Marks ``arrays`` read-only, stores them under ``key`` and returns them."""
  for v in arrays.values():
    v.setflags(write=False)
  _CACHE[key] = arrays
  return arrays


def _searched(name: str, root: str | None) -> list[str]:
  return ([os.path.join(root, name)] if root else []) + EXTRA_DATA_DIRS[name]


def _local_files(name: str, split: str, root: str | None) -> tuple[str, str, str] | None:
  """``(directory, image file, label file)`` of the first searched directory holding both."""
  image_stem, label_stem = IDX_FILES[split]
  for directory in _searched(name, root):
    image_path, label_path = _find_idx(directory, image_stem), _find_idx(directory, label_stem)
    if image_path and label_path:
      return directory, image_path, label_path
    if image_path or label_path:
      missing = os.path.join(directory, label_stem if image_path else image_stem)
      raise DataFileError(f"{missing}[.gz] is missing: {image_path or label_path} is there "
                          f"but the {split} split needs both files")
  return None


def _downloaded_files(name: str, split: str, cache_dir: str | None, download: bool
                      ) -> tuple[tuple[str, str, str] | None, str]:
  """``(directory, image file, label file)`` in the download cache, fetching missing files
  first where allowed (:func:`aaejax.data.downloads.fetch`); else ``(None, why not)``."""
  if name not in downloads.MD5:
    return None, f"no download source for {name!r}"
  files = [stem + ".gz" for stem in IDX_FILES[split]]
  try:
    directory = downloads.fetch(name, files, cache_dir, download)
  except downloads.DownloadError as e:
    return None, str(e)
  return (directory, *(os.path.join(directory, f) for f in files)), ""


def source(name: str, split: str = "train", data_dir: str | None = None,
           cache_dir: str | None = None) -> str:
  """Where :func:`load_numpy` reads ``name``'s ``split``: a directory (a data directory or the
  download cache), a file, or ``"tensorflow_datasets"``. Never downloads."""
  if name in OWN_LOADERS_FROM_MNIST:
    return _own_loader(name).source(split, data_dir, cache_dir)
  if name in OWN_LOADERS:
    return _own_loader(name).source(split, data_dir)
  found = (_local_files(name, split, resolve_data_dir(data_dir))
           or _downloaded_files(name, split, cache_dir, download=False)[0])
  return os.path.abspath(found[0]) if found else "tensorflow_datasets"


def load_numpy(name: str, split: str, data_dir: str | None = None, *,
               cache_dir: str | None = None, download: bool = True) -> dict[str, np.ndarray]:
  """Loads a whole dataset split into host memory.

  Search order: ``<data_dir>/<name>/`` with the canonical IDX file names
  (``.gz`` optional), then ``EXTRA_DATA_DIRS[name]``, then the download cache
  ``<cache_dir>/datasets/<name>/``, downloading the split's two files there if they are
  missing (md5-checked; see :mod:`aaejax.data.downloads`), then ``tensorflow_datasets`` if
  importable. Results are cached per process; the returned arrays are shared and
  read-only (copy them before mutating).

  Args:
    name: Dataset name, one of ``SUPPORTED_DATASETS`` (tfds naming).
    split: ``"train"`` or ``"test"``.
    data_dir: Data directory; defaults to ``$AAEJAX_DATA_DIR``.
    cache_dir: Cache root of the downloads and of decoded images (``celeb_a``); defaults to
      ``$AAEJAX_CACHE_DIR``, else ``~/.cache/aaejax``.
    download: ``False`` (or ``$AAEJAX_NO_DOWNLOAD=1``) forbids the network.
      Datasets of ``OWN_LOADERS`` (``celeb_a``: :func:`aaejax.data.celeba.load_numpy`, which reads
      ``<data_dir>/celeba/``) are never downloaded; ``mnist_m_style``
      (:func:`aaejax.data.mnistm.load`, MNIST blended with photo crops, cached) downloads MNIST.

  Returns:
    ``{"image": uint8 (N, 28, 28, 1), "label": int32 (N,)}``; for ``celeb_a``
    ``{"image": uint8 (N, 64, 64, 3)}`` (no labels); ``mnist_m_style``'s images are RGB.

  Raises:
    ValueError: For an unknown dataset or split.
    DataFileError: (a ValueError) naming the file, for a corrupt or inconsistent file, or
      a directory holding one file of the split's image/label pair but not the other.
    DatasetNotFoundError: If the dataset is found nowhere.
  """
  if name not in SUPPORTED_DATASETS:
    raise ValueError(f"Unknown dataset {name!r}; supported: {SUPPORTED_DATASETS}")
  if split not in SPLITS:
    raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}")
  if name in OWN_LOADERS_FROM_MNIST:
    return _own_loader(name).load_numpy(split, data_dir, cache_dir, download)
  if name in OWN_LOADERS:
    return _own_loader(name).load_numpy(split, data_dir, cache_dir)
  root = resolve_data_dir(data_dir)
  searched = _searched(name, root)
  image_stem, label_stem = IDX_FILES[split]
  found = _local_files(name, split, root)
  download_error = ""
  if not found:
    found, download_error = _downloaded_files(name, split, cache_dir, download)
  if found:
    directory, image_path, label_path = found
    key = (name, split, os.path.abspath(directory))
    if key in _CACHE:
      return _CACHE[key]
    return _cached(key, _load_idx_pair(image_path, label_path, NUM_CLASSES[name]))

  key = (name, split, "tfds", root or "")
  if key in _CACHE:
    return _CACHE[key]
  try:
    return _cached(key, _load_tfds(name, split, root))
  except Exception as e:  # pylint: disable=broad-except  # Any tfds failure.
    tfds_error = f"{type(e).__name__}: {e}"

  hints = [
      f"Dataset {name!r} split {split!r} not found.",
      f"Searched directories: {searched or '(none; no data_dir given)'}.",
      f"Expected files {image_stem}[.gz] and {label_stem}[.gz] in <data_dir>/{name}/.",
      f"Download: {download_error.rstrip('.')}.",
      f"Set config.data_dir or the {DATA_DIR_ENV} environment variable to a "
      f"directory containing {name}/.",
  ]
  if name == "fashion_mnist":
    hints.append("On Debian/Ubuntu: apt-get install dataset-fashion-mnist.")
  hints.append(
      f"Or install tensorflow_datasets with pip install 'aaejax[tfds]' "
      f"(tfds attempt failed with {tfds_error})."
  )
  raise DatasetNotFoundError(" ".join(hints))
