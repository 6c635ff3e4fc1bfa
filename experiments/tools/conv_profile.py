"""Where a conv net's step goes on this machine: each conv layer's forward and backward pass
timed alone, XLA's native convolutions against those of aaejax.nets.conv (sub-pixel).

  python experiments/tools/conv_profile.py --net=wae_celeba_cpu,wae_celeba_cpu_x2,dcgan_mnist

For each layer of the named nets (the encoder's stride-2 convs, the decoder's stride-2 and
last stride-1 transposed convs, at batch ``--batch_size``), one jitted call computes the
output y, the input gradient and the kernel gradient (``jax.vjp``), so it is what a training
step runs for that layer. Rows give ms per call for ``impl="xla"`` and ``impl="subpixel"``
(median of ``--repeats`` interleaved windows), the layer's GFLOP (2·multiply-adds of the three
products, counting only the kernel's real taps) and each implementation's GFLOP/s as a
fraction of the square-matmul peak measured before each window.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from absl import app, flags

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmark import matmul_peak  # noqa: E402  (experiments/benchmark.py)

from aaejax.nets import conv  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("net", ["wae_celeba_cpu"], "Nets: " + ", ".join(
    ("wae_celeba_cpu", "wae_celeba_cpu_x2", "dcgan_mnist")))
# --batch_size (100) and --repeats (5) are experiments/benchmark.py's flags.
flags.DEFINE_float("seconds", 0.3, "Seconds per window and implementation.")


def _autoencoder(side, in_c, channels, kernel, first_side):
  """(kind, kernel, stride, side, in, out) of a WAE-paper encoder and its mirrored decoder."""
  layers, s, c = [], side, in_c
  for w in channels:
    layers.append(("conv", kernel, 2, s, c, w))
    s, c = -(-s // 2), w
  dec = tuple(reversed(channels))
  s, c = first_side, dec[0]
  for w in dec[1:]:
    layers.append(("deconv", kernel, 2, s, c, w))
    s, c = s * 2, w
  layers.append(("deconv", kernel, 1, s, c, in_c))
  return layers


NETS = {
    "wae_celeba_cpu": lambda: _autoencoder(64, 3, (8, 16, 32, 64), 5, 8),
    "wae_celeba_cpu_x2": lambda: _autoencoder(64, 3, (16, 32, 64, 128), 5, 8),
    # gan.py:dcgan: generator 7x7x256 -> 128 -> 64 -> 1 (4x4), critic 64-128 stride-2 convs.
    "dcgan_mnist": lambda: [("deconv", 4, 2, 7, 256, 128), ("deconv", 4, 2, 14, 128, 64),
                            ("deconv", 4, 1, 28, 64, 1), ("conv", 4, 2, 28, 1, 64),
                            ("conv", 4, 2, 14, 64, 128)],
}


IMPLS = ("xla", "subpixel")


def layer_fn(kind, k, s, cout, impl):
  """One jitted call: the layer's output, input gradient and kernel gradient."""
  layer = {"conv": conv.Conv, "deconv": conv.ConvTranspose}[kind]
  module = layer(cout, (k, k), (s, s), use_bias=False, impl=impl)

  def f(x, w, gy):
    y, vjp = jax.vjp(lambda x, w: module.apply({"params": {"kernel": w}}, x), x, w)
    return (y, *vjp(gy))
  return jax.jit(f)


def layer_gflop(kind, k, s, side, cin, cout, n):
  """2·multiply-adds of y, dx and dw (the three products of a layer's step)."""
  out_side = -(-side // s) if kind == "conv" else side * s
  return 3 * 2 * n * out_side**2 * k * k * cin * cout / (s * s if kind == "deconv" else 1) / 1e9


def time_call(f, args, seconds):
  jax.block_until_ready(f(*args))
  t = time.perf_counter()
  jax.block_until_ready(f(*args))
  reps = max(1, int(seconds / max(time.perf_counter() - t, 1e-6)))
  t = time.perf_counter()
  for _ in range(reps):
    out = f(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - t) / reps


def main(argv):
  del argv
  n = FLAGS.batch_size
  rows = []
  for net in FLAGS.net:
    if net not in NETS:
      raise app.UsageError(f"--net={net}: expected one of {sorted(NETS)}.")
    for kind, k, s, side, cin, cout in NETS[net]():
      x = jax.random.normal(jax.random.key(0), (n, side, side, cin), jnp.float32)
      w = jax.random.normal(jax.random.key(1), (k, k, cin, cout), jnp.float32) * 0.1
      fns = {impl: layer_fn(kind, k, s, cout, impl) for impl in IMPLS}
      out_side = -(-side // s) if kind == "conv" else side * s
      gy = jax.random.normal(jax.random.key(2), (n, out_side, out_side, cout), jnp.float32)
      rows.append(dict(net=net, layer=f"{kind} {k}x{k}/{s} {side}²×{cin}→{cout}", fns=fns,
                       args=(x, w, gy), gflop=layer_gflop(kind, k, s, side, cin, cout, n),
                       ms={i: [] for i in IMPLS}, frac={i: [] for i in IMPLS}))
  for _ in range(FLAGS.repeats):
    peak = matmul_peak((512, 1024, 2048))
    for r in rows:
      for impl, f in r["fns"].items():
        dt = time_call(f, r["args"], FLAGS.seconds)
        r["ms"][impl].append(dt * 1e3)
        r["frac"][impl].append(r["gflop"] / dt / peak)
  print(f"batch {n}; square-matmul peak of the last window {peak:.0f} GFLOP/s\n")
  print("| net | layer | GFLOP | " + " | ".join(f"{i} ms (% peak)" for i in IMPLS) + " |")
  print("|---|---|---|" + "---|" * len(IMPLS))
  tot = {}
  for r in rows:
    ms = {i: statistics.median(v) for i, v in r["ms"].items()}
    fr = {i: statistics.median(v) for i, v in r["frac"].items()}
    t = tot.setdefault(r["net"], dict.fromkeys(IMPLS, 0.0))
    for i in IMPLS:
      t[i] += ms[i]
    print(f"| {r['net']} | {r['layer']} | {r['gflop']:.2f} | "
          + " | ".join(f"{ms[i]:.1f} ({100 * fr[i]:.0f} %)" for i in IMPLS) + " |")
  for net, t in tot.items():
    print(f"| {net} | all | | " + " | ".join(f"{t[i]:.1f}" for i in IMPLS) + " |")

if __name__ == "__main__":
  app.run(main)
