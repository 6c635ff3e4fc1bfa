"""Unsupervised clustering of MNIST (Makhzani et al. 2015, Fig. 9).

The semi-supervised architecture without the supervised phase: y has
``num_clusters`` categories (16 or 30 in the paper), matched to a uniform
categorical; z (10-D) to N(0, I). Metric ``eval/cluster_error``: each cluster
takes the majority label of its training members (10,000 training images), %
test error. Paper: 16 clusters 9.55 %, 30 clusters 4.10 %. Plot
``cluster_heads.png``: each cluster's head (decoded one-hot y with z = 0) and
test members.

Recipe: as ``aae_semisupervised.py`` (our choices where the paper is silent:
Adam β1 = 0.5, lr 1e-3 in every phase, critic input noise 0.3, 10-D z, 100
epochs with lr / 10 after 50; the screens behind them: BENCHMARKS.md).
``eval/categories_used`` and ``eval/y_confidence`` tell a collapse of y.

  python experiments/main.py --config=experiments/configs/aae_clustering.py \
      --workdir=runs/cluster16 --config.num_clusters=16
"""

from configs import aae_semisupervised


def get_config():
  c = aae_semisupervised.get_config()
  c.model = "aae_clustering"
  c.num_clusters = 16            # 16 | 30
  del c.num_labeled, c.labeled_batch_size, c.supervised_learning_rate
  return c
