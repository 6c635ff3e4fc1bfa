"""The training state: one plain pytree (steps, parameters, optimizer states, hparams)."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
from flax import struct


Params = Mapping[str, Any]
LossFn = Callable[[Params], tuple[jax.Array, tuple[dict, dict]]]


@struct.dataclass
class TrainState:
  """The whole training state: a plain pytree.

  Attributes:
    step: int32 scalar, the number of train steps done.
    params: network name -> parameters.
    opt_state: phase name -> optimizer state of the parameters it trains.
    model_state: network name -> non-parameter variables (batch-norm statistics);
      empty for networks without any.
    hparams: name -> float32 scalar: learning rates ``lr_<phase>``, loss
      weights, prior and kernel scales. Arrays, never trace constants.
    rng: the run's base key; step t uses ``fold_in(rng, t)``.
  """

  step: jax.Array
  params: dict
  opt_state: dict
  model_state: dict
  hparams: dict
  rng: jax.Array
