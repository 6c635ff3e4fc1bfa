"""An MNIST-M-style second domain for domain-adversarial training (DANN), built locally.

Ganin et al. (2016, "Domain-Adversarial Training of Neural Networks") build MNIST-M by
blending each MNIST digit with a random 28 × 28 crop of a colour photo from BSDS500::

  out[i, y, x, c] = |patch[i, y, x, c] - digit[i, y, x]|      (uint8, digit in [0, 255])

the grey digit broadcast over the three RGB channels: the background takes the photo's
colours, the stroke their inverse. BSDS500 cannot be fetched here, so this module applies
the same recipe to the colour photos that ship inside scikit-image's wheel
(:data:`PHOTOS`: ``skimage.data``'s astronaut, chelsea, coffee, immunohistochemistry,
rocket and the left view of stereo_motorcycle; hubble_deep_field and retina are left out,
being mostly black, and the grey or synthetic images too). **This is an MNIST-M-style set
named** ``"mnist_m_style"``, **not the benchmark MNIST-M**: 6 photos instead of BSDS500's
500 give other textures, so numbers on it are not comparable to the paper's MNIST-M numbers.

Each digit gets its own photo (uniform over :data:`PHOTOS`) and its own crop position
(uniform over the photo's valid positions), drawn from a ``numpy`` Generator, so a set is
deterministic from its seed. The train split is built from MNIST train, the test split
from MNIST test, both from the same photo set (different crops: the split's index joins the
seed, see :func:`load`). Labels are MNIST's.

:func:`load` (also reached as ``aaejax.data.load_numpy("mnist_m_style", split, ...)``)
builds a split once (vectorised numpy, seconds for 60,000 digits) and caches it as ``.npz``
in ``<cache dir>/datasets/mnist_m_style/`` (the cache dir of
:func:`aaejax.data.downloads.resolve_cache_dir`), in a file named by split, seed and
:data:`CACHE_VERSION`; later loads read that file (and need neither MNIST nor scikit-image).

scikit-image is an optional dependency: ``pip install 'aaejax[mnistm]'``.
"""

from __future__ import annotations

import os
import warnings
from typing import Sequence

import numpy as np

from aaejax.data import downloads, loaders

NAME = "mnist_m_style"
IMAGE_SHAPE = (28, 28, 3)
CACHE_VERSION = 1  # bump when the recipe, the photos or the random draws change
# skimage.data loaders of the colour photos used (each loads from the wheel, no download).
PHOTOS = ("astronaut", "chelsea", "coffee", "immunohistochemistry", "rocket",
          "stereo_motorcycle")
INSTALL_HINT = "pip install 'aaejax[mnistm]'"

_MEMORY: dict[str, dict[str, np.ndarray]] = {}  # cache file -> arrays, per process


def load_photos() -> list[np.ndarray]:
  """The :data:`PHOTOS` as uint8 ``(H, W, 3)`` arrays, from scikit-image's wheel.

  Raises:
    DatasetNotFoundError: If scikit-image is not installed (the message names
      ``pip install 'aaejax[mnistm]'``) or a photo cannot be loaded.
  """
  try:
    import skimage.data  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise loaders.DatasetNotFoundError(
        f"{NAME} needs scikit-image for its photos ({type(e).__name__}: {e}): "
        f"{INSTALL_HINT}") from e
  photos = []
  for name in PHOTOS:
    try:
      photo = getattr(skimage.data, name)()
    except Exception as e:  # pylint: disable=broad-except  # a missing or unfetchable file
      raise loaders.DatasetNotFoundError(
          f"{NAME}: skimage.data.{name}() failed ({type(e).__name__}: {e}); "
          f"reinstall scikit-image: {INSTALL_HINT}") from e
    if isinstance(photo, tuple):  # stereo_motorcycle: (left, right, disparity)
      photo = photo[0]
    photos.append(np.asarray(photo, np.uint8))
  return photos


