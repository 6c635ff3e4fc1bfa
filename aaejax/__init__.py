"""aaejax: adversarial and Wasserstein autoencoders in JAX/Flax."""

from aaejax import data, models, networks, penalties, priors

__version__ = "0.1.0"
__all__ = ["data", "models", "networks", "penalties", "priors"]
