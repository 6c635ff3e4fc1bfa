"""Dataset loading and on-device input pipeline for MNIST-like datasets.

Host side: :func:`load_numpy` reads canonical IDX files (gzip or raw) from a
data directory (argument or the ``AAEJAX_DATA_DIR`` environment variable), from
well-known system locations, from the download cache (fetched there on first use by
:mod:`aaejax.downloads`), or, as a fallback, through ``tensorflow_datasets``.

Device side: :class:`DeviceDataset` puts the whole dataset on the accelerator
once; :func:`epoch_permutation` and :func:`gather_batch` are pure, jittable
functions so that shuffling and batching happen on device, and the data order
depends only on ``(key, epoch)``, which makes resuming from a checkpoint exact.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import zlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from aaejax import downloads

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
  return importlib.import_module(f"aaejax.{OWN_LOADERS[name]}")


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
  first where allowed (:func:`aaejax.downloads.fetch`); else ``(None, why not)``."""
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
  missing (md5-checked; see :mod:`aaejax.downloads`), then ``tensorflow_datasets`` if
  importable. Results are cached per process; the returned arrays are shared and
  read-only (copy them before mutating).

  Args:
    name: Dataset name, one of ``SUPPORTED_DATASETS`` (tfds naming).
    split: ``"train"`` or ``"test"``.
    data_dir: Data directory; defaults to ``$AAEJAX_DATA_DIR``.
    cache_dir: Cache root of the downloads and of decoded images (``celeb_a``); defaults to
      ``$AAEJAX_CACHE_DIR``, else ``~/.cache/aaejax``.
    download: ``False`` (or ``$AAEJAX_NO_DOWNLOAD=1``) forbids the network.
      Datasets of ``OWN_LOADERS`` (``celeb_a``: :func:`aaejax.celeba.load_numpy`, which reads
      ``<data_dir>/celeba/``) are never downloaded; ``mnist_m_style``
      (:func:`aaejax.mnistm.load`, MNIST blended with photo crops, cached) downloads MNIST.

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


def balanced_labeled_subset(
    labels: np.ndarray, num_labeled: int, num_classes: int, seed: int
) -> np.ndarray:
  """Picks a class-balanced subset of examples, e.g. for semi-supervised runs.

  Args:
    labels: Integer labels of shape ``(N,)``.
    num_labeled: Subset size; must be divisible by ``num_classes``.
    num_classes: Number of classes.
    seed: Seed for ``np.random.default_rng``.

  Returns:
    Sorted int64 indices; ``num_labeled // num_classes`` per class, or all
    indices if ``num_labeled == len(labels)``.

  Raises:
    ValueError: If ``num_labeled`` is not positive, not divisible by
      ``num_classes``, or exceeds the examples available in some class.

  Example:

    >>> labels = np.array([0, 1, 0, 1, 0, 1, 2, 2])
    >>> idx = balanced_labeled_subset(labels, 6, 3, seed=0)
    >>> np.bincount(labels[idx]).tolist()
    [2, 2, 2]
  """
  labels = np.asarray(labels)
  if num_labeled == len(labels):
    return np.arange(len(labels))
  if num_labeled <= 0 or num_classes <= 0 or num_labeled % num_classes:
    raise ValueError(
        f"num_labeled={num_labeled} must be a positive multiple of num_classes={num_classes}"
    )
  per_class = num_labeled // num_classes
  rng = np.random.default_rng(seed)
  chosen = []
  for c in range(num_classes):
    candidates = np.flatnonzero(labels == c)
    if len(candidates) < per_class:
      raise ValueError(
          f"Class {c} has {len(candidates)} examples, fewer than the "
          f"{per_class} requested per class"
      )
    chosen.append(rng.choice(candidates, size=per_class, replace=False))
  return np.sort(np.concatenate(chosen))


class DeviceDataset:
  """An in-memory dataset held on the accelerator, shuffled there (no per-step host copies).

  Attributes:
    arrays: The dataset arrays on device, all with the same leading dimension.
    num_examples: Size of that leading dimension.

  Example:

    >>> ds = DeviceDataset({"image": np.zeros((10, 28, 28, 1), np.uint8), "label": np.arange(10)})
    >>> ds.num_examples, ds.steps_per_epoch(4)
    (10, 2)
  """

  def __init__(self, arrays: dict[str, np.ndarray], sharding: Any = None):
    """Transfers every array to device once.

    Args:
      arrays: Host arrays with a common leading (example) dimension.
      sharding: ``jax.sharding.Sharding`` for every array (typically a
        replicated ``NamedSharding``); ``None`` uses the default device.

    Raises:
      ValueError: If ``arrays`` is empty or leading dimensions differ.
    """
    sizes = {k: np.shape(v)[0] for k, v in arrays.items()}
    if len(set(sizes.values())) != 1:
      raise ValueError(f"Arrays must share one non-empty leading dimension, got {sizes}")
    self.arrays: dict[str, jax.Array] = {
        k: jax.device_put(v, sharding) for k, v in arrays.items()
    }
    self.num_examples: int = next(iter(sizes.values()))

  def steps_per_epoch(self, batch_size: int) -> int:
    """Returns the number of full batches per epoch (the remainder is dropped).

    Raises:
      ValueError: If ``batch_size`` is not in ``[1, num_examples]``.
    """
    if not 0 < batch_size <= self.num_examples:
      raise ValueError(
          f"batch_size={batch_size} must be in [1, {self.num_examples}]"
      )
    return self.num_examples // batch_size



