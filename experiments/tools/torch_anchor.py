"""PyTorch CPU speed anchor: three of the project's conv train steps, rewritten in eager torch.

It measures ms per train step (and samples/s) of lean PyTorch versions of

- ``wae:celeba_cpu``: WAE-MMD (IMQ kernel summed over 7 scales, lambda 100, squared-error cost
  weighted 0.2) with the WAE paper's 64x64 conv nets 16x narrower (encoder 8-16-32-64 5x5
  stride-2 convs, decoder from 8x8x64), 64-D codes, one Adam (1e-3, beta1 0.5) over both nets;
- ``vae:celeba_cpu``: the same nets with a gaussian encoder (mean and log-variance heads), the
  reparameterised sample, squared error weighted 50 plus the closed-form KL;
- ``gan:dcgan``: DCGAN on 28x28x1 (generator 7x7x256 -> 128 -> 64 -> 1 with 4x4 transposed
  convs, critic 64-128 4x4 stride-2 convs with LeakyReLU 0.2 and batch norm after the second,
  no dropout), 100-D gaussian noise, non-saturating loss, a critic step (real and fake
  batches in separate passes) then a generator step, each with its own Adam (2e-4, beta1 0.5);

each at width multipliers (``--width``; x2 doubles every conv channel count), so that the
JAX steps of aaejax (experiments/benchmark.py) can be set beside what PyTorch does with the
same layers, shapes and FLOPs on the same cores. The nets follow aaejax/nets/networks.py
(flax 'SAME' padding, conv biases, batch norm in training mode with momentum 0.1 in torch's
convention = flax's 0.9), the losses aaejax/models/{wae,vae,gan}.py. Numerics are not meant
to match (torch's init, NCHW layout, symmetric pads where they give the same output shape;
``--exact_padding`` pads as flax does); inputs are uniform [0, 1] noise.

torch is never a dependency of aaejax: the script needs its own venv, beside the checkout
(from the repo root; torch is big):

  python3 -m venv ../torchenv && ../torchenv/bin/pip install torch numpy

Examples (from the repo root):

  ../torchenv/bin/python experiments/tools/torch_anchor.py
  ../torchenv/bin/python experiments/tools/torch_anchor.py --model=gan:dcgan --width=1 \
      --steps=20 --repeats=5 --threads=2

Normal mode prints each (model, width)'s parameter count, then times ``--repeats`` windows of
``--steps`` steps per row, interleaved (window 1 of every row, then window 2, ...), after
``--warmup`` untimed steps, and prints a markdown table of the median.

``--serve``: for a parent process that interleaves these windows with its own. It reads
requests from stdin, one JSON object a line,

  {"model": "wae:celeba_cpu", "width": 1, "steps": 10}

("width" defaults to 1, "steps" to ``--steps``, an optional "batch_size" to ``--batch_size``,
an optional "channels_last" (true: NHWC memory format) to ``--channels_last``),
and answers each with one JSON line on stdout, flushed,

  {"model": "wae:celeba_cpu", "width": 1, "ms_per_step": 412.3, "samples_per_s": 242.5,
   "steps": 10, "batch_size": 100, "params": 468099, "threads": 2}

timing one window of "steps" steps. The first request for a (model, width, batch_size) builds
that step and runs ``--warmup`` steps first, untimed. A bad request is answered with
{"error": "...", "request": "<the line>"}. Blank lines are skipped; it exits on EOF.
Nothing else is written to stdout in this mode.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import time
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

MODELS = ("wae:celeba_cpu", "vae:celeba_cpu", "gan:dcgan")
IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)  # aaejax.penalties.IMQ_SCALES
CELEBA_CHANNELS = (8, 16, 32, 64)                   # configs/default.py celeba(c, "cpu")
DCGAN_GEN, DCGAN_CRITIC = (256, 128, 64), (64, 128)  # aaejax.models.gan, 28x28
BN_MOMENTUM = 0.1                                   # flax momentum 0.9


def same_pads(side: int, k: int, stride: int) -> tuple[int, int]:
  """(low, high) pads of flax/lax 'SAME' for a conv: output side ceil(side / stride)."""
  out = -(-side // stride)
  total = max((out - 1) * stride + k - side, 0)
  return total // 2, total - total // 2


class Conv(nn.Conv2d):
  """flax ``nn.Conv(padding="SAME")``. Asymmetric pads become the symmetric larger pad when
  that gives the same output shape (same FLOPs, no padded copy), unless ``exact``."""

  def __init__(self, cin: int, cout: int, k: int, stride: int, exact: bool = False):
    super().__init__(cin, cout, k, stride)
    self.exact = exact

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    k, s, side = self.kernel_size[0], self.stride[0], x.shape[-1]
    lo, hi = same_pads(side, k, s)
    if lo != hi and (self.exact or (side + 2 * hi - k) // s != (side + lo + hi - k) // s):
      x, lo = F.pad(x, (lo, hi, lo, hi)), 0
    else:
      lo = hi
    return F.conv2d(x, self.weight, self.bias, self.stride, lo)


class ConvTranspose(nn.ConvTranspose2d):
  """flax ``nn.ConvTranspose(padding="SAME")``: output side = stride x input side.

  torch's output side is (n - 1)s - 2p + k + op with op < s; an even kernel at stride 1
  has no such (p, op), so the input gets one more row and column (at the end) instead.
  """

  def __init__(self, cin: int, cout: int, k: int, stride: int):
    p = -(-(k - stride) // 2)
    op = 2 * p - (k - stride)
    self.extra = op >= stride   # only stride 1 with an even kernel
    super().__init__(cin, cout, k, stride, padding=p, output_padding=0 if self.extra else op)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    if self.extra:
      x = F.pad(x, (0, 1, 0, 1))
    return super().forward(x)


def bn_relu(c: int) -> list[nn.Module]:
  return [nn.BatchNorm2d(c, momentum=BN_MOMENTUM), nn.ReLU(inplace=True)]


class ConvEncoder(nn.Module):
  """networks.ConvEncoder: stride-2 convs, each with batch norm and ReLU, then dense heads."""

  def __init__(self, in_c: int, side: int, channels: Sequence[int], k: int, latent: int,
               gaussian: bool, exact: bool = False):
    super().__init__()
    layers, c = [], in_c
    for w in channels:
      layers += [Conv(c, w, k, 2, exact), *bn_relu(w)]
      c, side = w, -(-side // 2)
    self.trunk = nn.Sequential(*layers, nn.Flatten())
    self.z = nn.Linear(c * side * side, latent)
    self.z_logvar = nn.Linear(c * side * side, latent) if gaussian else None

  def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    h = self.trunk(x)
    return self.z(h), None if self.z_logvar is None else self.z_logvar(h)


class ConvDecoder(nn.Module):
  """networks.ConvDecoder: dense to a (channels[0], s, s) map, BN, ReLU; stride-2 transposed
  convs with BN and ReLU; a stride-1 transposed conv to the image channels (logits)."""

  def __init__(self, image_shape: tuple[int, int, int], channels: Sequence[int], k: int,
               latent: int):
    super().__init__()
    side, _, out_c = image_shape
    s0 = side // 2 ** (len(channels) - 1)
    self.map = (channels[0], s0, s0)
    self.fc = nn.Linear(latent, math.prod(self.map))
    layers = bn_relu(channels[0])
    for a, b in zip(channels, channels[1:]):
      layers += [ConvTranspose(a, b, k, 2), *bn_relu(b)]
    self.body = nn.Sequential(*layers, ConvTranspose(channels[-1], out_c, k, 1))

  def forward(self, z: torch.Tensor) -> torch.Tensor:
    return self.body(self.fc(z).view(z.shape[0], *self.map))


class ConvCritic(nn.Module):
  """networks.ConvCritic: stride-2 convs, LeakyReLU 0.2, batch norm after every conv but the
  first, dense to one logit."""

  def __init__(self, in_c: int, side: int, channels: Sequence[int], k: int,
               exact: bool = False):
    super().__init__()
    layers, c = [], in_c
    for i, w in enumerate(channels):
      layers.append(Conv(c, w, k, 2, exact))
      if i:
        layers.append(nn.BatchNorm2d(w, momentum=BN_MOMENTUM))
      layers.append(nn.LeakyReLU(0.2, inplace=True))
      c, side = w, -(-side // 2)
    self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * side * side, 1))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.body(x)[:, 0]


def gaussian_recon(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
  """Mean over the batch of ||x - sigmoid(logits)||^2 (networks.reconstruction_loss)."""
  return (x - torch.sigmoid(logits)).square().flatten(1).sum(1).mean()


def sq_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
  return a.square().sum(1)[:, None] + b.square().sum(1)[None, :] - 2.0 * a @ b.T


def mmd_imq(qz: torch.Tensor, pz: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
  """penalties.mmd(qz, pz, "imq"): U-statistic within, V-statistic across, summed over
  C = 2 d scale^2 s for s in IMQ_SCALES."""
  n, d = qz.shape
  d_qq, d_pp, d_qp = sq_distances(qz, qz), sq_distances(pz, pz), sq_distances(qz, pz)
  off = 1.0 - torch.eye(n, dtype=qz.dtype)
  stat = qz.new_zeros(())
  for s in IMQ_SCALES:
    c = 2.0 * d * scale ** 2 * s
    within = ((c / (c + d_qq) + c / (c + d_pp)) * off).sum() / (n * n - n)
    stat = stat + within - 2.0 * (c / (c + d_qp)).sum() / (n * n)
  return stat


def adam(modules: Sequence[nn.Module], lr: float, b1: float) -> torch.optim.Adam:
  """optax.scale_by_adam(b1, 0.999, eps 1e-8) times -lr, as aaejax's phases."""
  params = itertools.chain(*(m.parameters() for m in modules))
  return torch.optim.Adam(params, lr=lr, betas=(b1, 0.999), eps=1e-8)


