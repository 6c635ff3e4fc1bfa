"""A catalogue of bad inputs: each one is rejected early, with a message that names it.

Every case is a row of a table, :data:`CASES`; one parametrized test runs each kind:

- ``"step"``: a call of the library API (train steps eagerly, under ``jax.jit`` and
  ``jax.vmap``; encode, decode, reconstruct, generate…) on tiny models (4×4 images, 8 units);
  ``run(models)`` gets :class:`Models` (built lazily, once);
- ``"data"``: a data file made bad (copies of the real MNIST test files under
  ``$AAEJAX_DATA_DIR``, synthetic IDX files without them); ``run(data_dir)`` gets a fresh
  copy to spoil and load;
- ``"config"``: a config field, through :func:`aaejax.models.check`; ``run()``;
- ``"cli"``: a command line of ``experiments/main.py``, run in-process (``main.run``);
  ``argv`` may hold ``{tmp}`` (a fresh directory, with a regular ``{tmp}/file`` in it) and
  ``{data}`` (a data dir whose train labels are corrupt); ``code`` is the exit code, and
  stderr must be one line ``error: …`` without a traceback;
- ``"subprocess"``: command lines of the real scripts (``main.py``, ``sweep.py``), run as
  processes, all at once (each imports JAX, about 3 s).

Each case asserts that ``match`` is in the message: a substring naming the argument, field
or file. To add a case, append a :class:`Case` to :data:`CASES` (or to a table of your own
with a test of its own kind).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import os
import subprocess
import sys
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aaejax import core, data, models
from aaejax.core import config_checks
from aaejax.nets import networks
from aaejax.run import sweeps
from aaejax.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (4, 4, 1)  # tiny images: the checks run before any network does


@dataclasses.dataclass(frozen=True)
class Case:
  id: str
  kind: str           # "step" | "data" | "config" | "cli" | "subprocess"
  match: str          # a substring of the message
  run: Callable[..., Any] | None = None   # step, data, config: the call that must raise
  error: type = ValueError                # step, data, config: what it raises
  argv: tuple[str, ...] = ()               # cli, subprocess: the arguments
  code: int = 2                            # cli, subprocess: the exit code
  script: str = "main.py"                  # subprocess: which script


# ---- tiny models ---------------------------------------------------------------------------


class Models:
  """Tiny models of each family and their states, built on first use."""

  @functools.cached_property
  def nets(self):
    return dict(encoder=networks.MLPEncoder(2, (8,)), decoder=networks.MLPDecoder(SHAPE, (8,)),
                critic_hidden=(8,))

  def _state(self, model):
    return model.init(jax.random.key(0))

  @functools.cached_property
  def aae(self):
    m = models.AAE(image_shape=SHAPE, latent_dim=2, **self.nets)
    return m, self._state(m)

  @functools.cached_property
  def wae(self):
    m = models.WAE(image_shape=SHAPE, latent_dim=2, penalty="mmd_imq",
                   encoder=self.nets["encoder"], decoder=self.nets["decoder"])
    return m, self._state(m)

  @functools.cached_property
  def vae(self):
    m = models.VAE(image_shape=SHAPE, latent_dim=2, encoder=networks.MLPEncoder(2, (8,), True),
                   decoder=self.nets["decoder"])
    return m, self._state(m)

  @functools.cached_property
  def gan(self):
    m = models.GAN(image_shape=SHAPE, latent_dim=2, generator=networks.MLPDecoder(SHAPE, (8,)),
                   critic=networks.ImageCritic((8,)))
    return m, self._state(m)

  @functools.cached_property
  def style(self):
    m = models.StyleAAE(image_shape=SHAPE, latent_dim=2, num_classes=10,
                        decoder=networks.MLPDecoder(SHAPE, (8,)),
                        encoder=self.nets["encoder"], critic_hidden=(8,))
    return m, self._state(m)

  @functools.cached_property
  def supervised_prior(self):
    m = models.SupervisedPriorAAE(image_shape=SHAPE, latent_dim=2, num_labeled=100, **self.nets)
    return m, self._state(m)

  @functools.cached_property
  def semi(self):
    m = models.SemiSupervisedAAE(image_shape=SHAPE, latent_dim=2, num_labeled=100,
                                 critic_hidden=(8,),
                                 encoder=networks.MLPEncoder(2, (8,), num_categories=10),
                                 decoder=networks.MLPDecoder(SHAPE, (8,)))
    return m, self._state(m)


def images(n=4, dtype=np.uint8, value=0):
  return np.full((n, *SHAPE), value, dtype)


def step(name, batch, how="eager"):
  """``models.<name>``'s train step on ``batch``: eagerly, under jit, or vmapped over 2 states."""
  def run(ms):
    model, state = getattr(ms, name)
    key = jax.random.key(1)
    if how == "eager":
      return model.train_step(state, batch, key)
    if how == "jit":
      return jax.jit(model.train_step)(state, batch, key)
    states = sweeps.stack_states([state, state])
    return jax.jit(sweeps.vmap_step(model.train_step))(states, batch, jax.random.split(key, 2))
  return run