def blend(digits: np.ndarray, patches: np.ndarray) -> np.ndarray:
  """Ganin et al.'s blend ``|patch - digit|`` per channel, in uint8 without overflow.

  Args:
    digits: uint8 ``(n, 28, 28)`` or ``(n, 28, 28, 1)`` grey digits.
    patches: uint8 ``(n, 28, 28, 3)`` colour patches.

  Returns:
    uint8 ``(n, 28, 28, 3)``.

  >>> blend(np.array([[[0, 255]]], np.uint8), np.array([[[[10, 20, 30], [10, 20, 30]]]],
  ...                                                   np.uint8)).tolist()
  [[[[10, 20, 30], [245, 235, 225]]]]
  """
  digits = np.asarray(digits, np.uint8)
  if digits.ndim == 3:
    digits = digits[..., None]
  patches = np.asarray(patches, np.uint8)
  out = np.maximum(patches, digits)
  out -= np.minimum(patches, digits)
  return out


def random_patches(photos: Sequence[np.ndarray], n: int, rng: np.random.Generator,
                   size: int = 28) -> np.ndarray:
  """``n`` random ``size × size`` crops: each of a photo drawn uniformly from ``photos``, at
  a position drawn uniformly from that photo's valid ones. uint8 ``(n, size, size, 3)``.

  Vectorised: one gather per photo.
  """
  shapes = np.array([p.shape[:2] for p in photos], np.int64)
  for p in photos:
    if p.ndim != 3 or p.shape[2] != 3 or p.shape[0] < size or p.shape[1] < size:
      raise ValueError(f"photos must be (H >= {size}, W >= {size}, 3), got {p.shape}")
  which = rng.integers(0, len(photos), n)
  top = rng.integers(0, shapes[which, 0] - size + 1)
  left = rng.integers(0, shapes[which, 1] - size + 1)
  offsets = np.arange(size)
  patches = np.empty((n, size, size, 3), np.uint8)
  for k, photo in enumerate(photos):
    idx = np.flatnonzero(which == k)
    rows = (top[idx, None] + offsets)[:, :, None]   # (m, size, 1)
    cols = (left[idx, None] + offsets)[:, None, :]  # (m, 1, size)
    patches[idx] = np.asarray(photo, np.uint8)[rows, cols]
  return patches


def build(mnist_images: np.ndarray, mnist_labels: np.ndarray, seed: int | Sequence[int],
          photos: Sequence[np.ndarray] | None = None) -> dict[str, np.ndarray]:
  """Blends each MNIST digit with a random crop of a colour photo (the module doc's recipe).

  Args:
    mnist_images: uint8 ``(n, 28, 28)`` or ``(n, 28, 28, 1)`` MNIST digits.
    mnist_labels: ``(n,)`` labels.
    seed: Seed of ``np.random.default_rng`` (an int or a sequence of ints).
    photos: uint8 ``(H, W, 3)`` photos; default :func:`load_photos` (scikit-image).

  Returns:
    ``{"image": uint8 (n, 28, 28, 3), "label": int32 (n,)}``.

  Raises:
    ValueError: For images not ``(n, 28, 28[, 1])`` or labels not ``(n,)``.
    DatasetNotFoundError: If ``photos`` is None and scikit-image is missing.

  Example, 2 fake digits on a photo of two flat colours:

  >>> digits = np.zeros((2, 28, 28), np.uint8); digits[1] = 255
  >>> photo = np.zeros((28, 56, 3), np.uint8); photo[:, 28:] = (200, 100, 0)
  >>> out = build(digits, [3, 7], seed=0, photos=[photo])
  >>> out["image"].shape, out["image"].dtype, out["label"].tolist()
  ((2, 28, 28, 3), dtype('uint8'), [3, 7])
  >>> bool((out["image"] == build(digits, [3, 7], seed=0, photos=[photo])["image"]).all())
  True
  """
  images = np.asarray(mnist_images)
  if images.ndim == 4 and images.shape[3] == 1:
    images = images[..., 0]
  if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE[:2]:
    raise ValueError(f"mnist_images must be (n, 28, 28) or (n, 28, 28, 1), got "
                     f"{np.shape(mnist_images)}")
  labels = np.asarray(mnist_labels)
  if labels.shape != (len(images),):
    raise ValueError(f"mnist_labels must be ({len(images)},), got {labels.shape}")
  photos = load_photos() if photos is None else list(photos)
  patches = random_patches(photos, len(images), np.random.default_rng(seed))
  return {"image": blend(images.astype(np.uint8, copy=False), patches),
          "label": labels.astype(np.int32)}