def count(modules: Sequence[nn.Module]) -> int:
  return sum(p.numel() for m in modules for p in m.parameters())


def autoencoder_step(kind: str, width: int, n: int, exact: bool, channels_last: bool
                     ) -> tuple[Callable[[], None], int]:
  """wae:celeba_cpu / vae:celeba_cpu: one phase, one Adam over encoder and decoder."""
  channels = tuple(width * c for c in CELEBA_CHANNELS)
  enc = ConvEncoder(3, 64, channels, 5, 64, gaussian=kind == "vae", exact=exact)
  dec = ConvDecoder((64, 64, 3), tuple(reversed(channels)), 5, 64)
  x = torch.rand(n, 3, 64, 64)
  if channels_last:
    enc, dec = enc.to(memory_format=torch.channels_last), dec.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
  opt = adam((enc, dec), 1e-3, 0.5)

  def step() -> None:
    opt.zero_grad(set_to_none=True)
    z, logvar = enc(x)
    if kind == "wae":
      pz = torch.randn_like(z)   # prior N(0, I), prior_scale 1
      loss = 0.2 * gaussian_recon(dec(z), x) + 100.0 * mmd_imq(z, pz)
    else:
      mean, z = z, z + torch.exp(0.5 * logvar) * torch.randn_like(z)
      kl = 0.5 * (logvar.exp() + mean.square() - 1.0 - logvar).sum(1).mean()
      loss = 50.0 * gaussian_recon(dec(z), x) + 1.0 * kl
    loss.backward()
    opt.step()

  return step, count((enc, dec))


