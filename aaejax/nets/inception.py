"""The Inception-v3 of FID (pool3, 2048-D features), frozen, in flax.linen (NHWC).

This is the network of pytorch-fid (repository mseitzer/pytorch-fid,
``src/pytorch_fid/inception.py``: ``fid_inception_v3`` with ``FIDInceptionA``, ``FIDInceptionC``,
``FIDInceptionE_1`` and ``FIDInceptionE_2`` patched into torchvision's ``Inception3``), which
reproduces the TensorFlow graph ``inception-2015-12-05`` that the original FID code used:
its average-pool branches exclude the zero padding from the average (``count_include_pad=False``)
and the last block (``Mixed_7c``) max-pools its pool branch. The features are the output of the
final global average pool ("pool3"), 2048-D.

Preprocessing (:func:`preprocess`): float images in [0, 1] of any size, grey or RGB, are resized
bilinearly to 299×299 as ``F.interpolate(mode="bilinear", align_corners=False)`` does (see
:mod:`aaejax.nets.imagenet`), then scaled to [-1, 1] by ``2 x - 1``.

Weights: the ``.pth`` of pytorch-fid's GitHub release (about 92 MB, not shipped with aaejax and
not downloaded by it). With internet access::

    mkdir -p ~/.cache/aaejax
    curl -L -o ~/.cache/aaejax/pt_inception-2015-12-05-6726825d.pth \\
      https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth

(or ``wget -O …``; pytorch-fid itself caches the same file under
``~/.cache/torch/hub/checkpoints/``). Then point aaejax at it with the config field
``inception_weights`` (e.g. ``--config.inception_weights=$HOME/.cache/aaejax/pt_inception-2015-12-05-6726825d.pth``),
or in Python ``variables = load_variables(path)``. The file is read by :mod:`aaejax.nets.pth`
without torch; its ``fc`` (1008-way classifier) is not used.

Example (random weights, the same tree as the real ones; no computation):

  >>> variable_shapes()["params"]["Mixed_7c"]["branch_pool"]["conv"]["kernel"].shape
  (1, 1, 2048, 192)
"""

from __future__ import annotations

import functools
import os
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from aaejax.nets import imagenet, pth

FEATURE_DIM = 2048
IMAGE_SIZE = 299
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
               + WEIGHTS_FILE)

Variables = Any  # {"params": ..., "batch_stats": ...}

_BN_EPS = 1e-3


class BasicConv(nn.Module):
  """torchvision's ``BasicConv2d``: conv (no bias, symmetric zero padding) → BatchNorm
  (ε = 1e-3) → ReLU. Submodules ``conv`` and ``bn`` as in torch."""

  features: int
  kernel: Sequence[int]
  stride: int = 1
  padding: Sequence[int] = (0, 0)

  @nn.compact
  def __call__(self, x):
    (ph, pw) = self.padding
    x = nn.Conv(self.features, tuple(self.kernel), strides=self.stride,
                padding=((ph, ph), (pw, pw)), use_bias=False, name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=_BN_EPS, name="bn")(x)
    return nn.relu(x)


