"""Style/content disentanglement on MNIST (Makhzani et al. 2015, Fig. 6).

The decoder gets [z, one-hot(label)]; z (15-D) is matched to a gaussian by the
critic, so it holds only the style. Plot ``plots/style_grid.png``: each row is
the z of one test image decoded with each of the 10 classes. How much class
information z still holds shows in ``eval/knn_accuracy`` (kNN classification
of test codes from training codes): 0.1 would be none.

Recipe (ours; the paper's z size and optimiser for this figure were not
available to us): MLPs of two 1000-unit ReLU layers, Adam with β1 = 0.5,
learning rate 1e-3 for all three phases, 15-D z, 10 epochs. Why 1e-3
everywhere: with the unsupervised AAE's adversarial rates the decoder ignores
the label. The screens behind this recipe: BENCHMARKS.md.

  python experiments/main.py --config=experiments/configs/aae_style.py --workdir=runs/style

With the label adversary (``--config.label_adversary_weight=1``) and in the two-encoder form
(``--config.content_encoder=True``): ``eval/z_label_knn_accuracy`` measures what is left of
the digit in z (README, "Adversarial feature disentanglement").
"""

from configs import aae_unsupervised


def get_config():
  c = aae_unsupervised.get_config()
  c.model = "aae_style"
  c.r1_weight = 0.0               # screened without the main job's R1 penalty
  c.prior = "gaussian"
  c.latent_dim = 15
  c.learning_rate = 1e-3
  c.critic_learning_rate = 1e-3
  c.gen_learning_rate = 1e-3
  c.num_steps = 6000             # 10 epochs
  c.lr_boundaries, c.lr_factors = (), ()   # constant rates (not the main job's late drop)
  c.eval_every = 1000
  # Adversarial disentanglement (aaejax/models/aae_style.py): a classifier A(z) that tries to
  # read the digit from z, the encoder trained to confuse it; 0 = off.
  c.label_adversary_weight = 0.0
  c.label_adversary_learning_rate = 1e-3
  c.adversary_hidden = (256, 256)
  c.content_encoder = False      # the two-encoder form: content C(x) and style z, one decoder
  c.content_weight = 1.0
  return c
