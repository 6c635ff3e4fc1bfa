"""Wasserstein autoencoder on MNIST (Tolstikhin et al. 2018).

penalty: "mmd_imq" (default), "mmd_rbf" or "gan". 8-D gaussian prior, λ = 10,
Adam lr 1e-3 (critic 5e-4), batch 100 (the authors' MNIST recipe).

The default nets are the AAE paper's MLPs so that a 5-epoch run takes minutes on
a CPU; ``--config=experiments/configs/wae.py:paper`` selects the WAE paper's
conv nets (4x4 kernels, 128->1024 channels, batch norm), squared-error cost
weighted 0.05 and the 100-epoch schedule (lr halved at epoch 30, /5 at 50):
meant for a GPU.

CelebA 64x64 (no labels; aaejax.data.celeba), the paper's Sec. 4 setup (configs/default.py's
``celeba``): ``wae.py:celeba`` (the paper's nets: 5x5 kernels, 128->1024 channels, batch
norm, 64-D codes; 50 epochs; for GPUs/TPUs) and ``wae.py:celeba_cpu`` (16x narrower nets,
400 steps; for CPUs). WAE-MMD with the IMQ kernel, lambda = 100, Adam lr 1e-3
with beta1 0.5; reconstruction cost 0.2 * ||x - x'||^2 on [0, 1] pixels, which is the
authors' 0.05 * ||x - x'||^2 on the [-1, 1] pixels their CelebA pipeline uses.
``wae.py:celeba_gan`` / ``celeba_cpu_gan``: WAE-GAN as the authors ran it (lambda = 1,
lr 3e-4, critic lr 1e-3, latent critic MLP 4x512, log p(z) added to the critic's logit).
``--config.penalty=gan`` on the MMD variants switches the penalty only (lambda, rates stay).

  python experiments/main.py --config=experiments/configs/wae.py:celeba_cpu \
      --workdir=runs/wae_celeba_cpu
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
  c.critic_log_prior = False      # WAE-GAN: add log p(z) to the critic's logit (the authors')
  if arg.startswith("celeba"):
    size = {"celeba": "paper", "celeba_cpu": "cpu", "celeba_gan": "paper",
            "celeba_cpu_gan": "cpu"}.get(arg)
    if size is None:
      raise ValueError(f"unknown wae config variant {arg!r}; expected '', 'paper', 'celeba', "
                       "'celeba_cpu', 'celeba_gan' or 'celeba_cpu_gan'.")
    default.celeba(c, size)
    c.recon_loss = "gaussian"
    c.recon_weight = 0.2          # = the authors' 0.05 on [-1, 1] pixels
    c.penalty_weight = 100.0
    c.kernel_scale = 1.0          # sigma_p of the IMQ kernel = the prior's std
    if arg.endswith("_gan"):
      c.penalty = "gan"
      c.penalty_weight = 1.0
      c.learning_rate = 3e-4
      c.critic_learning_rate = 1e-3
      c.critic_log_prior = True
  elif arg == "paper":
    c.network = "conv"
    c.conv_channels = (128, 256, 512, 1024)
    c.batch_norm = True
    c.recon_loss = "gaussian"
    c.recon_weight = 0.05
    c.num_steps = 60_000          # 100 epochs
    c.lr_boundaries = (18_000, 30_000)
    c.lr_factors = (0.5, 0.2)
  elif arg:
    raise ValueError(f"unknown wae config variant {arg!r}; expected '', 'paper', 'celeba', "
                     "'celeba_cpu', 'celeba_gan' or 'celeba_cpu_gan'.")
  return c
