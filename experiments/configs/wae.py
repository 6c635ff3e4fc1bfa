"""Wasserstein autoencoder on MNIST (Tolstikhin et al. 2018).

penalty: "mmd_imq" (default), "mmd_rbf" or "gan". 8-D gaussian prior, λ = 10,
Adam lr 1e-3 (critic 5e-4), batch 100 (the authors' MNIST recipe).

The default nets are the AAE paper's MLPs so that a 5-epoch run takes minutes on
a CPU; ``--config=experiments/configs/wae.py:paper`` selects the WAE paper's
conv nets (4x4 kernels, 128->1024 channels, batch norm), squared-error cost
weighted 0.05 and the 100-epoch schedule (lr halved at epoch 30, /5 at 50):
meant for a GPU.
"""

from configs import default


def get_config(arg=""):
  c = default.get_config()
  c.model = "wae"
  c.penalty = "mmd_imq"
  c.penalty_weight = 10.0
  c.kernel_scale = 1.0            # σ_p in the IMQ kernel's C = 2·d·σ_p²
  c.latent_dim = 8
  c.prior = "gaussian"
  c.learning_rate = 1e-3
  c.critic_learning_rate = 5e-4   # WAE-GAN only
  c.critic_hidden = (512, 512, 512, 512)
  c.critic_noise = 0.0
  if arg == "paper":
    c.network = "conv"
    c.conv_channels = (128, 256, 512, 1024)
    c.batch_norm = True
    c.recon_loss = "gaussian"
    c.recon_weight = 0.05
    c.num_steps = 60_000          # 100 epochs
    c.lr_boundaries = (18_000, 30_000)
    c.lr_factors = (0.5, 0.2)
  elif arg:
    raise ValueError(f"unknown wae config variant {arg!r}; expected '' or 'paper'.")
  return c
