"""Variational autoencoder on MNIST (Kingma & Welling 2014), the WAE paper's baseline.

Gaussian q(z|x), N(0, I) prior, Bernoulli decoder, the KL in closed form with
weight β = ``beta`` (1: the VAE). The AAE paper's MLPs (two hidden layers of 1000
ReLU units), 8-D z as in the WAE paper's MNIST runs, Adam lr 1e-3, batch 100,
5 epochs. Eval: ``eval/nll_elbo`` (−ELBO on the test set) and ``eval/nll_iw``
(the importance-weighted bound with ``iw_samples`` samples on the first
``iw_examples`` test images), nats per image.

Variants: ``vae.py:2d`` (2-D z, to set its q(z) beside the AAE's, the paper's
Fig. 3 comparison), ``vae.py:conv`` (the WAE paper's conv nets; GPU),
``vae.py:celeba`` / ``vae.py:celeba_cpu`` (CelebA 64x64 with wae.py:celeba's nets, schedule
and budget; a gaussian decoder of fixed std sigma_x = 0.1 on [0, 1] pixels:
recon_weight = 1 / (2 sigma_x^2) = 50 on the squared error, the KL at weight 1; the
'likelihood' metrics then leave out the decoder's log-normaliser).

  python experiments/main.py --config=experiments/configs/vae.py --workdir=runs/vae
"""

from configs import default


def get_config(arg=""):
  c = default.get_config()
  c.model = "vae"
  c.posterior = "gaussian"
  c.prior = "gaussian"
  c.latent_dim = 8
  c.learning_rate = 1e-3
  c.beta = 1.0                    # KL weight (sweepable)
  c.iw_samples = 100              # k of the importance-weighted bound
  c.iw_examples = 1000            # test images it is computed on
  if arg in ("celeba", "celeba_cpu"):
    default.celeba(c, "paper" if arg == "celeba" else "cpu")
    c.recon_loss = "gaussian"
    c.recon_weight = 50.0         # 1 / (2 sigma_x^2), sigma_x = 0.1
    c.learning_rate = 1e-3
    if arg == "celeba_cpu":
      c.iw_examples = 100         # 10,000 conv-decoder passes per eval on a CPU
  elif arg == "2d":
    c.latent_dim = 2
  elif arg == "conv":
    c.network = "conv"
    c.conv_channels = (128, 256, 512, 1024)
    c.batch_norm = True
  elif arg:
    raise ValueError(f"unknown vae config variant {arg!r}; expected '', '2d', 'conv', "
                     "'celeba' or 'celeba_cpu'.")
  return c
