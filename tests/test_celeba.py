"""CelebA 64x64: the loader (synthetic tars and directories, the real subset), label-less runs."""

from __future__ import annotations

import io
import os
import sys
import tarfile

import numpy as np
import pytest

from aaejax import data, evaluation, models
from aaejax.data import celeba
from aaejax.errors import ConfigError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "experiments"))

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)


def _face(width: int, height: int, shade: int = 0) -> np.ndarray:
  """Green outside the centre crop; inside it, the left half red, the right half blue."""
  left, top, right, bottom = celeba.crop_box(width, height)
  img = np.zeros((height, width, 3), np.uint8)
  img[:] = GREEN
  mid = (left + right) // 2
  img[top:bottom, left:mid] = RED
  img[top:bottom, mid:right] = BLUE
  img[0, 0] = shade  # tells the images apart
  return img


def _jpeg(img: np.ndarray) -> bytes:
  from PIL import Image
  buf = io.BytesIO()
  Image.fromarray(img).save(buf, format="JPEG", quality=95, subsampling=0)  # 4:4:4
  return buf.getvalue()


def _write_tar(path, n: int = 5, size=(89, 109), corrupt_member: int | None = None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tarfile.open(path, "w") as tar:
    for i in reversed(range(n)):  # stored out of order: the loader sorts by name
      raw = _jpeg(_face(*size, shade=10 * i))
      if i == corrupt_member:
        raw = b"not a jpeg" + raw[:40]
      info = tarfile.TarInfo(f"celebA/{i + 1:06d}.jpg")
      info.size = len(raw)
      tar.addfile(info, io.BytesIO(raw))


@pytest.fixture(autouse=True)
def fresh_memory(monkeypatch):
  monkeypatch.setattr(celeba, "_MEMORY", {})


@pytest.fixture
def no_tfds(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)


def _assert_face_layout(images: np.ndarray):
  """Red left half, blue right half, no green border: the crop and resize were right."""
  x = images.astype(np.int32)
  assert images.dtype == np.uint8 and images.shape[1:] == (64, 64, 3)
  left, right = x[:, 8:56, 4:28], x[:, 8:56, 36:60]
  assert (left[..., 0] > 200).all() and (left[..., 2] < 60).all()
  assert (right[..., 2] > 200).all() and (right[..., 0] < 60).all()
  # JPEG's 8x8 blocks blur the crop's edge by a pixel or so; inside it no green.
  assert (x[:, 2:62, 2:62, 1] < 60).all(), "green from outside the crop box leaked in"


def test_synthetic_tar_splits_cache_and_layout(tmp_path, monkeypatch, no_tfds):
  root, cache = tmp_path / "data", tmp_path / "cache"
  _write_tar(str(root / "celeba" / "img_align_celeba_mine.tar"), n=5)
  monkeypatch.setenv(data.DATA_DIR_ENV, str(root))
  train = data.load_numpy("celeb_a", "train", cache_dir=str(cache))
  test = data.load_numpy("celeb_a", "test", cache_dir=str(cache))
  assert sorted(train) == ["image"] and sorted(test) == ["image"]  # no labels
  assert train["image"].shape == (4, 64, 64, 3) and test["image"].shape == (1, 64, 64, 3)
  _assert_face_layout(np.concatenate([train["image"], test["image"]]))
  # File name order: 000001..000004 train, 000005 test (the pixel at (0, 0) is 10 * i).
  shades = [int(im[0, 0].mean()) for im in np.concatenate([train["image"], test["image"]])]
  assert shades == sorted(shades) and not train["image"].flags.writeable
  assert len(list(cache.glob("celeba-*.npy"))) == 1
  assert data.source("celeb_a").endswith("img_align_celeba_mine.tar")
  # A fresh process reads the cache: no decoding.
  monkeypatch.setattr(celeba, "_MEMORY", {})
  monkeypatch.setattr(celeba, "decode_tar", lambda path: pytest.fail("decoded again"))
  again = data.load_numpy("celeb_a", "test", str(root), cache_dir=str(cache))
  np.testing.assert_array_equal(again["image"], test["image"])


def test_full_size_directory_uses_the_paper_crop(tmp_path, no_tfds):
  directory = tmp_path / "celeba" / "img_align_celeba"
  directory.mkdir(parents=True)
  for i in range(3):
    (directory / f"{i + 1:06d}.jpg").write_bytes(_jpeg(_face(178, 218)))
  assert celeba.crop_box(178, 218) == (19, 39, 159, 179)
  train = data.load_numpy("celeb_a", "train", str(tmp_path), cache_dir=str(tmp_path / "cache"))
  test = data.load_numpy("celeb_a", "test", str(tmp_path), cache_dir=str(tmp_path / "cache"))
  assert len(train["image"]) == 2 and len(test["image"]) == 1
  _assert_face_layout(train["image"])


def test_split_rule():
  assert celeba.split_slice(10_000, "test") == slice(8000, 10_000)
  assert celeba.split_slice(202_599, "train") == slice(0, 162_770)
  assert celeba.split_slice(202_599, "test") == slice(182_637, 202_599)
  assert celeba.split_slice(3, "train") == slice(0, 2)


def test_bad_files_name_the_file(tmp_path, no_tfds):
  bad = tmp_path / "a" / "celeba" / celeba.PREFERRED_TAR
  bad.parent.mkdir(parents=True)
  bad.write_bytes(b"\0garbage" * 100)
  with pytest.raises(data.DataFileError, match=celeba.PREFERRED_TAR):
    data.load_numpy("celeb_a", "train", str(tmp_path / "a"), cache_dir=str(tmp_path / "cache"))
  truncated = tmp_path / "b" / "celeba" / "img_align_celeba_x.tar"
  _write_tar(str(truncated), n=3)
  truncated.write_bytes(truncated.read_bytes()[:1000])
  with pytest.raises(data.DataFileError, match="img_align_celeba_x.tar"):
    data.load_numpy("celeb_a", "train", str(tmp_path / "b"), cache_dir=str(tmp_path / "cache"))
  member = tmp_path / "c" / "celeba" / "img_align_celeba_y.tar"
  _write_tar(str(member), n=3, corrupt_member=1)
  with pytest.raises(data.DataFileError, match=r"img_align_celeba_y.tar:celebA/000002.jpg"):
    data.load_numpy("celeb_a", "train", str(tmp_path / "c"), cache_dir=str(tmp_path / "cache"))
  with pytest.raises(data.DatasetNotFoundError, match="img_align_celeba_first10k_89x109.tar"):
    data.load_numpy("celeb_a", "train", str(tmp_path / "none"), cache_dir=str(tmp_path / "cache"))


def test_real_subset():
  root = data.resolve_data_dir()
  if not root or not os.path.isfile(os.path.join(root, "celeba", celeba.PREFERRED_TAR)):
    pytest.skip("the real CelebA subset is not under $AAEJAX_DATA_DIR/celeba/")
  # Decodes once (about 8 s on 2 cores) into the cache dir ($AAEJAX_CACHE_DIR or
  # ~/.cache/aaejax), then loads from there.
  train, test = data.load_numpy("celeb_a", "train"), data.load_numpy("celeb_a", "test")
  assert train["image"].shape == (8000, 64, 64, 3) and test["image"].shape == (2000, 64, 64, 3)
  mean = test["image"].reshape(-1, 3).mean(axis=0)
  assert mean[0] > mean[1] > mean[2] > 60  # faces: more red than green than blue
  centre, corner = test["image"][:, 24:40, 24:40].std(), test["image"].std()
  assert 20 < corner and 10 < centre  # real, varied images


def test_models_that_read_labels_are_refused():
  import ml_collections
  from configs import aae_supervised_prior
  config = aae_supervised_prior.get_config()
  config.dataset = "celeb_a"
  with pytest.raises(ConfigError, match=r"reads labels .*celeb_a.* has none"):
    models.create(config, (64, 64, 3))
  wae = models.create(ml_collections.ConfigDict(
      {"model": "wae", "dataset": "celeb_a", "latent_dim": 2, "prior": "gaussian",
       "penalty": "mmd_imq"}), (64, 64, 3))
  names = [e.name for e in evaluation.select(wae, {"dataset": "celeb_a"})]
  assert "knn_accuracy" not in names and "recon_loss" in names
  assert "knn_accuracy" in [e.name for e in evaluation.select(wae, {"dataset": "mnist"})]


def test_label_less_run_trains_evaluates_and_plots(tmp_path, monkeypatch):
  """A tiny conv WAE on a synthetic CelebA tar through the whole loop, with its figures."""
  import matplotlib.image
  from configs import wae as wae_config
  from aaejax.run import train
  root = tmp_path / "data"
  _write_tar(str(root / "celeba" / "img_align_celeba_tiny.tar"), n=25)
  c = wae_config.get_config("celeba_cpu")
  c.update(data_dir=str(root), cache_dir=str(tmp_path / "cache"), conv_channels=(4, 4, 4, 8),
           latent_dim=4, batch_size=10, num_steps=2, eval_every=2, checkpoint_every=2,
           log_every=1, lr_boundaries=(), lr_factors=(), disable_progress=True,
           fd_samples=16, kid_subsets=4)  # EfficientNet on 16 images, not 2,000
  out = train.train_and_evaluate(c, str(tmp_path / "run"))
  assert "eval/knn_accuracy" not in out and np.isfinite(out["eval/recon_loss"])
  if "eval/fd_effnet" in out:  # with the [effnet] extra installed
    assert (out["eval/fd_samples"], out["eval/fd_real_samples"]) == (16, 5)
    assert np.isfinite(out["eval/fd_effnet"]) and np.isfinite(out["eval/kid_effnet"])
  plots = tmp_path / "run" / "plots"
  for name in ("samples.png", "reconstructions.png", "latent_qz.png"):
    image = matplotlib.image.imread(plots / name)
    assert image.ndim == 3 and image.shape[0] >= 100 and image.shape[1] >= 600, name
  # The reconstructions grid shows colour: red and blue faces from the test split.
  grid = matplotlib.image.imread(plots / "reconstructions.png")[..., :3]
  assert (grid[..., 0] - grid[..., 2] > 0.5).any() and (grid[..., 2] - grid[..., 0] > 0.5).any()


@pytest.mark.parametrize("file,variant", [
    ("wae", "celeba"), ("wae", "celeba_cpu"), ("wae", "celeba_gan"), ("wae", "celeba_cpu_gan"),
    ("vae", "celeba"), ("vae", "celeba_cpu"), ("gan", "celeba"), ("gan", "celeba_cpu"),
    ("aae_unsupervised", "celeba"), ("aae_unsupervised", "celeba_cpu")])
def test_celeba_configs_build_the_papers_nets(file, variant):
  import importlib
  c = importlib.import_module(f"configs.{file}").get_config(variant)
  model = models.check(c)  # the preflight: fields, then the model for 64x64x3
  assert c.dataset == "celeb_a" and c.batch_size == 100 and c.adam_b1 == 0.5
  width = (8, 16, 32, 64) if "cpu" in variant else (128, 256, 512, 1024)
  nets = model.networks()
  first = nets["encoder" if "encoder" in nets else "critic"][0]
  last = nets["decoder" if "decoder" in nets else "generator"][0]
  assert tuple(first.channels) == width and first.kernel_size == 5
  assert tuple(last.channels) == width[::-1] and last.kernel_size == 5
  if file == "wae":
    gan = variant.endswith("_gan")
    assert (model.penalty == "gan") == gan and model.critic_log_prior == gan
    assert c.penalty_weight == (1.0 if gan else 100.0)
