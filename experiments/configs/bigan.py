"""BiGAN on MNIST (Donahue et al. 2017); ALI's stochastic encoder as ``bigan.py:ali``.

An encoder E and a generator G never connected, a critic on (x, z) pairs: (x, E(x)) against
(G(z), z). z ~ uniform(−1, 1)^50 (the BiGAN paper's MNIST prior). Nets: the GAN's MLPs
(generator 1000-1000 with batch norm and LeakyReLU; encoder 1000-1000 ReLU; joint critic on
[x, z], 1000-1000 LeakyReLU), Adam 2e-4 with β1 0.5 for both phases, batch 100, 6,000 steps.
Signature metrics: ``eval/knn_accuracy`` (5-NN on E(x) of 10,000 training codes; the paper
reports 1-NN ≈ 97 %), ``eval/cycle_label_accuracy`` (G(E(x)) keeps the digit of x, by the
project's digit classifier); figure ``bigan_pairs.png``.

  python experiments/main.py --config=experiments/configs/bigan.py --workdir=runs/bigan
"""

from configs import gan


def get_config(arg=""):
  if arg not in ("", "ali"):
    raise ValueError(f"unknown bigan config variant {arg!r}; expected '' or 'ali'.")
  c = gan.get_config()
  c.model = "bigan"
  c.critic_dropout = 0.0          # (gan.py's 0.7 is for the plain GAN; measured without)
  c.prior = "uniform"
  c.latent_dim = 50
  c.encoder_hidden = (1000, 1000)  # encoder MLP (ReLU)
  c.stochastic_encoder = arg == "ali"  # ALI: a gaussian encoder, sampled in the step
  c.cycle_examples = 10_000       # test images whose G(E(x)) the digit classifier judges
  return c