def call(name, method, *args):
  def run(ms):
    model, state = getattr(ms, name)
    return getattr(model, method)(state, *args)
  return run


LABELS10 = np.arange(4, dtype=np.int32)

STEP_CASES = [
    Case("int32-images", "step", "batch['image'] has dtype int32; expected uint8 (0..255) or "
         "float in [0, 1]", step("aae", {"image": images(dtype=np.int32)})),
    Case("int32-images-jit", "step", "batch['image'] has dtype int32",
         step("aae", {"image": images(dtype=np.int32)}, "jit")),
    Case("bool-images-vmap", "step", "batch['image'] has dtype bool",
         step("aae", {"image": images(dtype=bool)}, "vmap")),
    Case("float-255-numpy", "step", "float images must be in [0, 1], got values up to 255 — "
         "divide by 255", step("aae", {"image": images(dtype=np.float32, value=255)})),
    Case("float-255-jax-array", "step", "batch['image']: float images must be in [0, 1], got "
         "values up to 255", step("wae", {"image": jnp.full((4, *SHAPE), 255.0)})),
    Case("float-minus-one", "step", "got values down to -1 — in [-1, 1]? map them with "
         "(x + 1) / 2", step("vae", {"image": images(dtype=np.float32, value=-1)})),
    Case("nan-images", "step", "batch['image'] contains NaN",
         step("aae", {"image": images(dtype=np.float32, value=np.nan)})),
    Case("float-255-gan", "step", "float images must be in [0, 1]",
         step("gan", {"image": images(dtype=np.float64, value=200)})),
    Case("empty-batch", "step", "batch['image'] is empty (batch dimension 0)",
         step("aae", {"image": images(0)})),
    Case("empty-batch-jit-wae", "step", "batch['image'] is empty (batch dimension 0)",
         step("wae", {"image": images(0)}, "jit")),
    Case("empty-batch-vmap", "step", "batch['image'] is empty",
         step("aae", {"image": images(0)}, "vmap")),
    Case("wrong-image-shape", "step", "batch['image'] has shape (4, 5, 5, 1); the model "
         "expects (n, 4, 4, 1)", step("aae", {"image": np.zeros((4, 5, 5, 1), np.uint8)}, "jit")),
    Case("no-image-key", "step", "has no 'image'", step("aae", {"images": images()})),
    Case("not-a-dict", "step", "batch must be a dict of arrays", step("vae", images()),
         TypeError),
    Case("label-out-of-range", "step", "batch['label'] holds labels from 7 to 10; expected "
         "integers in [0, 10)", step("style", {"image": images(), "label": LABELS10 + 7})),
    Case("float-labels-jit", "step", "batch['label'] has dtype float32; expected integer labels",
         step("style", {"image": images(), "label": np.zeros(4, np.float32)}, "jit")),
    Case("label-count-mismatch", "step", "batch['label'] has shape (3,); expected (4,), one "
         "label per image", step("style", {"image": images(), "label": LABELS10[:3]}, "jit")),
    Case("missing-labels", "step", "StyleAAE needs batch['label']",
         step("style", {"image": images()})),
    Case("supervised-prior-label-minus-two", "step", "holds labels from -2 to 3; expected "
         "integers in [0, 10) or -1 (unlabelled)",
         step("supervised_prior", {"image": images(), "label": LABELS10 - 2 * (LABELS10 == 0)})),
    Case("labeled-label-out-of-range", "step", "batch['labeled_label'] holds labels from 0 to 12",
         step("semi", {"image": images(), "labeled_image": images(),
                       "labeled_label": np.array([0, 1, 2, 12])})),
    Case("encode-float-255", "step", "images: float images must be in [0, 1]",
         call("aae", "encode", images(dtype=np.float32, value=255))),
    Case("encode-int64", "step", "images has dtype int64",
         call("vae", "encode", images(dtype=np.int64))),
    Case("reconstruct-bad-labels", "step", "labels holds labels from 8 to 11",
         call("style", "reconstruct", images(), LABELS10 + 8)),
    Case("decode-wrong-code-size", "step", "z has shape (2, 3); expected (n, 2)",
         call("aae", "decode", np.zeros((2, 3), np.float32))),
    Case("generate-zero", "step", "n must be a positive int", call("gan", "generate",
                                                                  jax.random.key(0), 0)),
    Case("log-weights-k-zero", "step", "k must be a positive int",
         call("vae", "log_weights", images(), jax.random.key(0), 0)),
    Case("check-batch-host-labels", "step", "train['label'] holds labels from 0 to 12; expected "
         "integers in [0, 10)",
         lambda ms: core.check_batch({"image": images(), "label": np.array([0, 1, 2, 12])},
                                     SHAPE, 10, where="train")),
    Case("model-check-batch-host-images", "step", "train['image']: float images must be in "
         "[0, 1], got values up to 255", lambda ms: ms.style[0].check_batch(
             {"image": images(dtype=np.float32, value=255), "label": LABELS10}, "train")),
]


