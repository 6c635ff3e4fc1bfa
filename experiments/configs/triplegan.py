"""Triple-GAN on MNIST with 100 labels (Li, Xu, Zhu & Zhang 2017).

A classifier C(y|x), a class-conditional generator G(z, y) and a critic D(x, y) on
image-label pairs (aaejax/models/triplegan.py). Each step: D on real labelled pairs vs
C's pairs (x_u, ŷ) and G's pairs (G(z, y), y), weighted α and 1 − α; then, in one shared
pass, C on α · its adversarial term (the expectation over its softmax of −log D(x_u, ŷ)),
the cross-entropy on a labelled batch (R_L) and, from ``pseudo_start`` of training on,
``pseudo_weight`` · the cross-entropy on G's samples (R_P), and G on (1 − α) · −log
D(G(z, y), y). Metric ``eval/error_rate``: % test error of argmax C(y|x);
``eval/gen_label_agreement``: the share of G(z, y) that C labels y. Paper: 0.91 ± 0.58 %
with 100 labels (a CNN classifier, many epochs).

Recipe. From the paper: the three-player game, α = 1/2, the labelled cross-entropy and
the pseudo-label term switched on late; gaussian noise on D's inputs (as in its MNIST
critic, std 0.3); Adam with β1 = 0.5. What we changed for this CPU: MLPs throughout
(C 784-1000-1000-10 ReLU, as the semi-supervised AAE's encoder; G [z, y]-500-500-784 with
LeakyReLU and batch norm; D [x, y]-1000-500-1 LeakyReLU), 3,000 steps of batch 100
(5 epochs) with every rate divided by 10 after half, the exact expectation over C's
softmax instead of the score-function estimator, and α_P = 0.1 from 25 % of training on
(our setting, not the paper's). The costly generated-image evaluators (mode coverage and
FD train a digit classifier; Parzen) are skipped; add them back with
``--config.skip_evaluators="()"``.

  python experiments/main.py --config=experiments/configs/triplegan.py \
      --workdir=runs/triplegan100 --config.num_labeled=100
"""

from configs import default


def get_config():
  c = default.get_config()
  c.model = "triplegan"
  c.prior = "gaussian"
  c.latent_dim = 100
  c.num_classes = 10
  c.num_labeled = 100              # class-balanced, chosen by seed
  c.labeled_batch_size = 100
  c.hidden = (500, 500)            # generator MLP (on [z, one-hot y])
  c.critic_hidden = (1000, 500)    # critic MLP (on [x, one-hot y])
  c.classifier_hidden = (1000, 1000)
  c.batch_norm = True              # in the generator
  c.critic_dropout = 0.0
  c.classifier_dropout = 0.0
  c.learning_rate = 3e-4           # generator
  c.critic_learning_rate = 3e-4
  c.classifier_learning_rate = 1e-3
  c.alpha = 0.5                    # share of C's fakes in D's fake loss (paper: 1/2)
  c.supervised_weight = 1.0        # R_L
  c.pseudo_weight = 0.1            # α_P of R_P ...
  c.pseudo_start = 0.25            # ... from this fraction of num_steps on
  c.critic_noise = 0.3             # std of gaussian noise on D's image inputs
  c.adam_b1 = 0.5
  c.num_steps = 3000               # 5 epochs of MNIST at batch 100
  c.lr_boundaries = (1500,)
  c.lr_factors = (0.1,)
  c.eval_every = 1000
  c.checkpoint_every = 1000
  c.skip_evaluators = ("mode_coverage", "fd_digits", "parzen_ll")
  return c
