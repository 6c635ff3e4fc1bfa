"""The denoising autoencoder of ``experiments/examples/denoising_ae.py`` on MNIST.

  python experiments/main.py --config=experiments/examples/denoising_ae_config.py \
      --workdir=runs/dae
"""

import os

from configs import default


def get_config():
  c = default.get_config()
  c.model = "denoising_ae"
  c.model_module = os.path.join(os.path.dirname(os.path.abspath(__file__)), "denoising_ae.py")
  c.latent_dim = 8
  c.noise_std = 0.3               # std of the input noise (sweepable)
  c.learning_rate = 1e-3          # the ae phase's rate
  return c
