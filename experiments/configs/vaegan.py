"""VAE-GAN (Larsen et al. 2016) on MNIST; ``vaegan.py:three_way`` the three-way critic;
``vaegan.py:celeba_cpu`` / ``vaegan.py:celeba`` on CelebA 64×64.

The VAE of ``vae.py`` (8-D z, MLPs 1000-1000, gaussian q(z|x)) plus an image critic whose
features at ``feature_layer`` measure the reconstruction: encoder on β·KL + L_feat, decoder on
γ·L_feat + the GAN loss over reconstructions and prior samples, critic on real against both
fakes; three Adam updates from one forward pass. Critic: MLP 1000-1000 LeakyReLU, features of
its first hidden layer (the paper reads a middle layer: low enough to keep the image's
layout); Adam 3e-4 with β1 0.5 for the three phases, batch 100, 3,000 steps (the VAE's budget).
CelebA: ``wae.py:celeba``'s conv encoder and decoder, a conv critic of the same widths
(features of its third conv, as the paper's), and the celeba schedule (:celeba_cpu: 400 steps,
the budget of the models with an image critic).

  python experiments/main.py --config=experiments/configs/vaegan.py --workdir=runs/vaegan
"""

from configs import default, vae


def get_config(arg=""):
  if arg not in ("", "three_way", "celeba", "celeba_cpu"):
    raise ValueError(f"unknown vaegan config variant {arg!r}; expected '', 'three_way', "
                     "'celeba' or 'celeba_cpu'.")
  c = vae.get_config(arg if arg.startswith("celeba") else "")
  c.model = "vaegan"
  c.critic_hidden = (1000, 1000)  # MLP critic
  c.feature_layer = 0             # the critic layer whose features measure reconstructions
  c.feature_weight = 1.0          # γ: the feature loss in the decoder's loss (sweepable)
  c.three_way = arg == "three_way"  # critic: real / reconstructed / generated
  c.critic_batch_norm = False     # batch norm in the conv critic
  c.critic_noise = 0.0
  c.learning_rate = 3e-4          # encoder
  c.decoder_learning_rate = 3e-4
  c.critic_learning_rate = 3e-4
  c.adam_b1 = 0.5
  if arg.startswith("celeba"):
    c.critic_channels = tuple(c.conv_channels)
    c.feature_layer = 2           # the third conv, as the paper's
    c.recon_loss = "gaussian"     # only the pixel diagnostic recon_loss reads it
    if arg == "celeba_cpu":         # its image critic makes a step 3x the VAE's
      default.cpu_budget(c, default.CELEBA_CPU_IMAGE_CRITIC_STEPS)
  return c
