"""Domain-adversarial training, MNIST -> MNIST-M-style (Ganin et al. 2016, Sec. 5.2.2).

Source: MNIST with labels (grey, tiled to RGB inside the model); target: the unlabelled
train split of ``mnist_m_style`` (aaejax/data/mnistm.py: MNIST digits blended with crops of 6
scikit-image colour photos; NOT the benchmark MNIST-M, whose BSDS500 photos are not
reachable here). Metrics: ``eval/target_accuracy`` (% on the target test split),
``eval/source_accuracy``, ``eval/domain_critic_accuracy`` (0.5: the critic cannot tell
the domains' features apart), ``eval/error_rate`` (source test). Paper, real MNIST-M
target accuracy: source-only 52.25 %, DANN 76.66 %.

Recipe. From the paper: the MNIST feature extractor (conv 32 5x5, max pool 2, conv 48 5x5,
max pool 2), label predictor 100-100-10, domain critic 100-1, one update of all three on
CE + BCE through the gradient-reversal layer, λ_p = 2/(1+exp(-10p)) - 1 and
μ_p = μ0/(1+10p)^0.75 over progress p = step / num_steps, source and target batches of
equal size. What we changed: Adam (β1 0.9) with μ0 = 1e-3 instead of momentum SGD with
μ0 = 0.01; VALID conv padding (768 features); a CPU budget of 3,000 steps of batch 100
+ 100 (5 epochs of MNIST) instead of the paper's ~ tens of thousands; no per-pixel mean
subtraction (inputs centred at 0.5). ``--config.domain_weight=0`` trains source-only (the
critic still learns, on features it cannot shape). ``--config.network=mlp`` swaps in a
flatten + ReLU MLP extractor (``feature_hidden``).

  python experiments/main.py --config=experiments/configs/dann.py --workdir=runs/dann
  python experiments/main.py --config=experiments/configs/dann.py --workdir=runs/dann_src \
      --config.domain_weight=0
"""

from configs import default


def get_config():
  c = default.get_config()
  c.model = "dann"
  c.dataset = "mnist"            # the source domain; the target is mnist_m_style (fixed)
  c.network = "conv"             # the paper's MNIST extractor; "mlp": feature_hidden
  c.feature_channels = (32, 48)
  c.feature_padding = "VALID"
  c.feature_hidden = (256,)      # only for network="mlp"
  c.label_hidden = (100, 100)
  c.domain_hidden = (100,)
  c.batch_size = 100             # source images per step; as many target images
  c.learning_rate = 1e-3         # μ0 (Adam), annealed by 1/(1 + 10p)^0.75
  c.domain_weight = 1.0          # multiplies λ_p; 0 = source-only
  c.num_steps = 3000
  c.log_every = 100
  c.eval_every = 1500
  c.checkpoint_every = 1000
  # Only the shared classification evaluator applies (eval/error_rate on source test);
  # this family's own evaluators run besides it.
  c.skip_evaluators = ()
  return c
