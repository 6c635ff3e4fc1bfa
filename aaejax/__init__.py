"""aaejax: adversarial and Wasserstein autoencoders in JAX/Flax.

Packages by concern, each using only those listed after it: :mod:`aaejax.run` (the loop, the
run builder, checkpoints, sweeps), :mod:`aaejax.models` (the families and their registry),
:mod:`aaejax.evaluation` (evaluators, figures, feature nets' use, distances),
:mod:`aaejax.core` (the model protocol: networks, phases, hparams, streams),
:mod:`aaejax.nets` (linen networks and frozen feature nets), :mod:`aaejax.data` (loaders,
downloads, on-device batches); :mod:`aaejax.priors`, :mod:`aaejax.penalties` and
:mod:`aaejax.errors` are leaves every floor may use.
"""

from aaejax import data, models, penalties, priors
from aaejax.nets import networks

__version__ = "0.1.0"
__all__ = ["data", "models", "networks", "penalties", "priors"]
