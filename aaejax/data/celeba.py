"""CelebA at 64×64 (the WAE paper's preprocessing), from local JPEGs or tfds; no labels.

:func:`load_numpy` returns ``{"image": uint8 (N, 64, 64, 3)}`` for split ``"train"`` or
``"test"``: there is no ``"label"`` (CelebA's attributes and identities are not used), so
evaluators that need labels do not apply, and models that read labels are refused for it
(:func:`aaejax.models.create`).

Sources, searched in this order under ``<data_dir>/celeba/`` (``data_dir`` the argument, else
``$AAEJAX_DATA_DIR``):

1. ``img_align_celeba_first10k_89x109.tar`` (the first 10,000 aligned faces at half size),
   then any other ``img_align_celeba*.tar`` (sorted by name): a tar of JPEGs;
2. ``img_align_celeba/``: a directory of JPEGs (the aligned set, 178 × 218);
3. otherwise ``tensorflow_datasets``' ``celeb_a`` (:func:`load_tfds`), if it is installed.

Preprocessing (:func:`preprocess`), the authors' (Tolstikhin et al.'s ``closecrop``): a
centre crop of 140 × 140 pixels of the 178 × 218 image, scaled with the image's width
(70 × 70 for the 89 × 109 half-size subset), resized to 64 × 64 with PIL's Lanczos filter
(``Image.LANCZOS``, the ``ANTIALIAS`` of the authors' code), RGB, uint8.

Splits of local files, by file name order: the complete aligned set (202,599 images) uses
CelebA's official partition (train 000001–162770, test 182638–202599; the validation
images are dropped); any other set keeps its last fifth (rounded down, at least one
image) as the test split and the rest as train: the 10k subset gives 8,000 train
(000001–008000) and 2,000 test (008001–010000) images. tfds uses its own ``train`` and
``test`` splits (the official ones).

Decoding 10,000 JPEGs takes seconds to tens of seconds, so the decoded images are cached
once, as ``.npy``, in the cache directory (``cache_dir``, else ``$AAEJAX_CACHE_DIR``, else
``~/.cache/aaejax``, as :mod:`aaejax.evaluation.digits` resolves it), in a file named by the
source's path, size and modification time and :data:`CACHE_VERSION`: a changed tar is decoded again.
An unwritable cache directory only costs the decoding at every start (a warning says so).
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import tarfile
import tempfile
import time
import warnings

import numpy as np

from aaejax.data import downloads, loaders

NAME = "celeb_a"
IMAGE_SHAPE = (64, 64, 3)
SUBDIR = "celeba"                                   # <data_dir>/celeba/
PREFERRED_TAR = "img_align_celeba_first10k_89x109.tar"
TAR_PATTERN = "img_align_celeba*.tar"
IMAGE_DIR = "img_align_celeba"
FULL_WIDTH, FULL_HEIGHT, FULL_CROP = 178, 218, 140  # the aligned images and the paper's crop
RESAMPLE = "lanczos"                                # PIL filter of the 64×64 resize
TEST_FRACTION = 0.2                                 # of a local set other than the full one
OFFICIAL_SIZE = 202_599                             # images of the complete aligned set
OFFICIAL_TRAIN_END, OFFICIAL_TEST_START = 162_770, 182_637  # 0-based [0, 162770), [182637, ...)
CACHE_VERSION = 1  # bump when the preprocessing changes
CACHE_DIR_ENV = downloads.CACHE_DIR_ENV
JPEG_SUFFIXES = (".jpg", ".jpeg")

_MEMORY: dict[str, np.ndarray] = {}  # cache file (or tfds key) -> all decoded images


def crop_box(width: int, height: int) -> tuple[int, int, int, int]:
  """The centre crop ``(left, top, right, bottom)`` of a ``width × height`` aligned face.

  The paper's 140 × 140 crop of the 178 × 218 image, scaled with the width.

  >>> crop_box(178, 218), crop_box(89, 109)
  ((19, 39, 159, 179), (9, 19, 79, 89))
  """
  side = min(round(FULL_CROP * width / FULL_WIDTH), width, height)
  left, top = (width - side) // 2, (height - side) // 2
  return left, top, left + side, top + side


def preprocess(image) -> np.ndarray:
  """A PIL image (or an ``(H, W, 3)`` uint8 array) -> ``(64, 64, 3)`` uint8: crop, resize.

  >>> preprocess(np.full((109, 89, 3), 200, np.uint8)).shape
  (64, 64, 3)
  """
  from PIL import Image
  if isinstance(image, np.ndarray):
    image = Image.fromarray(image)
  image = image.convert("RGB")
  filt = {"lanczos": Image.LANCZOS, "bilinear": Image.BILINEAR}[RESAMPLE]
  image = image.crop(crop_box(*image.size)).resize(IMAGE_SHAPE[:2][::-1], filt)
  return np.asarray(image, np.uint8)


def _decode(raw: bytes, where: str) -> np.ndarray:
  from PIL import Image, UnidentifiedImageError
  try:
    with Image.open(io.BytesIO(raw)) as image:
      return preprocess(image)
  except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
    raise loaders.DataFileError(f"{where}: not a readable JPEG ({type(e).__name__}: {e})") from e


def _is_jpeg(name: str) -> bool:
  return os.path.basename(name).lower().endswith(JPEG_SUFFIXES) and \
      not os.path.basename(name).startswith(".")


def decode_tar(path: str) -> np.ndarray:
  """Every JPEG of the tar at ``path``, in file name order, preprocessed: (N, 64, 64, 3) uint8.

  Raises:
    DataFileError: naming ``path`` (and the member), for a missing, unreadable, corrupt or
      truncated tar, a member that is not a readable JPEG, or a tar without JPEGs.
  """
  try:
    with tarfile.open(path, "r:*") as tar:
      members = sorted((m for m in tar.getmembers() if m.isfile() and _is_jpeg(m.name)),
                       key=lambda m: m.name)
      if not members:
        raise loaders.DataFileError(f"{path}: holds no JPEG files (*.jpg)")
      images = np.empty((len(members), *IMAGE_SHAPE), np.uint8)
      for i, m in enumerate(members):
        f = tar.extractfile(m)
        images[i] = _decode(f.read(), f"{path}:{m.name}")
  except (tarfile.TarError, EOFError, OSError) as e:
    why = e.strerror if isinstance(e, OSError) and e.strerror else f"{type(e).__name__}: {e}"
    raise loaders.DataFileError(f"{path}: cannot read the tar ({why}); copy or download it "
                             "again") from e
  return images


def _directory_files(path: str) -> list[str]:
  return sorted(f for f in os.listdir(path) if _is_jpeg(f))


def decode_directory(path: str) -> np.ndarray:
  """Every JPEG of directory ``path``, in file name order, preprocessed (as :func:`decode_tar`)."""
  files = _directory_files(path)
  if not files:
    raise loaders.DataFileError(f"{path}: holds no JPEG files (*.jpg)")
  images = np.empty((len(files), *IMAGE_SHAPE), np.uint8)
  for i, name in enumerate(files):
    file = os.path.join(path, name)
    try:
      with open(file, "rb") as f:
        raw = f.read()
    except OSError as e:
      raise loaders.DataFileError(f"{file}: cannot read: {e.strerror or e}") from e
    images[i] = _decode(raw, file)
  return images


def find_source(data_dir: str | None = None) -> str | None:
  """The local tar or directory :func:`load_numpy` reads (see the module doc), or None."""
  root = loaders.resolve_data_dir(data_dir)
  if not root:
    return None
  directory = os.path.join(root, SUBDIR)
  preferred = os.path.join(directory, PREFERRED_TAR)
  if os.path.isfile(preferred):
    return preferred
  tars = sorted(p for p in glob.glob(os.path.join(directory, TAR_PATTERN)) if os.path.isfile(p))
  if tars:
    return tars[0]
  images = os.path.join(directory, IMAGE_DIR)
  return images if os.path.isdir(images) else None


def split_slice(n: int, split: str) -> slice:
  """The images of ``split`` among ``n`` local ones in file name order (see the module doc).

  >>> split_slice(10_000, "train"), split_slice(10_000, "test")
  (slice(0, 8000, None), slice(8000, 10000, None))
  """
  if split not in loaders.SPLITS:
    raise ValueError(f"Unknown split {split!r}; expected one of {loaders.SPLITS}")
  if n == OFFICIAL_SIZE:
    return slice(0, OFFICIAL_TRAIN_END) if split == "train" else slice(OFFICIAL_TEST_START, n)
  test = max(1, int(n * TEST_FRACTION))
  return slice(0, n - test) if split == "train" else slice(n - test, n)


def cache_root(cache_dir: str | None = None) -> str:
  """``cache_dir``, else ``$AAEJAX_CACHE_DIR``, else ``~/.cache/aaejax`` (absolute;
  :func:`aaejax.data.downloads.resolve_cache_dir`)."""
  return downloads.resolve_cache_dir(cache_dir)


def _fingerprint(source: str) -> str:
  """Path, size and modification time of a tar (of every JPEG, for a directory)."""
  if os.path.isdir(source):
    stats = [os.stat(os.path.join(source, f)) for f in _directory_files(source)]
    size, mtime = sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)
    size = f"{len(stats)}files-{size}"
  else:
    st = os.stat(source)
    size, mtime = st.st_size, st.st_mtime_ns
  where = hashlib.sha1(os.path.abspath(source).encode()).hexdigest()[:10]
  return f"{where}-{size}-{mtime}"


def cache_path(source: str, cache_dir: str | None = None) -> str:
  """The ``.npy`` file holding ``source``'s decoded images."""
  stem = os.path.splitext(os.path.basename(os.path.normpath(source)))[0]
  return os.path.join(cache_root(cache_dir), f"celeba-{stem}-{_fingerprint(source)}-"
                      f"{RESAMPLE}-v{CACHE_VERSION}.npy")


