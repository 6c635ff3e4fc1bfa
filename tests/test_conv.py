"""aaejax.nets.conv: the same parameters, outputs and gradients as flax's Conv/ConvTranspose."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from aaejax import models
from aaejax.core import config_checks
from aaejax.errors import ConfigError
from aaejax.nets import conv, networks
from aaejax.run import flops
from _configs import small_config

# (kernel, stride, side, in, out): the nets' layers (5x5 and 4x4, stride 2 and the stride-1
# output layers), odd sides (28 -> 14 -> 7 -> 4 on MNIST), a 3x3 kernel.
CASES = [(5, 2, 16, 3, 4), (5, 2, 7, 4, 3), (4, 2, 14, 2, 3), (4, 2, 7, 3, 2), (5, 1, 8, 3, 3),
         (4, 1, 7, 2, 1), (3, 2, 9, 2, 2)]
LAYERS = {"conv": (conv.Conv, nn.Conv), "deconv": (conv.ConvTranspose, nn.ConvTranspose)}


def _pair(kind, k, s, cout, impl):
  ours, ref = LAYERS[kind]
  return ours(cout, (k, k), (s, s), impl=impl), ref(cout, (k, k), (s, s), padding="SAME")


def _close(a, b, rtol=2e-5):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * float(jnp.abs(y).max()))


@pytest.mark.parametrize("kind", ["conv", "deconv"])
@pytest.mark.parametrize("impl", ["subpixel", "auto"])
@pytest.mark.parametrize("k,s,side,cin,cout", CASES)
def test_same_params_outputs_and_gradients_as_flax(kind, impl, k, s, side, cin, cout):
  ours, ref = _pair(kind, k, s, cout, impl)
  x = jax.random.normal(jax.random.key(0), (2, side, side, cin))
  params = ref.init(jax.random.key(1), x)
  # Same names, shapes and initial values: checkpoints of either load into the other.
  jax.tree.map(np.testing.assert_array_equal, ours.init(jax.random.key(1), x), params)
  _close(jax.jit(ours.apply)(params, x), ref.apply(params, x))
  loss = lambda m: lambda p, x: jnp.sum(jnp.sin(m.apply(p, x)))
  _close(jax.jit(jax.grad(loss(ours), (0, 1)))(params, x), jax.grad(loss(ref), (0, 1))(params, x))


@pytest.mark.parametrize("kind", ["conv", "deconv"])
def test_second_order_and_vmap(kind):
  """Gradient penalties differentiate the input gradient; sweeps vmap the layer."""
  ours, ref = _pair(kind, 5, 2, 3, "subpixel")
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 2))
  params = ref.init(jax.random.key(1), x)

  def penalty(m):
    return lambda p, x: jnp.sum(jax.grad(lambda x: jnp.sum(jnp.tanh(m.apply(p, x))))(x) ** 2)
  _close(jax.grad(penalty(ours))(params, x), jax.grad(penalty(ref))(params, x), rtol=1e-4)
  stacked = jax.vmap(lambda key: ref.init(key, x))(jax.random.split(jax.random.key(2), 3))
  _close(jax.vmap(ours.apply, (0, None))(stacked, x), jax.vmap(ref.apply, (0, None))(stacked, x))


def test_transpose_identities_are_exact():
  """The custom gradients rest on conv_transpose(., k) = conv(., flip(k))ᵀ for "SAME" layers."""
  dn = ("NHWC", "HWIO", "NHWC")
  for k, s, side in [(5, 2, 8), (4, 2, 7), (5, 2, 7), (4, 1, 9)]:
    x = jax.random.normal(jax.random.key(0), (2, side, side, 3))
    w = jax.random.normal(jax.random.key(1), (k, k, 3, 4))
    y, vjp = jax.vjp(lambda x: lax.conv_transpose(x, w, (s, s), "SAME", dimension_numbers=dn),
                     x)
    g = jax.random.normal(jax.random.key(2), y.shape)
    np.testing.assert_array_equal(vjp(g)[0], lax.conv_general_dilated(
        g, conv._flip(w), (s, s), "SAME", dimension_numbers=dn))


def test_subpixel_matches_lax_in_bfloat16():
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 4), jnp.bfloat16)
  w = jax.random.normal(jax.random.key(1), (5, 5, 4, 3), jnp.bfloat16)
  ref = lax.conv_transpose(x, w, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  out = conv.subpixel_conv_transpose(x, w, (2, 2))
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(out.astype(jnp.float32), ref.astype(jnp.float32), atol=0.1)


def test_nets_same_for_every_impl():
  """The WAE paper's CelebA encoder and decoder (narrow) compute the same with XLA's convs."""
  x = jax.random.uniform(jax.random.key(0), (2, 64, 64, 3))
  for make in (lambda i: networks.ConvEncoder(4, (4, 8), 5, conv_impl=i),
               lambda i: networks.ConvDecoder((64, 64, 3), (8, 4, 4, 4), 5, conv_impl=i)):
    fast, native = make("auto"), make("xla")
    inp = x if isinstance(fast, networks.ConvEncoder) else jax.random.normal(jax.random.key(2),
                                                                               (2, 4))
    variables = native.init(jax.random.key(1), inp, train=False)
    jax.tree.map(np.testing.assert_array_equal, fast.init(jax.random.key(1), inp, train=False),
                 variables)
    f = lambda m: lambda v: jnp.sum(jnp.square(jax.tree.leaves(m.apply(v, inp, train=False))[0]))
    _close(jax.grad(f(fast))(variables), jax.grad(f(native))(variables), rtol=1e-4)


def test_bad_layer_arguments():
  x = jnp.ones((1, 8, 8, 1))
  with pytest.raises(ValueError, match="only 'SAME'"):
    conv.Conv(2, (3, 3), padding="VALID").init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="conv impl 'fast'"):
    conv.ConvTranspose(2, (3, 3), (2, 2), impl="fast").init(jax.random.key(0), x)
  with pytest.raises(ConfigError, match="config.conv_impl='fast'"):
    config_checks.validate({"model": "wae", "conv_impl": "fast"})


def test_conv_impl_reaches_the_nets():
  c = small_config("wae", network="conv", conv_channels=(4, 8), conv_impl="xla")
  model = models.create(c, (28, 28, 1))
  assert model.encoder.conv_impl == "xla" and model.decoder.conv_impl == "xla"


def test_flops_leave_out_inserted_zeros():
  """A 2x2 stride-2 transposed conv: each output reads one real input value per axis."""
  x, w = jnp.ones((1, 4, 4, 3)), jnp.ones((2, 2, 3, 5))
  f = lambda x, w: lax.conv_transpose(x, w, (2, 2), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  assert flops.count(f, x, w)["total"] == 2 * 8 * 8 * 3 * 5
  # A plain "SAME" conv's border taps on padding are left out too.
  g = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))
  assert flops.count(g, jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 1)))["total"] == 2 * 10 * 10
