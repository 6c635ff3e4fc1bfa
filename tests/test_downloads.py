"""First-use downloads (aaejax.data.downloads) through a local HTTP server: never the internet.

The mirrors are pointed at a server on 127.0.0.1; the real MNIST files (from
$AAEJAX_DATA_DIR/mnist) check the real md5 table, small synthetic IDX files (with their md5s
patched into the table) the failure paths.
"""

import gzip
import hashlib
import http.server
import os
import socket
import sys
import threading
import time

import numpy as np
import pytest

from aaejax import data
from aaejax.data import loaders
from aaejax.data import downloads

MNIST_FILES = [stem + ".gz" for pair in data.IDX_FILES.values() for stem in pair]


class _Handler(http.server.BaseHTTPRequestHandler):
  """Serves ``server.routes[path]`` (bytes) or 404; records every path asked for."""

  def do_GET(self):  # noqa: N802 (http.server's name)
    self.server.requests.append(self.path)
    body = self.server.routes.get(self.path)
    if body is None:
      self.send_error(404)
      return
    if self.path in self.server.truncated:  # announce the full size, send half, hang up
      self.send_response(200)
      self.send_header("Content-Length", str(len(body)))
      self.end_headers()
      self.wfile.write(body[: len(body) // 2])
      self.wfile.flush()
      self.close_connection = True
      return
    self.send_response(200)
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    self.wfile.write(body)

  def log_message(self, *args):
    pass


@pytest.fixture(scope="module")
def server():
  srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
  srv.routes, srv.requests, srv.truncated = {}, [], set()
  thread = threading.Thread(target=srv.serve_forever, daemon=True)
  thread.start()
  srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
  yield srv
  srv.shutdown()
  srv.server_close()


@pytest.fixture
def fresh(server, tmp_path, monkeypatch):
  """No local data, an empty cache in tmp_path, downloads allowed, a clean server."""
  server.routes.clear()
  server.requests.clear()
  server.truncated.clear()
  monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
  monkeypatch.delenv(downloads.NO_DOWNLOAD_ENV, raising=False)
  monkeypatch.setenv(downloads.CACHE_DIR_ENV, str(tmp_path / "cache"))
  monkeypatch.setitem(data.EXTRA_DATA_DIRS, "mnist", [])
  monkeypatch.setattr(loaders, "_CACHE", {})
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # no tfds fallback
  return tmp_path / "cache" / "datasets" / "mnist"


def refused_url() -> str:
  """A URL on a local port where nothing listens."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  return f"http://127.0.0.1:{port}/"


def _idx_gz(array: np.ndarray) -> bytes:
  magic = 2051 if array.ndim == 3 else 2049
  header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
  return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


@pytest.fixture
def synthetic(monkeypatch):
  """Small MNIST-format files (5 train, 3 test), their md5s patched into ``downloads.MD5``."""
  rng = np.random.default_rng(0)
  files = {}
  for split, n in (("train", 5), ("test", 3)):
    image_stem, label_stem = data.IDX_FILES[split]
    files[image_stem + ".gz"] = _idx_gz(rng.integers(0, 256, (n, 28, 28)))
    files[label_stem + ".gz"] = _idx_gz(np.arange(n) % 10)
  monkeypatch.setitem(downloads.MD5, "mnist",
                      {k: hashlib.md5(v).hexdigest() for k, v in files.items()})
  return files


def serve(server, prefix, files):
  for name, body in files.items():
    server.routes[f"/{prefix}/{name}"] = body


def cache_listing(directory):
  return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def test_md5_table_names_the_canonical_files():
  for name in ("mnist", "fashion_mnist"):
    assert sorted(downloads.MD5[name]) == sorted(MNIST_FILES)
    assert all(len(m) == 32 and int(m, 16) >= 0 for m in downloads.MD5[name].values())
    assert downloads.MIRRORS[name]


def test_real_mnist_downloaded_checked_and_equal_to_local(mnist_dir, fresh, server, monkeypatch):
  local = os.path.join(mnist_dir, "mnist")  # (mnist_dir, session-scoped, skips without it)
  if not all(os.path.isfile(os.path.join(local, f)) for f in MNIST_FILES):
    pytest.skip(f"real MNIST .gz files not all under {local}")
  serve(server, "mnist", {f: open(os.path.join(local, f), "rb").read() for f in MNIST_FILES})
  monkeypatch.setitem(downloads.MIRRORS, "mnist", [server.url + "/mnist/"])
  lines = []
  monkeypatch.setattr(downloads, "_stderr", lines.append)
  for split in data.SPLITS:
    got = data.load_numpy("mnist", split)  # the real md5 table checks each real file
    want = data.load_numpy("mnist", split, mnist_dir)
    assert got["image"].dtype == np.uint8 and got["label"].dtype == np.int32
    np.testing.assert_array_equal(got["image"], want["image"])
    np.testing.assert_array_equal(got["label"], want["label"])
  assert cache_listing(fresh) == sorted(MNIST_FILES)  # and no temp file left
  for f in MNIST_FILES:
    assert downloads.md5_file(str(fresh / f)) == downloads.MD5["mnist"][f]
  assert sorted(server.requests) == sorted(f"/mnist/{f}" for f in MNIST_FILES)
  assert sum("md5 ok" in line for line in lines) == 4, lines
  assert data.source("mnist", "train") == str(fresh)


def test_corrupt_file_is_an_md5_error_naming_the_url_and_leaves_nothing(
    fresh, server, synthetic, monkeypatch):
  bad = dict(synthetic)
  name = "t10k-images-idx3-ubyte.gz"
  bad[name] = bad[name][:-1] + bytes([bad[name][-1] ^ 1])
  serve(server, "bad", bad)
  monkeypatch.setitem(downloads.MIRRORS, "mnist", [server.url + "/bad/"])
  monkeypatch.setattr(downloads, "_stderr", lambda line: None)
  with pytest.raises(data.DatasetNotFoundError) as err:
    data.load_numpy("mnist", "test")
  msg = str(err.value)
  assert f"{server.url}/bad/{name}: md5 mismatch: got {hashlib.md5(bad[name]).hexdigest()}, " \
         f"expected {downloads.MD5['mnist'][name]}" in msg
  assert "by hand" in msg and str(fresh) in msg
  assert cache_listing(fresh) == []  # no partial or corrupt file, no temp file


def test_truncated_download_is_an_error(fresh, server, synthetic, monkeypatch):
  serve(server, "cut", synthetic)
  server.truncated.add("/cut/t10k-images-idx3-ubyte.gz")
  monkeypatch.setitem(downloads.MIRRORS, "mnist", [server.url + "/cut/"])
  with pytest.raises(downloads.DownloadError, match="t10k-images-idx3-ubyte.gz: "):
    downloads.fetch("mnist", ["t10k-images-idx3-ubyte.gz"], log=lambda line: None)
  assert cache_listing(fresh) == []


def test_next_mirror_after_refused_and_404(fresh, server, synthetic, monkeypatch):
  serve(server, "good", synthetic)
  refused = refused_url()
  monkeypatch.setitem(downloads.MIRRORS, "mnist",
                      [refused, server.url + "/missing/", server.url + "/good/"])
  lines = []
  monkeypatch.setattr(downloads, "_stderr", lines.append)
  train = data.load_numpy("mnist", "train")
  assert train["image"].shape == (5, 28, 28, 1) and train["label"].tolist() == [0, 1, 2, 3, 4]
  assert cache_listing(fresh) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
  images = "\n".join(x for x in lines if "train-images" in x)
  labels = [x for x in lines if "train-labels" in x]
  assert f"{refused}train-images-idx3-ubyte.gz: cannot connect" in images
  assert f"{server.url}/missing/train-images-idx3-ubyte.gz: HTTP 404" in images
  assert "md5 ok" in images
  # The mirror that worked goes first for the next file: one try, no failure.
  assert labels[0].endswith(f"downloading {server.url}/good/train-labels-idx1-ubyte.gz into "
                            f"{fresh}/")
  assert len(labels) == 2 and "md5 ok" in labels[1]


def test_every_mirror_failing_lists_each_url(fresh, server, synthetic, monkeypatch):
  refused = refused_url()
  monkeypatch.setitem(downloads.MIRRORS, "mnist", [refused, server.url + "/missing/"])
  with pytest.raises(downloads.DownloadError) as err:
    downloads.fetch("mnist", ["t10k-labels-idx1-ubyte.gz"], log=lambda line: None)
  msg = str(err.value)
  assert f"{refused}t10k-labels-idx1-ubyte.gz: cannot connect" in msg
  assert f"{server.url}/missing/t10k-labels-idx1-ubyte.gz: HTTP 404" in msg
  assert downloads.MD5["mnist"]["t10k-labels-idx1-ubyte.gz"] in msg  # for a check by hand


def test_unresponsive_server_times_out_fast(fresh, synthetic, monkeypatch):
  with socket.socket() as silent:  # accepts connections (backlog), never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
    monkeypatch.setitem(downloads.MIRRORS, "mnist", [url])
    monkeypatch.setattr(downloads, "TIMEOUT_S", 0.3)
    start = time.perf_counter()
    with pytest.raises(downloads.DownloadError, match="no data within 0.3 s"):
      downloads.fetch("mnist", ["t10k-labels-idx1-ubyte.gz"], log=lambda line: None)
    assert time.perf_counter() - start < 5
  assert cache_listing(fresh) == []


@pytest.mark.parametrize("how", ["env", "argument"])
def test_download_disabled_is_a_clear_error(fresh, server, synthetic, monkeypatch, how):
  serve(server, "good", synthetic)
  monkeypatch.setitem(downloads.MIRRORS, "mnist", [server.url + "/good/"])
  if how == "env":
    monkeypatch.setenv(downloads.NO_DOWNLOAD_ENV, "1")
  start = time.perf_counter()
  with pytest.raises(data.DatasetNotFoundError) as err:
    data.load_numpy("mnist", "test", download=how != "argument")
  assert time.perf_counter() - start < 2
  msg = str(err.value)
  why = f"${downloads.NO_DOWNLOAD_ENV}=1" if how == "env" else "download=False"
  assert f"downloading is disabled ({why})" in msg
  assert "t10k-images-idx3-ubyte.gz" in msg and str(fresh) in msg and "by hand" in msg
  assert data.DATA_DIR_ENV in msg and "aaejax[tfds]" in msg
  assert server.requests == []


def test_second_load_uses_the_cache_without_network(fresh, server, synthetic, monkeypatch):
  serve(server, "good", synthetic)
  monkeypatch.setitem(downloads.MIRRORS, "mnist", [server.url + "/good/"])
  monkeypatch.setattr(downloads, "_stderr", lambda line: None)
  first = {k: np.array(v) for k, v in data.load_numpy("mnist", "test").items()}
  assert len(server.requests) == 2
  monkeypatch.setattr(loaders, "_CACHE", {})  # a new process, offline
  monkeypatch.setitem(downloads.MIRRORS, "mnist", [refused_url()])
  monkeypatch.setenv(downloads.NO_DOWNLOAD_ENV, "1")
  second = data.load_numpy("mnist", "test")
  assert len(server.requests) == 2
  for k in first:
    np.testing.assert_array_equal(second[k], first[k])
  assert data.source("mnist", "test") == str(fresh)


def test_local_files_win_over_the_cache(fresh, server, synthetic, tmp_path, monkeypatch):
  local = tmp_path / "data" / "mnist"
  local.mkdir(parents=True)
  for split in ("test",):
    for stem in data.IDX_FILES[split]:
      (local / (stem + ".gz")).write_bytes(synthetic[stem + ".gz"])
  monkeypatch.setitem(downloads.MIRRORS, "mnist", [refused_url()])
  got = data.load_numpy("mnist", "test", str(tmp_path / "data"))
  assert got["image"].shape == (3, 28, 28, 1)
  assert data.source("mnist", "test", str(tmp_path / "data")) == str(local)
  assert cache_listing(fresh) == [] and server.requests == []


def test_one_cache_dir_for_downloads_and_the_classifier(tmp_path, monkeypatch):
  from aaejax.evaluation import digits
  monkeypatch.setenv(downloads.CACHE_DIR_ENV, str(tmp_path / "env"))
  for arg, want in ((None, tmp_path / "env"), ("", tmp_path / "env"), (str(tmp_path / "arg"),
                                                                         tmp_path / "arg")):
    assert downloads.resolve_cache_dir(arg) == str(want)
    assert downloads.dataset_dir("mnist", arg) == str(want / "datasets" / "mnist")
    assert os.path.dirname(digits._cache_path("mnist", arg, {})) == str(want)
  monkeypatch.delenv(downloads.CACHE_DIR_ENV)
  assert downloads.resolve_cache_dir() == os.path.expanduser("~/.cache/aaejax")
