"""AAE with a label-conditioned prior on MNIST (Makhzani et al. 2015, Fig. 4).

2-D codes; the critic gets one-hot(label) of size 11 (the last slot meaning
"unlabelled"). A labelled example's real sample comes from its label's component
of the 10-gaussian mixture (or segment of the swiss roll: class 0 the first
tenth of the roll, and so on); an unlabelled one's from the whole prior.
``num_labeled`` training examples keep their label (a class-balanced subset
chosen by ``seed``), the others are unlabelled. Metric:
``eval/label_component_accuracy``. Plots: ``latent_qz.png`` (q(z) by label),
``components_manifold.png`` (mixture) or ``roll_walk.png`` (swiss roll).

Recipe (the paper gives no optimiser details for this figure; ours): MLPs of
two 1000-unit ReLU layers for encoder, decoder and critic, Adam with β1 = 0.5,
no critic noise, 10 epochs, 10,000 labelled examples, learning rate 1e-3 for
all three phases, and a labelled mini-batch of 100 (``labeled_batch_size``)
added to every step's regularization phases. Why: at the unsupervised rates
the critic wins, and without the labelled mini-batch the classes land on the
components in an arbitrary order. The screens behind this recipe: BENCHMARKS.md.

  python experiments/main.py --config=experiments/configs/aae_supervised_prior.py \
      --workdir=runs/supervised_prior --config.prior=swiss_roll
"""

from configs import aae_unsupervised


def get_config():
  c = aae_unsupervised.get_config()
  c.model = "aae_supervised_prior"
  c.r1_weight = 0.0               # screened without the main job's R1 penalty
  c.prior = "gaussian_mixture"   # gaussian_mixture | swiss_roll
  c.num_labeled = 10_000         # a multiple of 10; 60_000 labels everything
  c.labeled_batch_size = 100     # labelled examples added to each step's regularization (0: none)
  c.num_steps = 6000             # 10 epochs
  c.lr_boundaries, c.lr_factors = (), ()   # constant rates (not the main job's late drop)
  c.learning_rate = 1e-3
  c.critic_learning_rate = 1e-3
  c.gen_learning_rate = 1e-3
  c.eval_every = 1000
  return c
