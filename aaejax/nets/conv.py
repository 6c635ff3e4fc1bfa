"""Strided convolutions and transposed convolutions that run fast on XLA:CPU.

:class:`Conv` and :class:`ConvTranspose` hold the same parameters as ``flax.linen.Conv`` and
``flax.linen.ConvTranspose`` (``kernel`` (kh, kw, in, out) and ``bias`` (out,), the same
initialisers, so the same values from the same rng) and compute the same function, for the
``padding="SAME"`` layers the project's nets use. Swapping one for the other keeps checkpoints.

Why: XLA:CPU's undilated convolutions are fast, its dilated ones are not. A transposed
convolution's forward pass is a convolution of the zero-dilated input, a strided
convolution's input gradient is one too, and a transposed convolution's kernel gradient is a
convolution with a dilated window; XLA:CPU runs those 5–20× slower than undilated
convolutions of the same FLOPs (BENCHMARKS.md, "Conv nets on the CPU", has the per-layer
profile). Here every stride-s layer runs on undilated convolutions only:

- a transposed convolution is computed sub-pixel (:func:`subpixel_conv_transpose`): each of
  the s·s output phases is a stride-1 convolution of the input with the kernel taps that land
  on it, and a depth-to-space reshape interleaves the phases (no zeros inserted, no product
  wasted);
- the gradients use that ``conv_transpose(·, k)`` is the transpose of ``conv(·, flip(k))``
  (kernel flipped, in and out swapped): a convolution's input gradient is a sub-pixel
  transposed convolution of the output gradient, a transposed convolution's input gradient
  an ordinary strided convolution, and its kernel gradient XLA's kernel gradient of that
  strided convolution, flipped (:func:`conv`, :func:`conv_transpose`, custom VJPs; they
  differentiate again, e.g. for gradient penalties).

Stride-1 layers have nothing dilated and use XLA's convolutions as they are. ``impl`` picks
the computation: ``"subpixel"`` (above), ``"xla"`` (``lax``'s convolutions, as flax), or
``"auto"`` (the default: ``"subpixel"`` when the program is lowered for the CPU and XLA's own
convolutions elsewhere, chosen per platform by ``lax.platform_dependent``: GPU and TPU
convolutions are fast with any dilation, and nothing was measured there).

Example:

  >>> import jax, jax.numpy as jnp
  >>> import flax.linen as nn
  >>> x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  >>> ours, ref = ConvTranspose(4, (5, 5), (2, 2)), nn.ConvTranspose(4, (5, 5), (2, 2))
  >>> params = ref.init(jax.random.key(1), x)
  >>> y = ours.apply(params, x)
  >>> y.shape, bool(jnp.allclose(y, ref.apply(params, x), atol=1e-5))
  ((2, 16, 16, 4), True)
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

IMPLS = ("auto", "subpixel", "xla")


def same_pads(size: int, k: int, s: int) -> tuple[int, int]:
  """(before, after) padding of a ``"SAME"`` convolution along one axis (as ``lax``).

  >>> same_pads(64, 5, 2), same_pads(28, 4, 2), same_pads(7, 3, 1)
  ((1, 2), (1, 1), (1, 1))
  """
  out = -(-size // s)
  total = max((out - 1) * s + k - size, 0)
  return total // 2, total - total // 2


def transpose_pad_before(k: int, s: int) -> int:
  """Padding before the (zero-dilated) input of a ``"SAME"`` transposed convolution along one
  axis, as ``lax.conv_transpose`` pads it."""
  if s > k - 1:
    return k - 1
  return -(-(k + s - 2) // 2)


def _native_conv(x, kernel, strides):
  return lax.conv_general_dilated(x, kernel, tuple(strides), "SAME",
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _native_conv_transpose(x, kernel, strides):
  return lax.conv_transpose(x, kernel, tuple(strides), "SAME",
                            dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _flip(kernel):
  """The kernel of a layer's adjoint: spatially flipped, in and out swapped. For "SAME"
  layers, ``conv_transpose(., k)`` is the transpose of ``conv(., flip(k))`` (exactly: the
  same sums), and ``flip`` is its own inverse."""
  return jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)


def conv_s2d(x: jax.Array, kernel: jax.Array, strides: Sequence[int]) -> jax.Array:
  """The strided "SAME" convolution as a stride-1 one on the space-to-depth input (its input
  gradient is then an undilated convolution): the input gradient of :func:`conv` where the
  input's side is not a multiple of the stride."""
  kh, kw, cin, cout = kernel.shape
  sh, sw = strides
  n, h, w, _ = x.shape
  (ph, _), (pw, _) = same_pads(h, kh, sh), same_pads(w, kw, sw)
  ho, wo = -(-h // sh), -(-w // sw)
  ah, aw = -(-kh // sh), -(-kw // sw)
  hp, wp = sh * (ho + ah - 1), sw * (wo + aw - 1)
  x = jnp.pad(x, ((0, 0), (ph, max(hp - h - ph, 0)), (pw, max(wp - w - pw, 0)), (0, 0)))
  x = x[:, :hp, :wp]
  x = x.reshape(n, hp // sh, sh, wp // sw, sw, cin).transpose(0, 1, 3, 2, 4, 5)
  x = x.reshape(n, hp // sh, wp // sw, sh * sw * cin)
  k = jnp.pad(kernel, ((0, ah * sh - kh), (0, aw * sw - kw), (0, 0), (0, 0)))
  k = k.reshape(ah, sh, aw, sw, cin, cout).transpose(0, 2, 1, 3, 4, 5)
  # Padded by one row and column and cropped: XLA:CPU runs unpadded stride-1 convolutions
  # through a slow path (BENCHMARKS.md).
  y = lax.conv_general_dilated(x, k.reshape(ah, aw, sh * sw * cin, cout), (1, 1),
                               ((0, 1), (0, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y[:, :ho, :wo]


def _axis_phases(k: int, s: int) -> list[tuple[int, int, int]]:
  """Per output phase p of one axis of a stride-s "SAME" transposed convolution:
  (first kernel tap j0, its input offset d0, number of taps). Output ``s·m + p`` reads
  input ``m + d0 + t`` with kernel tap ``j0 + s·t``."""
  pad = transpose_pad_before(k, s)
  phases = []
  for p in range(s):
    j0 = (pad - p) % s
    phases.append((j0, (p + j0 - pad) // s, len(range(j0, k, s))))
  return phases


def subpixel_conv_transpose(x: jax.Array, kernel: jax.Array,
                            strides: Sequence[int]) -> jax.Array:
  """``lax.conv_transpose(x, kernel, strides, "SAME")`` (NHWC/HWIO, the kernel not flipped:
  flax's default) computed sub-pixel: output phase (p, q) is a stride-1 convolution of ``x``
  with the taps ``kernel[j0::s, k0::s]`` that land on it, and the s·s phases are interleaved
  (depth to space). Every product is one the transposed convolution makes; no zeros are
  inserted."""
  sh, sw = strides
  n, h, w, _ = x.shape
  rows = []
  for jh, dh, th in _axis_phases(kernel.shape[0], sh):
    cols = [lax.conv_general_dilated(x, kernel[jh::sh, jw::sw], (1, 1),
                                     ((-dh, th - 1 + dh), (-dw, tw - 1 + dw)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
            for jw, dw, tw in _axis_phases(kernel.shape[1], sw)]
    rows.append(jnp.stack(cols, axis=3))            # (n, h, w, sw, out)
  return jnp.stack(rows, axis=2).reshape(n, h * sh, w * sw, kernel.shape[-1])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int]) -> jax.Array:
  """``lax.conv_general_dilated(x, kernel, strides, "SAME")`` (NHWC/HWIO) whose gradients
  avoid dilated convolutions: the input gradient is :func:`conv_transpose` of the output
  gradient with the flipped kernel (cropped where the input's side is not a multiple of the
  stride; the gradient of :func:`conv_s2d` where cropping does not give it); the kernel
  gradient is XLA's own."""
  return _native_conv(x, kernel, strides)


def _conv_fwd(x, kernel, strides):
  return _native_conv(x, kernel, strides), (x, kernel)


def _conv_bwd(strides, res, g):
  x, kernel = res
  _, h, w, _ = x.shape
  kh, kw = kernel.shape[:2]
  (sh, sw), (ho, wo) = strides, g.shape[1:3]
  if (same_pads(h, kh, sh)[0] == same_pads(sh * ho, kh, sh)[0]
      and same_pads(w, kw, sw)[0] == same_pads(sw * wo, kw, sw)[0]):
    # The input padded at the end to s·(its output side) gives the same convolution.
    dx = conv_transpose(g, _flip(kernel), strides)[:, :h, :w]
  else:
    dx = jax.vjp(lambda x: conv_s2d(x, kernel, strides), x)[1](g)[0]
  dk = jax.vjp(lambda k: _native_conv(x, k, strides), kernel)[1](g)[0]
  return dx, dk


conv.defvjp(_conv_fwd, _conv_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_transpose(x: jax.Array, kernel: jax.Array, strides: tuple[int, int]) -> jax.Array:
  """``lax.conv_transpose(x, kernel, strides, "SAME")`` (NHWC/HWIO, flax's convention)
  computed by :func:`subpixel_conv_transpose`; the input gradient is :func:`conv` of the
  output gradient with the flipped kernel, the kernel gradient XLA's kernel gradient of that
  convolution, flipped."""
  return subpixel_conv_transpose(x, kernel, strides)


def _conv_transpose_fwd(x, kernel, strides):
  return subpixel_conv_transpose(x, kernel, strides), (x, kernel)


def _conv_transpose_bwd(strides, res, g):
  x, kernel = res
  flipped = _flip(kernel)
  dx = conv(g, flipped, strides)
  dk = jax.vjp(lambda k: _native_conv(g, k, strides), flipped)[1](x)[0]
  return dx, _flip(dk)


conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


def _choose(impl: str, fast, native, x, kernel, strides):
  if impl not in IMPLS:
    raise ValueError(f"conv impl {impl!r}: expected one of {IMPLS}.")
  if impl == "xla" or tuple(strides) == (1, 1):  # stride 1: no dilation anywhere
    return native(x, kernel, strides)
  if impl == "subpixel":
    return fast(x, kernel, strides)
  return lax.platform_dependent(x, kernel, cpu=lambda x, k: fast(x, k, strides),
                                default=lambda x, k: native(x, k, strides))


def _check(padding, kernel_size, strides, name):
  if padding != "SAME":
    raise ValueError(f"{name}: padding {padding!r}; only 'SAME' is supported "
                     "(use flax.linen's layer for others).")
  if len(kernel_size) != 2 or len(strides) != 2:
    raise ValueError(f"{name}: 2-D kernels and strides expected, got kernel_size={kernel_size}, "
                     f"strides={strides}.")


class _Layer(nn.Module):
  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int] = (1, 1)
  padding: str = "SAME"
  use_bias: bool = True
  dtype: Any = jnp.float32
  impl: str = "auto"

  def _apply(self, x, fast, native):
    _check(self.padding, self.kernel_size, self.strides, type(self).__name__)
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (*self.kernel_size, x.shape[-1], self.features), jnp.float32)
    y = _choose(self.impl, fast, native, x.astype(self.dtype), kernel.astype(self.dtype),
                tuple(self.strides))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,),
                         jnp.float32).astype(self.dtype)
    return y


class Conv(_Layer):
  """``flax.linen.Conv`` with ``padding="SAME"`` (2-D, NHWC); see the module docstring."""

  @nn.compact
  def __call__(self, x):
    return self._apply(x, conv, _native_conv)


class ConvTranspose(_Layer):
  """``flax.linen.ConvTranspose`` with ``padding="SAME"`` (2-D, NHWC, the kernel not
  transposed); see the module docstring."""

  @nn.compact
  def __call__(self, x):
    return self._apply(x, conv_transpose, _native_conv_transpose)