def dcgan_step(width: int, n: int, exact: bool, channels_last: bool
               ) -> tuple[Callable[[], None], int]:
  """gan:dcgan: the critic's update (G's output held fixed), then the generator's."""
  gen = ConvDecoder((28, 28, 1), tuple(width * c for c in DCGAN_GEN), 4, 100)
  critic = ConvCritic(1, 28, tuple(width * c for c in DCGAN_CRITIC), 4, exact)
  x = torch.rand(n, 1, 28, 28)
  if channels_last:
    gen, critic = (m.to(memory_format=torch.channels_last) for m in (gen, critic))
    x = x.contiguous(memory_format=torch.channels_last)
  opt_g, opt_d = adam((gen,), 2e-4, 0.5), adam((critic,), 2e-4, 0.5)
  noise = 0.0  # critic_noise: the JAX step adds 0 * N(0, 1) too (the hparam is traced)

  def d(images: torch.Tensor) -> torch.Tensor:
    return critic(images + noise * torch.randn_like(images))

  def step() -> None:
    # Phase 1, critic: real and fake batches apart (batch norm), G in training mode.
    with torch.no_grad():
      fake = torch.sigmoid(gen(torch.randn(n, 100)))
    opt_d.zero_grad(set_to_none=True)
    loss_d = F.softplus(-d(x)).mean() + F.softplus(d(fake)).mean()
    loss_d.backward()
    opt_d.step()
    # Phase 2, generator: fresh noise, non-saturating loss; no gradient for D's weights.
    critic.requires_grad_(False)
    opt_g.zero_grad(set_to_none=True)
    loss_g = F.softplus(-d(torch.sigmoid(gen(torch.randn(n, 100))))).mean()
    loss_g.backward()
    opt_g.step()
    critic.requires_grad_(True)

  return step, count((gen, critic))