def _avg_pool_3x3(x):
  """3×3 stride-1 average pool, zero padding excluded from the average (TF's, pytorch-fid's
  ``count_include_pad=False``)."""
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_s2(x):
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class InceptionA(nn.Module):
  """``FIDInceptionA`` (Mixed_5b/c/d): 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | avgpool→1×1."""

  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv(64, (1, 1), name="branch1x1")(x)
    b5 = BasicConv(48, (1, 1), name="branch5x5_1")(x)
    b5 = BasicConv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
    b3 = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
    bp = BasicConv(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """``InceptionB`` (Mixed_6a), grid 35 → 17: 3×3/2 | 1×1→3×3→3×3/2 | maxpool/2."""

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(384, (3, 3), stride=2, name="branch3x3")(x)
    bd = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
    bd = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = BasicConv(96, (3, 3), stride=2, name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
  """``FIDInceptionC`` (Mixed_6b–e): factorised 7×7 branches with ``channels_7x7`` channels."""

  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    b1 = BasicConv(192, (1, 1), name="branch1x1")(x)
    b7 = BasicConv(c7, (1, 1), name="branch7x7_1")(x)
    b7 = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
    bd = BasicConv(c7, (1, 1), name="branch7x7dbl_1")(x)
    bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
    bd = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
    bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
    bd = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
    bp = BasicConv(192, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """``InceptionD`` (Mixed_7a), grid 17 → 8."""

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(192, (1, 1), name="branch3x3_1")(x)
    b3 = BasicConv(320, (3, 3), stride=2, name="branch3x3_2")(b3)
    b7 = BasicConv(192, (1, 1), name="branch7x7x3_1")(x)
    b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = BasicConv(192, (3, 3), stride=2, name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
  """``FIDInceptionE_1`` (Mixed_7b; average pool branch) or ``FIDInceptionE_2`` (Mixed_7c;
  ``max_pool=True``: 3×3 stride-1 max pool, the quirk of the FID graph)."""

  max_pool: bool = False

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv(320, (1, 1), name="branch1x1")(x)
    b3 = BasicConv(384, (1, 1), name="branch3x3_1")(x)
    b3 = jnp.concatenate([BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                          BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], -1)
    bd = BasicConv(448, (1, 1), name="branch3x3dbl_1")(x)
    bd = BasicConv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate([BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                          BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], -1)
    if self.max_pool:
      pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    else:
      pooled = _avg_pool_3x3(x)
    bp = BasicConv(192, (1, 1), name="branch_pool")(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
  """Inception-v3 of FID up to pool3: (n, h, w, 3) in [-1, 1] (h, w ≥ 75) -> (n, 2048)."""

  @nn.compact
  def __call__(self, x):
    x = BasicConv(32, (3, 3), stride=2, name="Conv2d_1a_3x3")(x)
    x = BasicConv(32, (3, 3), name="Conv2d_2a_3x3")(x)
    x = BasicConv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
    x = _max_pool_3x3_s2(x)
    x = BasicConv(80, (1, 1), name="Conv2d_3b_1x1")(x)
    x = BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x)
    x = _max_pool_3x3_s2(x)
    x = InceptionA(32, name="Mixed_5b")(x)
    x = InceptionA(64, name="Mixed_5c")(x)
    x = InceptionA(64, name="Mixed_5d")(x)
    x = InceptionB(name="Mixed_6a")(x)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
      x = InceptionC(c7, name=name)(x)
    x = InceptionD(name="Mixed_7a")(x)
    x = InceptionE(name="Mixed_7b")(x)
    x = InceptionE(max_pool=True, name="Mixed_7c")(x)
    return jnp.mean(x, axis=(1, 2))


_MODEL = FIDInceptionV3()
_INIT_SHAPE = (1, 75, 75, 3)  # parameters don't depend on the input size; 75 is the smallest


def init_variables(rng: jax.Array) -> Variables:
  """Random variables (He-normal kernels, identity BatchNorm; see
  :func:`aaejax.nets.imagenet.random_variables`) with the tree, shapes and dtypes of
  :func:`load_variables`'s; for tests and shape checks, not for FID."""
  return imagenet.random_variables(variable_shapes(), rng)


@functools.lru_cache(maxsize=None)
def variable_shapes() -> Variables:
  """The variables' tree of ``jax.ShapeDtypeStruct`` (no computation; cached)."""
  return jax.eval_shape(_MODEL.init, jax.random.key(0), jnp.zeros(_INIT_SHAPE, jnp.float32))


def torch_key_prefix(path: tuple[str, ...]) -> str:
  """Flax module path -> torch module name: the flax modules carry the torch names."""
  return ".".join(path)


def load_variables(path: str | os.PathLike | None) -> Variables:
  """Loads pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` into flax variables.

  Args:
    path: the ``.pth`` file (see the module docstring for how to get it).

  Raises:
    FileNotFoundError: ``path`` is None or missing; the message says where to download it.
    aaejax.nets.pth.PthError: the file is not that state dict (a key missing, of the wrong shape, or
      unused; the message names it). ``fc.*`` and ``*.num_batches_tracked`` keys are ignored.
  """
  if path is None or not os.path.isfile(path):
    raise FileNotFoundError(
        f"FID Inception weights not found at {path!r}: download {WEIGHTS_FILE} (92 MB) from "
        f"{WEIGHTS_URL} (e.g. `curl -L -o ~/.cache/aaejax/{WEIGHTS_FILE} <that URL>`) and set "
        "the config field inception_weights to its path")
  path = os.fspath(path)
  state = pth.load_state_dict(path)
  variables = pth.flax_variables_from_torch(state, variable_shapes(), torch_key_prefix, path,
                                            ignore=("num_batches_tracked", "fc.weight",
                                                    "fc.bias"))
  return jax.tree_util.tree_map(jnp.asarray, variables)


def preprocess(images: jax.Array) -> jax.Array:
  """[0, 1] NHWC images of any size (1 or 3 channels) -> float32 (n, 299, 299, 3) in [-1, 1]:
  bilinear resize (torch ``align_corners=False``, no antialiasing), then ``2 x - 1``."""
  return imagenet.rgb_resized(images, IMAGE_SIZE) * 2.0 - 1.0


def apply(variables: Variables, inputs: jax.Array) -> jax.Array:
  """The network on already-preprocessed inputs (n, h, w, 3) -> pool3 (n, 2048); not jitted."""
  return _MODEL.apply(variables, inputs)


@jax.jit
def features(variables: Variables, images: jax.Array) -> jax.Array:
  """pool3 features float32 (n, 2048) of float images (n, h, w, 1 or 3) in [0, 1].

  Pure and jitted; on CPU an image costs about 6 GFLOP (299×299), so batch accordingly.
  """
  return apply(variables, preprocess(images))
