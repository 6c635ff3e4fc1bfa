"""GAN on MNIST (Goodfellow et al. 2014), the AAE paper's baseline; DCGAN as ``gan.py:dcgan``.

Non-saturating generator loss, noise z ~ N(0, I). Default: the AAE paper's MLP
sizes (generator 100-1000-1000-784, critic 784-1000-1000-1, LeakyReLU 0.2; batch
norm in the generator: without it the critic wins at once and G collapses),
dropout 0.7 after the critic's hidden layers (as the GAN paper's MNIST discriminator; with
it every digit stays in the samples to the end, BENCHMARKS.md has the screen), Adam lr 2e-4
with β1 = 0.5 for both phases (Radford et al.'s recipe), batch 100, 10 epochs. ``gan.py:dcgan``: DCGAN's conv nets (Radford et al. 2016; batch norm,
4×4 stride-2 (transposed) convs; 28×28 here, 64×64 on 64×64 data; no critic dropout: on the conv
critic it raised the samples' FD without keeping the rarest digit better, BENCHMARKS.md). Eval: mode
coverage by the project's digit classifier on 10,000 samples
(``eval/classes_covered``, ``eval/rarest_class_share``, ``eval/confident_share``).

  python experiments/main.py --config=experiments/configs/gan.py --workdir=runs/gan
  python experiments/main.py --config=experiments/configs/gan.py:dcgan --workdir=runs/dcgan

``gan.py:celeba`` / ``gan.py:celeba_cpu``: DCGAN on CelebA 64x64 with wae.py:celeba's nets
(generator = its decoder, critic = its encoder's convs with LeakyReLU, 5x5 kernels), 64-D
noise, Adam 2e-4 with beta1 0.5, and the celeba schedule (:celeba_cpu: 400 steps, the budget
of the models with an image critic).
"""

from configs import default


def get_config(arg=""):
  c = default.get_config()
  c.model = "gan"
  c.prior = "gaussian"
  c.latent_dim = 100
  c.hidden = (1000, 1000)         # generator MLP
  c.critic_hidden = (1000, 1000)  # critic MLP
  c.learning_rate = 2e-4          # generator
  c.critic_learning_rate = 2e-4
  c.gen_weight = 1.0
  c.critic_noise = 0.0            # std of instance noise on the critic's inputs (sweepable)
  c.critic_dropout = 0.7          # dropout after the critic's hidden layers (keeps every digit)
  c.minibatch_std = 0             # group size of the critic's minibatch-stddev feature (0: off)
  c.batch_norm = True             # in the generator (MLP and DCGAN) and the DCGAN critic
  c.adam_b1 = 0.5
  c.num_steps = 6000              # 10 epochs of MNIST at batch 100
  c.eval_every = 1000
  c.checkpoint_every = 1000
  c.gen_channels = ()             # DCGAN generator widths (): the defaults for the image size
  c.critic_channels = ()          # DCGAN critic widths
  if arg in ("celeba", "celeba_cpu"):
    default.celeba(c, "paper" if arg == "celeba" else "cpu")
    c.critic_channels = tuple(c.conv_channels)
    c.gen_channels = tuple(reversed(c.conv_channels))
    c.learning_rate = 2e-4
    c.critic_learning_rate = 2e-4
    c.critic_dropout = 0.0
    if arg == "celeba_cpu":
      default.cpu_budget(c, default.CELEBA_CPU_IMAGE_CRITIC_STEPS)
  elif arg == "dcgan":
    c.network = "conv"
    c.conv_kernel = 4
    c.batch_norm = True
    c.critic_dropout = 0.0        # the MLP's 0.7 (or 0.3, 0.5) did not help the conv critic
  elif arg:
    raise ValueError(f"unknown gan config variant {arg!r}; expected '', 'dcgan', 'celeba' or "
                     "'celeba_cpu'.")
  return c