@pytest.fixture(scope="module")
def tiny_models():
  return Models()


@pytest.mark.parametrize("case", STEP_CASES, ids=lambda c: c.id)
def test_step(case, tiny_models):
  with pytest.raises(case.error) as e:
    case.run(tiny_models)
  assert case.match in str(e.value)


# ---- data files -----------------------------------------------------------------------------

TEST_IMAGES, TEST_LABELS = (f"{s}.gz" for s in data.IDX_FILES["test"])


def _idx(arr: np.ndarray) -> bytes:
  magic = 2051 if arr.ndim == 3 else 2049
  return (magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
          + arr.astype(np.uint8).tobytes())


@functools.cache
def split_files() -> dict[str, bytes]:
  """The MNIST test files (gzip): the real ones if ``$AAEJAX_DATA_DIR`` has them."""
  root = data.resolve_data_dir()
  real = {f: os.path.join(root or "", "mnist", f) for f in (TEST_IMAGES, TEST_LABELS)}
  if root and all(os.path.isfile(p) for p in real.values()):
    return {f: open(p, "rb").read() for f, p in real.items()}
  rng = np.random.default_rng(0)
  return {TEST_IMAGES: gzip.compress(_idx(rng.integers(0, 256, (50, 28, 28)))),
          TEST_LABELS: gzip.compress(_idx(np.arange(50) % 10))}


def spoil(change: Callable[[dict[str, bytes]], None]):
  """A data case: ``change`` edits the files (name -> bytes; None deletes), then the load."""
  def run(root):
    files = dict(split_files())
    change(files)
    os.makedirs(os.path.join(root, "mnist"))
    for name, content in files.items():
      if content is not None:
        with open(os.path.join(root, "mnist", name), "wb") as f:
          f.write(content)
    return data.load_numpy("mnist", "test", root)
  return run


