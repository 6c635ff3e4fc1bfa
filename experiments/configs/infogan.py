"""InfoGAN on MNIST (Chen et al. 2016): one 10-way categorical and 2 continuous codes.

G's input is [z (62-D gaussian), one-hot(c_cat), c_cont ~ uniform(−1, 1)²]; a Q head on the
critic's trunk reads c back; L_I (cross-entropy on c_cat + ``info_cont_weight`` · ½‖·‖² on
c_cont) weighted by ``info_weight`` (λ = 1, the paper's for the categorical code) in both
phases. Nets: the GAN's MLPs (generator 1000-1000 with batch norm, critic trunk 1000-1000,
Q head 128); ``infogan.py:conv`` the paper's conv D (64, 128 stride-2 convs, FC 1024) and the
DCGAN generator. Adam with β1 0.5, D 2e-4, G 1e-3 (the paper's rates), batch 100, 6,000 steps.
Signature metric: ``eval/categorical_error`` (argmax Q_cat as a digit classifier after the
best one-to-one matching, %); figure ``infogan_codes.png`` (rows c_cat, columns c1 from −2 to 2).

  python experiments/main.py --config=experiments/configs/infogan.py --workdir=runs/infogan
"""

from configs import gan


def get_config(arg=""):
  c = gan.get_config("dcgan" if arg == "conv" else "")
  if arg not in ("", "conv"):
    raise ValueError(f"unknown infogan config variant {arg!r}; expected '' or 'conv'.")
  c.model = "infogan"
  c.critic_dropout = 0.0          # (gan.py's 0.7 is for the plain GAN; measured without)
  c.latent_dim = 62               # noise z; the codes come on top
  c.num_categories = 10           # values of the categorical code
  c.num_continuous = 2            # uniform(-1, 1) codes
  c.q_hidden = 128                # Q head's hidden units
  c.info_weight = 1.0             # λ of L_I (sweepable)
  c.info_cont_weight = 0.1        # weight of the continuous codes' term inside L_I (sweepable)
  c.learning_rate = 1e-3          # generator (the paper's)
  c.critic_learning_rate = 2e-4   # critic and Q head
  return c
