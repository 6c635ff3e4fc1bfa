"""Unsupervised AAE on MNIST (Makhzani et al. 2015, Sec. 2, Fig. 2).

2-D codes matched to a mixture of 10 gaussians; MLPs with two hidden layers of
1000 ReLU units for encoder, decoder and critic (the paper's). Phases per step:
reconstruction (lr 1e-3), critic (lr 2e-4, with the R1 penalty γ = 10 on its
prior samples), encoder as generator (lr 1e-3), Adam with β1 = 0.5, no critic
noise, 5,000 steps (8⅓ epochs) with every rate ×0.3 for the last 1,000.

Why: the encoder has one Adam state per phase, and Adam normalises each
phase's gradient, so the pull between reconstruction and the prior is the
ratio of their rates (``gen_weight`` hardly changes it). With the generator at
a tenth of the reconstruction rate the critic won (accuracy 0.85, codes in a
radial star out to ±20, MMD to the prior 0.6); at equal rates and a slower
critic the game stays balanced (critic accuracy ≈ 0.55–0.6) and the codes fill
the mixture's arms. At a constant rate the end state moved with the seed and
the last bits of the arithmetic (MMD 0.03–0.09 after 3,000 steps); the late
rate drop settled most runs, but not all: seed 0's codes were off the prior by
step 3,000 (MMD 0.089) and stayed off (0.076). The R1 penalty (Mescheder et al.
2018) damps the critic's oscillation around the prior while the arms form; with
it seed 0 ended at MMD 0.025, kNN 0.718. A larger reconstruction rate
buys kNN accuracy with q(z) off the prior (1.5e-3: MMD up to 0.11), a slower
critic or a recon-heavy start then equal rates did worse on both. The screens
behind this recipe: BENCHMARKS.md.

  python experiments/main.py --config=experiments/configs/aae_unsupervised.py \
      --workdir=runs/aae_mnist --config.prior=swiss_roll

``aae_unsupervised.py:celeba`` / ``:celeba_cpu``: the AAE on CelebA 64x64 (conv nets of
wae.py:celeba, gaussian prior, 64-D codes).
"""

from configs import default


def get_config(arg=""):
  c = default.get_config()
  c.model = "aae"
  c.prior = "gaussian_mixture"   # gaussian | gaussian_mixture | swiss_roll | uniform
  c.latent_dim = 2
  c.critic_hidden = (1000, 1000)
  c.learning_rate = 1e-3          # reconstruction phase
  c.critic_learning_rate = 2e-4
  c.gen_learning_rate = 1e-3      # as the reconstruction rate: each phase has its own Adam
  c.adam_b1 = 0.5
  c.gen_weight = 1.0
  c.critic_noise = 0.0
  c.r1_weight = 10.0              # γ of the critic's R1 penalty (prior samples)
  c.num_steps = 5000              # 8⅓ epochs at batch 100 ...
  c.lr_boundaries = (4000,)       # ... every rate x0.3 for the last 1,000 steps
  c.lr_factors = (0.3,)
  if arg in ("celeba", "celeba_cpu"):
    # CelebA 64x64 with wae.py:celeba's nets, cost, budget and schedule; a gaussian prior and
    # the WAE-GAN's latent critic (4x512), each phase's rate as in wae.py:celeba_gan.
    default.celeba(c, "paper" if arg == "celeba" else "cpu")
    c.recon_loss = "gaussian"
    c.r1_weight = 0.0             # the WAE-GAN's critic has none
    c.recon_weight = 0.2
    c.critic_hidden = (512, 512, 512, 512)
    c.learning_rate = 3e-4
    c.gen_learning_rate = 3e-4
    c.critic_learning_rate = 1e-3
  elif arg:
    raise ValueError(f"unknown aae_unsupervised config variant {arg!r}; expected '', "
                     "'celeba' or 'celeba_cpu'.")
  return c