def _flip(files, where=None):
  """Flips a byte of the images' gzip stream: in the middle (a CRC error), or at ``where``."""
  raw = bytearray(files[TEST_IMAGES])
  raw[len(raw) // 2 if where is None else where] ^= 0xFF
  files[TEST_IMAGES] = bytes(raw)


def _raw(files, name, edit):
  """Replaces ``name.gz`` by the uncompressed file, edited by ``edit(bytearray)``."""
  raw = bytearray(gzip.decompress(files.pop(name)))
  files[name[:-3]] = bytes(edit(raw))


def _labels(files, edit):
  raw = gzip.decompress(files[TEST_LABELS])
  labels = np.frombuffer(raw, np.uint8, offset=8).copy()
  files[TEST_LABELS] = gzip.compress(_idx(edit(labels)))


def _set(raw, index, value):
  raw[index] = value
  return raw


DATA_CASES = [
    Case("gzip-flipped-byte", "data", f"{TEST_IMAGES}: corrupt gzip stream", spoil(_flip),
         data.DataFileError),
    Case("gzip-bad-deflate-data", "data", f"{TEST_IMAGES}: corrupt gzip stream",  # zlib.error
         spoil(lambda f: _flip(f, 100)), data.DataFileError),
    Case("gzip-truncated", "data", f"{TEST_LABELS}: corrupt gzip stream",
         spoil(lambda f: f.update({TEST_LABELS: f[TEST_LABELS][:len(f[TEST_LABELS]) // 2]}))),
    Case("raw-truncated", "data", "t10k-images-idx3-ubyte: IDX size mismatch",
         spoil(lambda f: _raw(f, TEST_IMAGES, lambda r: r[:-100]))),
    Case("wrong-magic", "data", "t10k-labels-idx1-ubyte: bad IDX magic 0x00000901",
         spoil(lambda f: _raw(f, TEST_LABELS, lambda r: _set(r, 2, 9)))),
    Case("count-mismatch", "data", "labels do not match the",
         spoil(lambda f: _labels(f, lambda y: y[:-1]))),
    Case("label-out-of-range", "data", f"{TEST_LABELS}: label 12 at index 0",
         spoil(lambda f: _labels(f, lambda y: _set(y, 0, 12)))),
    Case("missing-label-file", "data", "t10k-labels-idx1-ubyte[.gz] is missing",
         spoil(lambda f: f.update({TEST_LABELS: None}))),
    Case("images-file-holds-labels", "data", f"{TEST_IMAGES}: expected (n, 28, 28) images",
         spoil(lambda f: f.update({TEST_IMAGES: f[TEST_LABELS]}))),
    Case("empty-file", "data", "t10k-images-idx3-ubyte.gz: too short for an IDX header",
         spoil(lambda f: f.update({TEST_IMAGES: b""}))),
]


@pytest.mark.parametrize("case", DATA_CASES, ids=lambda c: c.id)
def test_data(case, tmp_path):
  with pytest.raises(case.error) as e:
    case.run(str(tmp_path))
  assert case.match in str(e.value)


# ---- config fields --------------------------------------------------------------------------


def config(name="aae_unsupervised", arg=None, **fields):
  import importlib
  c = importlib.import_module(f"configs.{name}").get_config(*([arg] if arg else []))
  for k, v in fields.items():
    if v is None:
      del c[k]
    else:
      c[k] = v
  return c


def checked(name="aae_unsupervised", **fields):
  return lambda: models.check(config(name, **fields))


CONFIG_CASES = [
    Case("negative-learning-rate", "config", "config.learning_rate=-0.001: expected a positive "
         "number", checked(learning_rate=-1e-3), ConfigError),
    Case("zero-critic-learning-rate", "config", "config.critic_learning_rate=0.0",
         checked(critic_learning_rate=0.0), ConfigError),
    Case("batch-size-zero", "config", "config.batch_size=0: expected an int >= 1",
         checked(batch_size=0), ConfigError),
    Case("num-steps-negative", "config", "config.num_steps=-1", checked(num_steps=-1),
         ConfigError),
    Case("latent-dim-zero", "config", "config.latent_dim=0", checked(latent_dim=0),
         ConfigError),
    Case("unknown-prior", "config", "config.prior='laplace': unknown prior",
         checked(prior="laplace"), ConfigError),
    Case("unknown-model", "config", "config.model='vqvae': unknown model",
         checked(model="vqvae"), ConfigError),
    Case("unknown-dataset", "config", "config.dataset='cifar10': unknown dataset",
         checked(dataset="cifar10"), ConfigError),
    Case("unknown-penalty", "config", "config.penalty='w1': unknown WAE penalty",
         checked("wae", penalty="w1"), ConfigError),
    Case("unknown-recon-loss", "config", "config.recon_loss='l1': unknown reconstruction loss",
         checked(recon_loss="l1"), ConfigError),
    Case("unknown-network", "config", "config.network='resnet': unknown network",
         checked(network="resnet"), ConfigError),
    Case("lr-lists-differ", "config", "config.lr_boundaries=(100,) and config.lr_factors=(): "
         "expected the same length", checked(lr_boundaries=(100,), lr_factors=()), ConfigError),
    Case("lr-boundaries-decrease", "config", "config.lr_boundaries=(200, 100): expected "
         "increasing", checked(lr_boundaries=(200, 100), lr_factors=(0.5, 0.1)), ConfigError),
    Case("phase-lr-factors-length", "config", "expected one factor per lr_boundaries entry "
         "(100,) for phase 'recon', got 2", checked(lr_boundaries=(100,), lr_factors=(0.5,),
                                                  phase_lr_factors={"recon": (0.5, 0.1)}),
         ConfigError),
    Case("phase-lr-factors-unknown-phase", "config", "config.phase_lr_factors: unknown phase "
         "'recn' of model AAE; expected one of ('recon', 'critic', 'gen')",
         checked(lr_boundaries=(100,), lr_factors=(0.5,), phase_lr_factors={"recn": (0.5,)}),
         ConfigError),
    Case("phase-lr-factors-not-positive", "config", "a dict of phase name -> tuple of positive",
         checked(lr_boundaries=(100,), lr_factors=(0.5,), phase_lr_factors={"recon": (0,)}),
         ConfigError),
    Case("adam-b1-one", "config", "config.adam_b1=1.0: expected a number in [0, 1)",
         checked(adam_b1=1.0), ConfigError),
    Case("encoder-dropout-one", "config",
         "config.encoder_dropout=1.0: expected a number in [0, 1)",
         checked(encoder_dropout=1.0), ConfigError),
    Case("hidden-not-ints", "config", "config.hidden=('abc',): expected a tuple of ints",
         checked(hidden=("abc",)), ConfigError),
    Case("unknown-evaluator", "config", "config.skip_evaluators=('nope',): unknown evaluator",
         checked(skip_evaluators=("nope",)), ConfigError),
    Case("fd-samples-one", "config", "config.fd_samples=1: expected an int >= 2",
         checked(fd_samples=1), ConfigError),
    Case("parzen-test-one", "config", "config.parzen_test=1: expected an int >= 2",
         checked(parzen_test=1), ConfigError),
    Case("num-labeled-not-multiple", "config", "num_labeled must be a positive multiple",
         checked("aae_semisupervised", num_labeled=7), ConfigError),
    Case("unknown-prior-option", "config", "unexpected keyword argument 'radiu'",
         checked(prior_options={"radiu": 3.0}), ConfigError),
    Case("model-missing", "config", "config.model is missing", checked(model=None),
         ConfigError),
    Case("negative-weight", "config", "config.gen_weight=-1.0: expected a number >= 0",
         checked(gen_weight=-1.0), ConfigError),
    Case("workdir-is-a-file", "config", "is a regular file",
         lambda: config_checks.check_workdir(__file__), ConfigError),
]


@pytest.mark.parametrize("case", CONFIG_CASES, ids=lambda c: c.id)
def test_config(case):
  with pytest.raises(case.error) as e:
    case.run()
  assert case.match in str(e.value)


# ---- command lines, in-process ---------------------------------------------------------------

UNSUP = "--config=experiments/configs/aae_unsupervised.py"

CLI_CASES = [
    Case("unknown-field", "cli", "--config.no_such_field=1: no field 'no_such_field' in the "
         "config", argv=(UNSUP, "--workdir={tmp}/w", "--config.no_such_field=1")),
    Case("misspelt-field", "cli", "(did you mean --config.hidden?)",
         argv=(UNSUP, "--workdir={tmp}/w", "--config.hiddn=(8,)")),
    Case("nested-unknown-field", "cli", "no field 'radius' in config.prior_options",
         argv=(UNSUP, "--workdir={tmp}/w", "--config.prior_options.radius=3")),
    Case("hidden-abc", "cli", "config.hidden=('abc',): expected a tuple of ints",
         argv=(UNSUP, "--workdir={tmp}/w", "--config.hidden=('abc',)")),
    # A bare value would become a one-item tuple: one layer where two may have been meant.
    Case("hidden-bare-int", "cli", '--config.hidden=1000: config.hidden is a tuple; write it '
         'as one, e.g. --config.hidden="(1000,)" for one item',
         argv=(UNSUP, "--workdir={tmp}/w", "--config.hidden=1000")),
    Case("skip-evaluators-bare-string", "cli", "--config.skip_evaluators=\"('parzen_ll',)\"",
         argv=(UNSUP, "--workdir={tmp}/w", "--config.skip_evaluators=parzen_ll")),
    Case("learning-rate-abc", "cli", "--config.learning_rate=abc: expected a number",
         argv=(UNSUP, "--workdir={tmp}/w", "--config.learning_rate=abc")),
    Case("batch-size-float", "cli", "--config.batch_size=1.5: expected an int",
         argv=(UNSUP, "--workdir={tmp}/w", "--config.batch_size=1.5")),
    Case("learning-rate-negative", "cli", "config.learning_rate=-0.1: expected a positive "
         "number", argv=(UNSUP, "--workdir={tmp}/w", "--config.learning_rate=-0.1")),
    Case("gen-learning-rate-zero", "cli", "config.gen_learning_rate=0.0",
         argv=(UNSUP, "--workdir={tmp}/w", "--config.gen_learning_rate=0")),
    Case("adam-b1-negative", "cli", "config.adam_b1=-0.5",
         argv=(UNSUP, "--workdir={tmp}/w", "--config.adam_b1=-0.5")),
    Case("lr-factors-longer", "cli", "config.lr_factors=(0.1, 0.2): expected the same length",
         argv=(UNSUP, "--workdir={tmp}/w", "--config.lr_boundaries=(10,)",
               "--config.lr_factors=(0.1,0.2)")),
    Case("unknown-prior", "cli", "config.prior='laplace': unknown prior",
         argv=(UNSUP, "--workdir={tmp}/w", "--config.prior=laplace")),
    Case("missing-config-file", "cli", "--config=experiments/configs/nope.py: no such file",
         argv=("--config=experiments/configs/nope.py", "--workdir={tmp}/w")),
    Case("config-variant-error", "cli", "ValueError: unknown gan config variant 'xx'",
         argv=("--config=experiments/configs/gan.py:xx", "--workdir={tmp}/w")),
    Case("config-without-get-config", "cli", "the file has no get_config() function",
         argv=("--config=experiments/configs/__init__.py", "--workdir={tmp}/w")),
    Case("no-config", "cli", "--config is required", argv=("--workdir={tmp}/w",)),
    Case("no-workdir", "cli", "--workdir is required", argv=(UNSUP,)),
    Case("workdir-is-a-file", "cli", "--workdir={tmp}/file is a regular file",
         argv=(UNSUP, "--workdir={tmp}/file")),
    Case("workdir-under-a-file", "cli", "{tmp}/file is a regular file",
         argv=(UNSUP, "--workdir={tmp}/file/run")),
    Case("unknown-flag", "cli", "unknown flag --wrkdir (did you mean --workdir?)",
         argv=(UNSUP, "--wrkdir={tmp}/w")),
    Case("model-rejects-config", "cli", "num_labeled must be a positive multiple of the 10",
         argv=("--config=experiments/configs/aae_semisupervised.py", "--workdir={tmp}/w",
               "--config.num_labeled=15")),
    Case("corrupt-data-file", "cli", "train-labels-idx1-ubyte.gz: corrupt gzip stream",
         argv=(UNSUP, "--workdir={tmp}/w", "--config.data_dir={data}"), code=1),
    Case("dataset-not-found", "cli", "Dataset 'mnist' split 'train' not found",
         argv=(UNSUP, "--workdir={tmp}/w", "--config.data_dir={tmp}"), code=1),
]


def corrupt_train_dir(root) -> str:
  """A data dir with tiny train files, the labels' gzip CRC spoilt."""
  os.makedirs(os.path.join(root, "mnist"), exist_ok=True)
  images, labels = (os.path.join(root, "mnist", f"{s}.gz") for s in data.IDX_FILES["train"])
  with open(images, "wb") as f:
    f.write(gzip.compress(_idx(np.zeros((20, 28, 28)))))
  raw = bytearray(gzip.compress(_idx(np.arange(20) % 10)))
  raw[-6] ^= 0xFF  # the CRC
  with open(labels, "wb") as f:
    f.write(bytes(raw))
  return root


@pytest.fixture
def cli_dirs(tmp_path, monkeypatch):
  monkeypatch.chdir(ROOT)
  (tmp_path / "file").write_text("not a directory")
  return {"tmp": str(tmp_path), "data": corrupt_train_dir(str(tmp_path / "data"))}


def one_error_line(stderr: str) -> str:
  lines = stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), stderr
  assert "Traceback" not in stderr
  return lines[0]


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: c.id)
def test_cli(case, cli_dirs, capsys, monkeypatch):
  import main
  monkeypatch.setenv(data.DATA_DIR_ENV, "")
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # no tfds fallback
  argv = ["main.py"] + [a.format(**cli_dirs) for a in case.argv]
  code = main.run(argv)
  err = capsys.readouterr().err
  line = one_error_line(err)
  assert code == case.code, err
  assert case.match.format(**cli_dirs) in line


# ---- the real command lines ------------------------------------------------------------------

SUBPROCESS_CASES = [
    Case("main-unknown-field", "subprocess", "no field 'no_such_field'",
         argv=(UNSUP, "--workdir={tmp}/w", "--config.no_such_field=1")),
    Case("main-hidden-abc", "subprocess", "--config.hidden=abc: config.hidden is a tuple",
         argv=(UNSUP, "--workdir={tmp}/w", "--config.hidden=abc")),
    Case("main-config-syntax-error", "subprocess", "SyntaxError",
         argv=("--config={tmp}/broken.py", "--workdir={tmp}/w")),
    Case("sweep-no-grid", "subprocess", "--grid is required",
         argv=("--config=experiments/configs/wae.py", "--workdir={tmp}/s"), script="sweep.py"),
    Case("sweep-unsweepable-field", "subprocess", "--grid: cannot sweep 'latent_dim'",
         argv=("--config=experiments/configs/wae.py", "--workdir={tmp}/s",
               "--grid=latent_dim=2,3"), script="sweep.py"),
]


@pytest.fixture(scope="module")
def processes(tmp_path_factory):
  """Every subprocess case and ``main.py --help``, started at once; id -> (code, out, err)."""
  tmp = str(tmp_path_factory.mktemp("cli"))
  with open(os.path.join(tmp, "broken.py"), "w") as f:
    f.write("def get_config(:\n  pass\n")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  runs = {c.id: [c.script] + [a.format(tmp=tmp) for a in c.argv] for c in SUBPROCESS_CASES}
  runs["help"] = ["main.py", UNSUP, "--config.num_steps=7", "--help"]
  started = {k: subprocess.Popen([sys.executable, os.path.join("experiments", argv[0]),
                                  *argv[1:]], cwd=ROOT, env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for k, argv in runs.items()}
  return {k: (p.wait(timeout=120), p.stdout.read(), p.stderr.read())
          for k, p in started.items()}


@pytest.mark.parametrize("case", SUBPROCESS_CASES, ids=lambda c: c.id)
def test_subprocess(case, processes):
  code, _, err = processes[case.id]
  line = one_error_line(err)
  assert code == case.code, err
  assert case.match in line


def test_help_lists_the_fields_with_values_and_comments(processes):
  code, out, err = processes["help"]
  assert code == 0, err
  assert "--workdir: Directory for checkpoints" in out
  lines = out.splitlines()
  field = lambda name: next(line for line in lines if line.strip().startswith(name + " "))
  assert "= 7" in field("num_steps") and "# 8⅓ epochs at batch 100" in field("num_steps")
  assert "# False (or $AAEJAX_NO_DOWNLOAD=1)" in field("download")  # default.py's comment
  assert "'gaussian_mixture'" in field("prior") and "swiss_roll" in field("prior")
  assert "# reconstruction phase" in field("learning_rate")  # the config file's own comment
  assert "# Data: a tfds name." in out  # a block comment of default.py


def test_help_without_config_lists_the_default_fields(capsys, monkeypatch):
  import main
  monkeypatch.chdir(ROOT)
  assert main.run(["main.py", "--help"]) == 0
  out = capsys.readouterr().out
  assert "Fields of the default config" in out
  assert "# 0: all local devices" in next(l for l in out.splitlines() if "num_devices" in l)


def test_help_comments_match_the_variant(capsys, monkeypatch):
  """A comment beside an assignment under another variant's branch is not shown; choices are
  listed whole (the VAE's posterior is "gaussian", the default's comment names both)."""
  import main
  monkeypatch.chdir(ROOT)
  fields = {}
  for variant in ("vae.py", "vae.py:celeba_cpu"):
    assert main.run(["main.py", f"--config=experiments/configs/{variant}", "--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    fields[variant] = lambda name, lines=lines: next(
        line for line in lines if line.strip().startswith(name + " "))
  assert fields["vae.py"]("recon_weight").rstrip().endswith("= 1.0")
  assert "# 1 / (2 sigma_x^2)" in fields["vae.py:celeba_cpu"]("recon_weight")
  assert '# "deterministic" or "gaussian"' in fields["vae.py"]("posterior")