def labeled_subset(num_labeled: int, num_classes: int):
  """A stream source (:class:`aaejax.core.Stream` ``select``): the class-balanced subset of
  ``num_labeled`` examples that the seed picks (:func:`balanced_labeled_subset`).

  >>> train = {"image": np.arange(8)[:, None], "label": np.array([0, 1, 0, 1, 0, 1, 0, 1])}
  >>> np.bincount(labeled_subset(4, 2)(train, 0)["label"]).tolist()
  [2, 2]
  """

  def select(train, seed):
    keep = balanced_labeled_subset(train["label"], num_labeled, num_classes, seed)
    return {"image": np.asarray(train["image"])[keep], "label": np.asarray(train["label"])[keep]}

  return select


def unlabeled_rest(num_labeled: int, num_classes: int):
  """A stream source: the images outside :func:`labeled_subset`'s pick, labels dropped.

  >>> train = {"image": np.arange(8)[:, None], "label": np.array([0, 1, 0, 1, 0, 1, 0, 1])}
  >>> sorted(unlabeled_rest(4, 2)(train, 0))
  ['image']
  """

  def select(train, seed):
    keep = balanced_labeled_subset(train["label"], num_labeled, num_classes, seed)
    rest = np.setdiff1d(np.arange(len(train["label"])), keep)
    return {"image": np.asarray(train["image"])[rest]}

  return select


def epoch_permutation(key: jax.Array, epoch: int | jax.Array, num_examples: int) -> jax.Array:
  """Returns the example order for ``epoch``; depends only on ``(key, epoch)``.

  Pure and jittable with ``num_examples`` static.

  Args:
    key: Data-order PRNG key.
    epoch: Epoch number (may be traced).
    num_examples: Dataset size.

  Returns:
    An int permutation of ``range(num_examples)``.

  Example:

    >>> key = jax.random.key(0)
    >>> perm = epoch_permutation(key, 1, 6)
    >>> sorted(perm.tolist()), bool((perm == epoch_permutation(key, 1, 6)).all())
    ([0, 1, 2, 3, 4, 5], True)
  """
  return jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)


def gather_batch(
    arrays: dict[str, jax.Array], perm: jax.Array, index: int | jax.Array, batch_size: int
) -> dict[str, jax.Array]:
  """Gathers batch ``index`` of an epoch from on-device arrays.

  Pure and jittable with ``batch_size`` static; ``index`` may be traced. As
  with ``lax.dynamic_slice``, an out-of-range ``index`` is clamped, so keep
  ``index < len(perm) // batch_size``.

  Args:
    arrays: Dataset arrays (e.g. ``DeviceDataset.arrays``).
    perm: Epoch permutation from :func:`epoch_permutation`.
    index: Step within the epoch.
    batch_size: Batch size.

  Returns:
    ``{k: v[perm[index * batch_size:(index + 1) * batch_size]]}``.

  Example:

    >>> perm = epoch_permutation(jax.random.key(0), 0, 6)
    >>> batch = gather_batch({"x": 10 * jnp.arange(6)}, perm, 1, 2)
    >>> batch["x"].tolist() == (10 * perm[2:4]).tolist()
    True
  """
  idx = jax.lax.dynamic_slice_in_dim(perm, index * batch_size, batch_size)
  return {k: jnp.take(v, idx, axis=0) for k, v in arrays.items()}


def to_float(images: np.ndarray | jax.Array) -> jax.Array:
  """Converts uint8 images in ``[0, 255]`` to float32 in ``[0, 1]``.

  Example:

    >>> to_float(np.array([0, 255], np.uint8)).tolist()
    [0.0, 1.0]
  """
  return jnp.asarray(images, dtype=jnp.float32) / 255.0


def load_device_dataset(
    name: str, split: str, data_dir: str | None = None, sharding: Any = None
) -> DeviceDataset:
  """Loads a dataset split (see :func:`load_numpy`) and puts it on device.

  Args:
    name: Dataset name, one of ``SUPPORTED_DATASETS``.
    split: ``"train"`` or ``"test"``.
    data_dir: Data directory; defaults to ``$AAEJAX_DATA_DIR``.
    sharding: Sharding for the device arrays; ``None`` = default device.

  Returns:
    The :class:`DeviceDataset`.
  """
  return DeviceDataset(load_numpy(name, split, data_dir), sharding)