def cache_path(split: str, seed: int = 0, cache_dir: str | None = None) -> str:
  """``<cache dir>/datasets/mnist_m_style/mnist_m_style-<split>-seed<seed>-v<version>.npz``.

  >>> cache_path("test", 3, "/tmp/c")
  '/tmp/c/datasets/mnist_m_style/mnist_m_style-test-seed3-v1.npz'
  """
  return os.path.join(downloads.dataset_dir(NAME, cache_dir),
                      f"{NAME}-{split}-seed{int(seed)}-v{CACHE_VERSION}.npz")


def _read_cache(path: str) -> dict[str, np.ndarray] | None:
  """The arrays of a cache file, or None if absent, torn or not this module's."""
  if not os.path.isfile(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {"image": f["image"], "label": f["label"]}
  except (OSError, ValueError, EOFError, KeyError):
    return None
  image, label = arrays["image"], arrays["label"]
  if (image.dtype != np.uint8 or image.ndim != 4 or image.shape[1:] != IMAGE_SHAPE
      or label.dtype != np.int32 or label.shape != image.shape[:1]):
    return None
  return arrays


def source(split: str = "train", data_dir: str | None = None, cache_dir: str | None = None,
           seed: int = 0) -> str:
  """Where :func:`load` reads ``split``: its cache file (built from MNIST's ``split``,
  :func:`aaejax.data.source`, on first use). Never builds nor downloads."""
  del data_dir  # the cache file names what the set is (split, seed, version)
  return cache_path(split, seed, cache_dir)


def load(split: str, data_dir: str | None = None, cache_dir: str | None = None,
         download: bool = True, seed: int = 0) -> dict[str, np.ndarray]:
  """The MNIST-M-style ``split``: ``{"image": uint8 (n, 28, 28, 3), "label": int32 (n,)}``.

  Read from :func:`cache_path` if there; else built (:func:`build`, seeded with
  ``[seed, 0]`` for train and ``[seed, 1]`` for test) from MNIST's ``split``
  (``aaejax.data.load_numpy("mnist", split, data_dir, cache_dir=..., download=...)``) and
  written there atomically (an unwritable cache only warns). Arrays are read-only and
  shared within the process.

  Args:
    split: ``"train"`` (from MNIST train, 60,000) or ``"test"`` (from MNIST test, 10,000).
    data_dir: Where MNIST is searched; defaults to ``$AAEJAX_DATA_DIR``.
    cache_dir: Cache root (MNIST downloads and this set's files).
    download: Whether MNIST may be downloaded if not found.
    seed: Seed of the photo and crop draws.

  Raises:
    ValueError: For an unknown split.
    DatasetNotFoundError: If MNIST is found nowhere, or scikit-image is missing.
  """
  if split not in loaders.SPLITS:
    raise ValueError(f"Unknown split {split!r}; expected one of {loaders.SPLITS}")
  path = cache_path(split, seed, cache_dir)
  if path in _MEMORY:
    return _MEMORY[path]
  arrays = _read_cache(path)
  if arrays is None:
    mnist = loaders.load_numpy("mnist", split, data_dir, cache_dir=cache_dir, download=download)
    arrays = build(mnist["image"], mnist["label"], [int(seed), loaders.SPLITS.index(split)])
    try:
      downloads.save_npz_atomic(path, arrays)
    except OSError as e:
      warnings.warn(f"cannot cache {NAME} in {path} ({e.strerror or e}); it will be built "
                    "again next time (set cache_dir or $AAEJAX_CACHE_DIR)")
  for v in arrays.values():
    v.setflags(write=False)
  _MEMORY[path] = arrays
  return arrays


def load_numpy(split: str, data_dir: str | None = None, cache_dir: str | None = None,
               download: bool = True) -> dict[str, np.ndarray]:
  """:func:`load` with seed 0: the loader of ``aaejax.data.OWN_LOADERS``."""
  return load(split, data_dir, cache_dir, download)
