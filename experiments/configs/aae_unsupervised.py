"""Unsupervised AAE on MNIST (Makhzani et al. 2015, Sec. 2, Fig. 2).

2-D codes matched to a mixture of 10 gaussians; MLPs with two hidden layers of
1000 ReLU units for encoder, decoder and critic. Phases per step:
reconstruction (lr 2e-3), critic (lr 2e-4), encoder as generator (lr 2e-4),
Adam with β1 = 0.5 for the adversarial game's stability. The rates come from a
small search on this 5-epoch run: at these the codes fill the mixture's arms
(a lower adversarial rate leaves them off the prior, a higher one costs kNN
accuracy). The screens behind this recipe: BENCHMARKS.md.

  python experiments/main.py --config=experiments/configs/aae_unsupervised.py \
      --workdir=runs/aae_mnist --config.prior=swiss_roll
"""

from configs import default


def get_config():
  c = default.get_config()
  c.model = "aae"
  c.prior = "gaussian_mixture"   # gaussian | gaussian_mixture | swiss_roll | uniform
  c.latent_dim = 2
  c.critic_hidden = (1000, 1000)
  c.learning_rate = 2e-3          # reconstruction phase
  c.critic_learning_rate = 2e-4
  c.gen_learning_rate = 2e-4
  c.adam_b1 = 0.5
  c.gen_weight = 1.0
  c.critic_noise = 0.0
  return c
