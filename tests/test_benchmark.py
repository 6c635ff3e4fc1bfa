"""The benchmark script's table, and the FLOP counter against counts done by hand."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp

from aaejax.nets import networks
from aaejax.run import flops
from aaejax.models import AAE, WAE

ROOT = os.path.join(os.path.dirname(__file__), "..")


def test_count_matches_hand_count_for_mlp_forward_and_backward():
  # y = relu(x W1) W2 on a batch of 5; the gradient w.r.t. both weights needs the
  # weight gradients of both layers and the input gradient of the second only.
  n, a, b, c = 5, 7, 11, 3
  x = jnp.ones((n, a))
  w = {"w1": jnp.ones((a, b)), "w2": jnp.ones((b, c))}
  loss = lambda w: jnp.sum(jax.nn.relu(x @ w["w1"]) @ w["w2"])
  assert flops.count(loss, w)["total"] == 2 * n * (a * b + b * c)
  hand = 2 * n * (a * b + b * c) + 2 * n * (a * b + b * c) + 2 * n * b * c
  assert flops.count(jax.grad(loss), w)["total"] == hand
  assert flops.mlp_macs([a, b, c]) + flops.mlp_backward_macs([a, b, c], input_grad=False) \
      == hand // (2 * n)


def test_counts_scan_bodies_and_conv():
  xs = jnp.ones((4, 2, 3))
  scanned = lambda w: jax.lax.scan(lambda c, x: (c + jnp.sum(x @ w), None), 0.0, xs)[0]
  assert flops.count(scanned, jnp.ones((3, 5)))["total"] == 4 * 2 * 2 * 3 * 5
  conv = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  # The 2*6*6*8 outputs sum 3x3 windows of 4 input channels, less the taps on the padding:
  # per axis 16 of the 6*3 (output, tap) pairs read the input.
  assert flops.count(conv, jnp.ones((2, 6, 6, 4)), jnp.ones((3, 3, 4, 8)))["total"] == \
      2 * 2 * 8 * 4 * 16 * 16


def test_aae_step_flops_by_phase_match_the_hand_count():
  # The anchor: 784-1000-1000-8 MLPs, an 8-1000-1000-1 critic, batch 100, with the
  # encoder run again in the generator phase; ours shares that forward pass.
  anchor = flops.aae_step_flops(100, 784, 8, (1000, 1000), (1000, 1000), shared_encoder_pass=False)
  assert anchor["total"] == 4_881_600_000
  ours = flops.aae_step_flops(100, 784, 8, (1000, 1000), (1000, 1000))
  assert anchor["total"] - ours["total"] == 2 * 100 * (784 * 1000 + 1000 * 1000 + 1000 * 8)
  model = AAE(image_shape=(28, 28, 1), latent_dim=3, critic_hidden=(16,),
              encoder=networks.MLPEncoder(3, (32, 24)),
              decoder=networks.MLPDecoder((28, 28, 1), (32, 24)))
  state = jax.eval_shape(model.init, jax.random.key(0))  # shapes suffice to count
  batch = {"image": jnp.zeros((6, 28, 28, 1), jnp.uint8), "label": jnp.zeros(6, jnp.int32)}
  counted = flops.step_flops(model, state, batch, jax.random.key(1))
  hand = flops.aae_step_flops(6, 784, 3, (32, 24), (16,))
  assert counted["by_scope"] == {k: hand[k] for k in ("recon", "critic", "gen")}
  assert counted["total"] == hand["total"]


def test_wae_mmd_flops_are_the_autoencoder_plus_the_distance_matmuls():
  model = WAE(image_shape=(28, 28, 1), latent_dim=4, penalty="mmd_imq")
  state = jax.eval_shape(model.init, jax.random.key(0))
  batch = {"image": jnp.zeros((5, 28, 28, 1), jnp.uint8), "label": jnp.zeros(5, jnp.int32)}
  counted = flops.step_flops(model, state, batch, jax.random.key(1))
  enc, dec = [784, 1000, 1000, 4], [4, 1000, 1000, 784]
  ae = (flops.mlp_macs(enc) + flops.mlp_macs(dec) + flops.mlp_backward_macs(dec)
        + flops.mlp_backward_macs(enc, input_grad=False))
  # q·qᵀ, p·pᵀ, q·pᵀ forward; q·qᵀ (both operands) and q·pᵀ backward w.r.t. q.
  mmd = 3 * 5 * 5 * 4 + 3 * 5 * 5 * 4
  assert counted["total"] == 2 * (5 * ae + mmd)


def test_script_prints_the_table_and_writes_json(tmp_path):
  out = tmp_path / "bench.json"
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "benchmark.py"),
         "--model=wae_mmd_rbf", "--batch_size=8", "--steps=3", "--repeats=2", "--warmup=1",
         "--hidden=32", "--latent_dim=2", "--sweep=1,2", "--penalty_batch=0",
         "--peak_sizes=128", "--peak_seconds=0.01", "--data=random", f"--json={out}"]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.splitlines()
  header = ("| model | devices | batch | K | samples/s | ms/step | GFLOP/step | GFLOP/s "
            "| % of peak | penalty % |")
  assert any(line.startswith(header) for line in lines), proc.stdout
  rows = [line for line in lines if line.startswith("| wae_mmd_rbf |")]
  assert [r.split("|")[4].strip() for r in rows] == ["1", "2"]
  assert "sweep K=2:" in proc.stdout
  result = json.loads(out.read_text())
  single, sweep = result["rows"]
  assert result["peak_gflop_per_s"] > 0
  for row in (single, sweep):
    assert row["samples_per_s"] > 0 and 0 < row["fraction_of_peak"]
    assert len(row["window_ms_per_step"]) == 2
    assert 0 < row["penalty_share"]
  enc, dec = [784, 32, 2], [2, 32, 784]
  ae = (flops.mlp_macs(enc) + flops.mlp_macs(dec) + flops.mlp_backward_macs(dec)
        + flops.mlp_backward_macs(enc, input_grad=False))
  expected = 2 * (8 * ae + 6 * 8 * 8 * 2) / 1e9
  assert abs(single["gflop_per_step"] - expected) < 1e-12
  assert abs(sweep["gflop_per_step"] - 2 * expected) < 1e-12
  assert result["penalty_checks"] == []
  layer = result["layer_matmul"]
  assert (layer["batch"], layer["width"]) == (8, 32)
  assert layer["gflop_per_s"] > 0 and layer["fraction_of_peak"] > 0
  assert "ceiling: the matmuls of one 32x32 layer at batch 8" in proc.stdout
