"""Semi-supervised classification on MNIST (Makhzani et al. 2015, Fig. 8, Table 2).

The encoder outputs y = softmax (matched by ``critic_y`` to a uniform categorical
over the 10 classes) and a 10-D z (matched by ``critic_z`` to N(0, I)); the
decoder gets [z, y]. Each step: reconstruction, both critics (one update of
their disjoint parameters), the encoder as generator against both, then the
cross-entropy of q(y|x) on a labelled mini-batch of ``labeled_batch_size``
examples drawn from the ``num_labeled`` labelled ones (class-balanced, chosen
by ``seed``). Metric ``eval/error_rate``: % test error of argmax y. Paper (%):
100 labels 1.90 ± 0.10, 1000 labels 1.60 ± 0.08, all 60,000 labels 0.85 ± 0.02.

Recipe. From the paper: MLPs of two 1000-unit ReLU layers for the encoder, the
decoder and both critics; the four phases in this order. Ours, where the paper
(as available to us) is silent: Adam with β1 = 0.5 and learning rate 1e-3 in
every phase; gaussian noise of std 0.3 on both critics' inputs (real and fake),
which keeps the categorical critic from telling one-hot samples from softmax
outputs at once; 10-D z; labelled batch 100; 100 epochs with every learning
rate divided by 10 after 50. Dropout on the encoder and the critics, as public
reproductions use (``encoder_dropout`` 0.25, ``critic_dropout`` 0.2), did not help in a
3,000-step screen, so both stay 0. ``experiments/reproduce.py --table=semisupervised``
runs the table's rows. The screens behind this recipe: BENCHMARKS.md.

  python experiments/main.py --config=experiments/configs/aae_semisupervised.py \
      --workdir=runs/semi100 --config.num_labeled=100
"""

from configs import default


def get_config():
  c = default.get_config()
  c.model = "aae_semisupervised"
  c.prior = "gaussian"           # p(z); y's prior is the uniform categorical
  c.latent_dim = 10
  c.num_labeled = 100            # 100 | 1000 | 60_000 (all)
  c.labeled_batch_size = 100
  c.critic_hidden = (1000, 1000)
  c.learning_rate = 1e-3         # reconstruction phase
  c.critic_learning_rate = 1e-3
  c.gen_learning_rate = 1e-3
  c.supervised_learning_rate = 1e-3
  c.adam_b1 = 0.5
  c.gen_weight = 1.0
  c.critic_noise = 0.3
  c.num_steps = 60_000           # 100 epochs of MNIST at batch 100
  c.lr_boundaries = (30_000,)
  c.lr_factors = (0.1,)
  c.eval_every = 3000
  c.checkpoint_every = 3000
  return c