def _save(path: str, images: np.ndarray) -> None:
  """Writes ``images`` to ``path`` atomically; warns (and goes on) if it cannot."""
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".npy")
    try:
      with os.fdopen(fd, "wb") as f:
        np.save(f, images)
      os.replace(tmp, path)
    except BaseException:
      if os.path.exists(tmp):
        os.remove(tmp)
      raise
  except OSError as e:
    warnings.warn(f"cannot cache the decoded CelebA images in {path} ({e.strerror or e}); "
                  "they will be decoded again next time (set cache_dir or $AAEJAX_CACHE_DIR)")


def _load_cached(path: str) -> np.ndarray | None:
  if not os.path.isfile(path):
    return None
  try:
    images = np.load(path)
  except (OSError, ValueError, EOFError):  # a torn or foreign file: decode again
    return None
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
    return None
  return images


def decoded(source: str, cache_dir: str | None = None) -> np.ndarray:
  """All images of the local ``source`` (tar or directory), decoded once and cached.

  Returns a read-only (N, 64, 64, 3) uint8 array, shared within the process.
  """
  path = cache_path(source, cache_dir)
  if path in _MEMORY:
    return _MEMORY[path]
  images = _load_cached(path)
  if images is None:
    start = time.perf_counter()
    images = decode_directory(source) if os.path.isdir(source) else decode_tar(source)
    _save(path, images)
    decode_s = time.perf_counter() - start
    print(f"celeb_a: decoded {len(images):,} images of {source} in {decode_s:.1f} s; "
          f"cached in {path}", flush=True)
  images.setflags(write=False)
  _MEMORY[path] = images
  return images


