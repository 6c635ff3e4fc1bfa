"""A short real-data run of a model's own compiled step, shared by the families' tests."""

import jax
import jax.numpy as jnp

from aaejax.run import builder


def run_steps(model, arrays, steps: int, batch_size: int, hparams=None, seed: int = 0):
  """(first state, final state, metric history) of ``steps`` steps of ``model`` on ``arrays``
  (host arrays, no streams), batches in data order, the step compiled without LLVM
  optimisations (faster to compile)."""
  state0 = jax.jit(model.init)(jax.random.key(seed), hparams or {})
  arrays = jax.tree.map(jnp.asarray, dict(arrays))
  fn = builder.make_train_fn(model, batch_size, jit=False)
  perm = jnp.arange(arrays["image"].shape[0])
  step = jax.jit(fn).lower(state0, arrays, perm, 0, {}).compile(
      {"xla_backend_optimization_level": 0})
  per_epoch = arrays["image"].shape[0] // batch_size
  state, history = state0, []
  for t in range(steps):
    state, m = step(state, arrays, perm, t % per_epoch, {})
    history.append(jax.device_get(m))
  return state0, state, history
