"""Checks aaejax.nets.inception against pytorch-fid's own InceptionV3, with random weights.

The real FID weights can't be downloaded here, so this gives pytorch-fid's network random
weights (and random BatchNorm statistics, so that no layer is an identity), runs pytorch-fid's
``InceptionV3([3])`` (its resize to 299, its ``2x - 1`` and its blocks: the genuine
``fid_inception_v3``, whose weight download is replaced by the random state dict, loaded
strictly) and compares the pool3 features with aaejax's, loaded from the same weights saved by
``torch.save`` in both the zip and the legacy format.

Two steps, because torch and aaejax live in different virtualenvs:

  # 1. torch side (venv with torch, torchvision, pytorch-fid==0.3.0):
  ../torchenv/bin/python experiments/tools/inception_reference.py torch /tmp/fidcheck
  # 2. aaejax side (the project's venv; no torch):
  .venv/bin/python experiments/tools/inception_reference.py compare /tmp/fidcheck

Step 1 also writes ``tests/data/fid_inception_keys.txt`` (every key of the state dict and its
shape), which tests/test_inception.py checks aaejax's variable tree against.
"""

import argparse
import os
import sys

import numpy as np

KEYS_FILE = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data",
                         "fid_inception_keys.txt")


def torch_side(out: str) -> None:
  import torch
  from pytorch_fid import inception as fid

  torch.manual_seed(0)
  # fid_inception_v3()'s construction, without its download.
  net = fid._inception_v3(num_classes=1008, aux_logits=False, weights=None)
  net.Mixed_5b = fid.FIDInceptionA(192, pool_features=32)
  net.Mixed_5c = fid.FIDInceptionA(256, pool_features=64)
  net.Mixed_5d = fid.FIDInceptionA(288, pool_features=64)
  net.Mixed_6b = fid.FIDInceptionC(768, channels_7x7=128)
  net.Mixed_6c = fid.FIDInceptionC(768, channels_7x7=160)
  net.Mixed_6d = fid.FIDInceptionC(768, channels_7x7=160)
  net.Mixed_6e = fid.FIDInceptionC(768, channels_7x7=192)
  net.Mixed_7b = fid.FIDInceptionE_1(1280)
  net.Mixed_7c = fid.FIDInceptionE_2(2048)
  state = net.state_dict()
  for k, v in state.items():
    if k.endswith("conv.weight") or k == "fc.weight":
      fan_in = int(np.prod(v.shape[1:]))
      v.copy_(torch.randn_like(v) * (2.0 / fan_in) ** 0.5)
    elif k.endswith("bn.weight") or k.endswith("running_var"):
      v.copy_(torch.rand_like(v) + 0.5)
    elif k.endswith("bn.bias") or k.endswith("running_mean") or k == "fc.bias":
      v.copy_(torch.randn_like(v) * 0.1)
  with open(KEYS_FILE, "w") as f:
    for k, v in state.items():
      f.write(f"{k} {','.join(map(str, v.shape))}\n")
  fid.load_state_dict_from_url = lambda *a, **k: state  # the genuine fid_inception_v3 loads it
  model = fid.InceptionV3([3]).eval()
  rng = np.random.default_rng(0)
  images = rng.random((2, 3, 64, 48), dtype=np.float32)  # NCHW in [0, 1]
  with torch.no_grad():
    feats = model(torch.from_numpy(images))[0].squeeze(-1).squeeze(-1).numpy()
  os.makedirs(out, exist_ok=True)
  torch.save(state, os.path.join(out, "fid_random.pth"))
  torch.save(state, os.path.join(out, "fid_random_legacy.pth"), _use_new_zipfile_serialization=False)
  np.savez(os.path.join(out, "reference.npz"), images_nchw=images, features=feats)
  print(f"torch {torch.__version__}: features {feats.shape}, |f| max {np.abs(feats).max():.3f};"
        f" {len(state)} keys -> {os.path.abspath(KEYS_FILE)}; files in {out}")


def compare_side(out: str) -> None:
  import jax
  from aaejax.nets import inception

  ref = np.load(os.path.join(out, "reference.npz"))
  images = ref["images_nchw"].transpose(0, 2, 3, 1)
  for name in ("fid_random.pth", "fid_random_legacy.pth"):
    variables = inception.load_variables(os.path.join(out, name))
    feats = np.asarray(inception.features(variables, images))
    err = np.abs(feats - ref["features"])
    print(f"{name}: max |Δ| {err.max():.2e}, max |Δ|/max|f| {err.max() / np.abs(ref['features']).max():.2e}"
          f" (jax {jax.__version__})")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("side", choices=("torch", "compare"))
  parser.add_argument("out", help="folder for the weights and reference outputs (~190 MB)")
  args = parser.parse_args()
  (torch_side if args.side == "torch" else compare_side)(args.out)


if __name__ == "__main__":
  sys.exit(main())