def load_tfds(split: str, data_dir: str | None = None) -> np.ndarray:
  """tfds' ``celeb_a`` ``split``, preprocessed as the local files: (N, 64, 64, 3) uint8.

  The only tfds code path of this module (tfds is imported here, lazily). Examples are
  streamed and preprocessed one by one (the full-size split would not fit in memory).

  Raises:
    ImportError: If tfds is not installed.
    Exception: Whatever tfds raises when the dataset is unavailable.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  ds = tfds.load(NAME, split=split, data_dir=data_dir, download=True)
  images = [preprocess(np.asarray(ex["image"], np.uint8)) for ex in tfds.as_numpy(ds)]
  return np.stack(images) if images else np.zeros((0, *IMAGE_SHAPE), np.uint8)


def _tfds_cached(split: str, data_dir: str | None, cache_dir: str | None) -> np.ndarray:
  path = os.path.join(cache_root(cache_dir), f"celeba-tfds-{split}-{RESAMPLE}-"
                      f"v{CACHE_VERSION}.npy")
  if path in _MEMORY:
    return _MEMORY[path]
  images = _load_cached(path)
  if images is None:
    images = load_tfds(split, data_dir)
    _save(path, images)
  images.setflags(write=False)
  _MEMORY[path] = images
  return images


def source(split: str = "train", data_dir: str | None = None) -> str:
  """Where :func:`load_numpy` reads ``split``: a tar or directory, or ``"tensorflow_datasets"``."""
  del split
  found = find_source(data_dir)
  return os.path.abspath(found) if found else "tensorflow_datasets"


def load_numpy(split: str, data_dir: str | None = None, cache_dir: str | None = None
               ) -> dict[str, np.ndarray]:
  """CelebA's ``split`` at 64×64: ``{"image": uint8 (N, 64, 64, 3)}``, read-only, no labels.

  Args:
    split: ``"train"`` or ``"test"``.
    data_dir: Data directory holding ``celeba/``; defaults to ``$AAEJAX_DATA_DIR``.
    cache_dir: Where the decoded images are cached (see the module doc).

  Raises:
    ValueError: For an unknown split.
    DataFileError: naming the file, for a corrupt tar or JPEG, or a local set of fewer
      than two images.
    DatasetNotFoundError: If there is no local copy and tfds cannot load ``celeb_a``.
  """
  if split not in loaders.SPLITS:
    raise ValueError(f"Unknown split {split!r}; expected one of {loaders.SPLITS}")
  found = find_source(data_dir)
  if found:
    images = decoded(found, cache_dir)
    if len(images) < 2:
      raise loaders.DataFileError(f"{found}: holds {len(images)} image(s); a train and a test "
                               "split need at least 2")
    return {"image": images[split_slice(len(images), split)]}
  root = loaders.resolve_data_dir(data_dir)
  try:
    return {"image": _tfds_cached(split, root, cache_dir)}
  except Exception as e:  # pylint: disable=broad-except  # Any tfds failure.
    tfds_error = f"{type(e).__name__}: {e}"
  where = os.path.join(root, SUBDIR) if root else None
  raise loaders.DatasetNotFoundError(
      f"Dataset {NAME!r} split {split!r} not found. Searched "
      f"{where or '(nothing; no data_dir given)'} for {PREFERRED_TAR}, {TAR_PATTERN} or "
      f"{IMAGE_DIR}/ (JPEGs). Set config.data_dir or the {loaders.DATA_DIR_ENV} environment "
      f"variable to a directory containing {SUBDIR}/, or install tensorflow_datasets "
      f"(pip install 'aaejax[tfds]'; tfds attempt failed with {tfds_error}).")