def build(model: str, width: int, n: int, exact: bool = False, channels_last: bool = False
          ) -> tuple[Callable[[], None], int]:
  """(train step, parameter count) of ``model`` at width multiplier ``width``, batch ``n``."""
  if model not in MODELS:
    raise ValueError(f"unknown model {model!r}; expected one of {MODELS}.")
  if width < 1:
    raise ValueError(f"width must be >= 1, got {width}.")
  if model == "gan:dcgan":
    return dcgan_step(width, n, exact, channels_last)
  return autoencoder_step(model.split(":")[0], width, n, exact, channels_last)


def window(step: Callable[[], None], steps: int) -> float:
  """Seconds per step over ``steps`` steps."""
  t = time.perf_counter()
  for _ in range(steps):
    step()
  return (time.perf_counter() - t) / steps


def serve(args) -> None:
  steps_of: dict[tuple[str, int, int, bool], tuple[Callable[[], None], int]] = {}
  while True:
    line = sys.stdin.readline()
    if not line:
      return
    if not line.strip():
      continue
    try:
      req = json.loads(line)
      model, width = req["model"], int(req.get("width", 1))
      n, steps = int(req.get("batch_size", args.batch_size)), int(req.get("steps", args.steps))
      if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}.")
      channels_last = bool(req.get("channels_last", args.channels_last))
      key = (model, width, n, channels_last)
      if key not in steps_of:
        steps_of[key] = build(model, width, n, args.exact_padding, channels_last)
        for _ in range(args.warmup):
          steps_of[key][0]()
      step, params = steps_of[key]
      sec = window(step, steps)
      out = {"model": model, "width": width, "ms_per_step": round(1e3 * sec, 3),
             "samples_per_s": round(n / sec, 2), "steps": steps, "batch_size": n,
             "params": params, "threads": torch.get_num_threads()}
    except Exception as e:  # noqa: BLE001  (answered, not fatal)
      out = {"error": f"{type(e).__name__}: {e}", "request": line.strip()}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--model", default=",".join(MODELS), help="comma-separated: " + ",".join(MODELS))
  p.add_argument("--width", default="1,2", help="comma-separated width multipliers")
  p.add_argument("--batch_size", type=int, default=100)
  p.add_argument("--steps", type=int, default=10, help="steps per timed window")
  p.add_argument("--repeats", type=int, default=5, help="timed windows per row")
  p.add_argument("--warmup", type=int, default=3, help="untimed steps per row first")
  p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
  p.add_argument("--exact_padding", action="store_true",
                 help="flax's asymmetric 'SAME' pads (F.pad), not a same-shape symmetric pad")
  p.add_argument("--channels_last", action="store_true", help="NHWC memory format")
  p.add_argument("--serve", action="store_true", help="answer JSON requests on stdin (docstring)")
  args = p.parse_args(argv)
  if args.threads:
    torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  if args.serve:
    serve(args)
    return

  rows = [(m, int(w)) for m in args.model.split(",") if m for w in args.width.split(",") if w]
  print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
        f"{args.repeats} windows of {args.steps} steps after {args.warmup} warm-up steps")
  built = {}
  for m, w in rows:
    built[m, w] = build(m, w, args.batch_size, args.exact_padding, args.channels_last)
    print(f"  params {m} x{w}: {built[m, w][1]:,}")
  for m, w in rows:
    for _ in range(args.warmup):
      built[m, w][0]()
  times: dict[tuple[str, int], list[float]] = {r: [] for r in rows}
  for _ in range(args.repeats):
    for r in rows:
      times[r].append(window(built[r][0], args.steps))
  print()
  print("| model | width | ms/step (median) | samples/s |")
  print("|---|---|---|---|")
  for m, w in rows:
    sec = statistics.median(times[m, w])
    print(f"| {m} | x{w} | {1e3 * sec:.1f} | {args.batch_size / sec:.1f} |")


if __name__ == "__main__":
  main()
