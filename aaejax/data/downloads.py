"""First-use download of the canonical MNIST and Fashion-MNIST files into the aaejax cache.

:func:`fetch` makes sure a dataset's files are in ``<cache dir>/datasets/<name>/``: a missing
file is downloaded (stdlib ``urllib``, no extra package) from the dataset's mirrors in order,
streamed into a temp file in that directory, checked against its published md5, then renamed
into place atomically, so the cache never holds a partial or corrupt file and concurrent
processes (several hosts sharing a home directory) cannot clash. Every network operation has
a timeout (:data:`TIMEOUT_S`), so an offline machine fails in seconds, not a hang.

The cache directory is :func:`resolve_cache_dir`'s: ``config.cache_dir``, else
``$AAEJAX_CACHE_DIR``, else ``~/.cache/aaejax`` (the digit classifier is cached there too).
Setting ``$AAEJAX_NO_DOWNLOAD=1`` (or passing ``download=False``) forbids the network; files
already in the cache are still used.

Checksums: MNIST's are those of the original LeCun et al. distribution (the files tfds
mirrors); Fashion-MNIST's are the ones published in zalandoresearch/fashion-mnist's README.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Callable, Sequence

import numpy as np

CACHE_DIR_ENV = "AAEJAX_CACHE_DIR"
NO_DOWNLOAD_ENV = "AAEJAX_NO_DOWNLOAD"
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "aaejax")
TIMEOUT_S = 20.0  # seconds per blocking network operation (connect, each read)
_CHUNK = 1 << 16

# Base URLs tried in order; a file's URL is the base + its name. Lists, so that tests (and
# users behind a local mirror) can replace them.
MIRRORS: dict[str, list[str]] = {
    "mnist": [
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
    ],
    "fashion_mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ],
}

# File name -> published md5 of the gzip file.
MD5: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}


class DownloadError(OSError):
  """A dataset file is not in the cache and could not be fetched: download disabled, or every
  mirror failed. The message names each URL tried, what failed, and how to place the files by
  hand."""


def resolve_cache_dir(cache_dir: str | None = None) -> str:
  """The aaejax cache directory, absolute.

  Args:
    cache_dir: Explicit directory (e.g. ``config.cache_dir``); wins when non-empty.

  Returns:
    ``cache_dir``, else ``$AAEJAX_CACHE_DIR``, else ``~/.cache/aaejax``; ``~`` expanded.

  Example:

    >>> resolve_cache_dir("/tmp/c")
    '/tmp/c'
  """
  root = cache_dir or os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR
  return os.path.abspath(os.path.expanduser(root))


def dataset_dir(name: str, cache_dir: str | None = None) -> str:
  """``<cache dir>/datasets/<name>``: where :func:`fetch` puts ``name``'s files."""
  return os.path.join(resolve_cache_dir(cache_dir), "datasets", name)


def download_allowed(download: bool = True) -> bool:
  """Whether the network may be used: ``download`` and ``$AAEJAX_NO_DOWNLOAD`` unset/0/false."""
  return bool(download) and os.environ.get(NO_DOWNLOAD_ENV, "").strip().lower() in (
      "", "0", "false", "no")


def md5_file(path: str) -> str:
  """The hex md5 of the file at ``path``."""
  digest = hashlib.md5(usedforsecurity=False)
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(_CHUNK), b""):
      digest.update(chunk)
  return digest.hexdigest()


