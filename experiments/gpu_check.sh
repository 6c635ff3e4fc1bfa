#!/usr/bin/env bash
# The paper-budget tables on a machine with an accelerator, in about 10 minutes of device time:
#
#   AAEJAX_DATA_DIR=../shared/data bash experiments/gpu_check.sh [OUT]     # default runs/gpu_check
#
# writes OUT/<table>.md and .json for: the main job (3 seeds, the mixture prior at its
# config's budget), semi-supervised MNIST with 100 and 1,000 labels and clustering with 16
# clusters (each the config's 100 epochs, seed 0), and the WAE paper's CelebA comparison with
# the paper-size nets (VAE, WAE-MMD, WAE-GAN; 50 epochs of the CelebA images at hand, so
# 4,000 steps on the 10k local subset). OUT/timings.txt has each table's wall time and the
# device. Each run is evaluated at its last step only (--eval_every=0), all a table reads.
# QUICK=1 runs every table as reproduce.py's 20-step smoke run (on any machine).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/gpu_check}"
mkdir -p "$OUT"
quick=()
if [ -n "${QUICK:-}" ]; then quick=(--quick); fi
python -c "import jax; print('devices:', jax.devices())" | tee "$OUT/timings.txt"

table() {  # table NAME ARGS...: one reproduce.py call, timed
  local name="$1"; shift
  local t0=$SECONDS
  python experiments/reproduce.py --table="$name" --workdir="$OUT" --eval_every=0 "${quick[@]}" "$@"
  echo "$name $* : $((SECONDS - t0)) s" | tee -a "$OUT/timings.txt"
}

table main --seeds=3 --rows=mixture
table semisupervised --seeds=1 --rows=100,1000
table clustering --seeds=1 --rows=16
table celeba_paper --seeds=1 --rows=vae,wae_mmd,wae_gan --epochs=50
cat "$OUT/timings.txt"