def _stderr(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def _download_one(url: str, directory: str, filename: str, md5: str, timeout: float) -> str:
  """Streams ``url`` into a temp file of ``directory``, checks its md5, renames it to
  ``filename``; returns the final path. Raises OSError (what failed) leaving no file."""
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{filename}.", suffix=".part")
  try:
    digest = hashlib.md5(usedforsecurity=False)
    with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
      expected_size = response.headers.get("Content-Length")
      size = 0
      for chunk in iter(lambda: response.read(_CHUNK), b""):
        out.write(chunk)
        digest.update(chunk)
        size += len(chunk)
    if expected_size is not None and size != int(expected_size):
      raise OSError(f"truncated: got {size:,} of {int(expected_size):,} bytes")
    if digest.hexdigest() != md5:
      raise OSError(f"md5 mismatch: got {digest.hexdigest()}, expected {md5} ({size:,} bytes)")
    path = os.path.join(directory, filename)
    os.replace(tmp, path)
    return path
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _size(nbytes: int) -> str:
  return f"{nbytes / 1e6:.1f} MB" if nbytes >= 1e6 else f"{nbytes / 1e3:.1f} kB"


def _why(e: BaseException, timeout: float) -> str:
  """A short description of a failed download."""
  if isinstance(e, urllib.error.HTTPError):
    return f"HTTP {e.code} {e.reason}"
  if isinstance(e, urllib.error.URLError) and isinstance(e.reason, TimeoutError):
    return f"cannot connect: no answer within {timeout:g} s"
  if isinstance(e, urllib.error.URLError):
    return f"cannot connect ({e.reason})"
  if isinstance(e, TimeoutError):
    return f"timed out: no data within {timeout:g} s"
  return f"{type(e).__name__}: {e}" if not isinstance(e, OSError) or e.errno else str(e)


def fetch(name: str, filenames: Sequence[str], cache_dir: str | None = None,
          download: bool = True, *, timeout: float | None = None,
          log: Callable[[str], None] | None = None) -> str:
  """Makes sure ``filenames`` of dataset ``name`` are in its cache directory.

  Files already there (put there by an earlier :func:`fetch`, so checked then) are used as
  they are; each missing one is downloaded from ``MIRRORS[name]`` in order, the first mirror
  that delivers the file with the right md5 winning (and going first for the next files).

  Args:
    name: A key of :data:`MD5` (``"mnist"``, ``"fashion_mnist"``).
    filenames: File names, each a key of ``MD5[name]``.
    cache_dir: Cache root, see :func:`resolve_cache_dir`.
    download: ``False`` forbids the network (as does ``$AAEJAX_NO_DOWNLOAD=1``).
    timeout: Seconds per blocking network operation; default :data:`TIMEOUT_S`.
    log: Called with one line per file downloaded (and per failed mirror); default: stderr.

  Returns:
    The absolute directory holding all ``filenames`` (:func:`dataset_dir`).

  Raises:
    KeyError: For a dataset or file name without a known md5.
    DownloadError: If a file is missing and downloading is disabled, or every mirror failed
      (the message lists each URL and its failure: HTTP status, connection error, timeout,
      md5 got vs expected) and says where to put the files by hand.
  """
  log = log or _stderr
  directory = dataset_dir(name, cache_dir)
  missing = [f for f in filenames if not os.path.isfile(os.path.join(directory, f))]
  md5s = {f: MD5[name][f] for f in missing}  # KeyError first, for an unknown name or file
  if not missing:
    return directory
  mirror = MIRRORS[name][0] if MIRRORS[name] else "the dataset's site"
  by_hand = (f"To place the files by hand, download "
             f"{', '.join(f'{f} (md5 {md5s[f]})' for f in missing)} from {mirror} into "
             f"{directory}/, or into <data_dir>/{name}/ with config.data_dir or "
             "$AAEJAX_DATA_DIR naming <data_dir>.")
  if not download_allowed(download):
    why = "download=False" if not download else f"${NO_DOWNLOAD_ENV}={os.environ[NO_DOWNLOAD_ENV]}"
    raise DownloadError(f"{name}: {', '.join(missing)} not in the download cache {directory} "
                        f"and downloading is disabled ({why}). {by_hand}")
  try:
    os.makedirs(directory, exist_ok=True)
    if not os.access(directory, os.W_OK):
      raise PermissionError("not writable")
  except OSError as e:
    raise DownloadError(f"{name}: cannot write the download cache {directory} ({e}); set "
                        f"config.cache_dir or ${CACHE_DIR_ENV} to a writable directory") from e
  timeout = TIMEOUT_S if timeout is None else timeout
  mirrors = list(MIRRORS[name])
  for filename in missing:
    failures = []
    for base in list(mirrors):
      url = base + filename
      log(f"aaejax: downloading {url} into {directory}/")
      start = time.perf_counter()
      try:
        path = _download_one(url, directory, filename, md5s[filename], timeout)
      except (OSError, http.client.HTTPException, ValueError) as e:  # the next mirror
        # (URLError, HTTPError, timeouts, a cut connection, a bad md5 or size, a bad URL)
        failures.append(f"{url}: {_why(e, timeout)}")
        log(f"aaejax: {failures[-1]}")
        continue
      log(f"aaejax: {filename}: {_size(os.path.getsize(path))} in "
          f"{time.perf_counter() - start:.1f} s, md5 ok")
      mirrors.remove(base)  # the mirror that worked goes first for the next files
      mirrors.insert(0, base)
      break
    else:
      tried = "; ".join(failures) or f"no mirror configured (MIRRORS[{name!r}] is empty)"
      raise DownloadError(f"{name}: could not download {filename}: {tried}. {by_hand}")
  return directory


def save_npz_atomic(path: str, arrays) -> None:
  """Writes ``arrays`` (name -> array) to the ``.npz`` file ``path`` atomically: a temp file
  in the same directory, then ``os.replace``; nothing is left behind on failure."""
  directory = os.path.dirname(path) or "."
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".npz")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
