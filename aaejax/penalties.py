"""Latent-space penalties D_Z(q(z), p(z)): MMD estimators and GAN losses.

``mmd`` is exactly the statistic of the WAE authors' estimator (Tolstikhin et
al. 2018, their ``mmd_penalty``): the unbiased U-statistic for the within-sample
terms (diagonals dropped, so it may be negative) and the V-statistic for the
cross term.

GAN pieces: the critic sees prior samples as real and codes as fake; the encoder
(the generator) uses the non-saturating loss; ``logits_and_r1`` is the R1 gradient
penalty on the critic's real inputs (Mescheder et al. 2018).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
KERNELS = ("rbf", "imq")


def sq_distances(x: jax.Array, y: jax.Array) -> jax.Array:
  """(n, m) squared Euclidean distances, as ‖x‖² + ‖y‖² − 2x·y (the authors' form).

  Example:

    >>> sq_distances(jnp.array([[0.0, 0.0]]), jnp.array([[3.0, 4.0], [0.0, 1.0]])).tolist()
    [[25.0, 1.0]]
  """
  xx = jnp.sum(jnp.square(x), axis=1)
  yy = jnp.sum(jnp.square(y), axis=1)
  return xx[:, None] + yy[None, :] - 2.0 * (x @ y.T)


def _sortable_bits(x: jax.Array) -> jax.Array:
  """Maps float32 to uint32 so that unsigned order equals float order."""
  u = lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
  return jnp.where((u >> 31) == 1, ~u, u | jnp.uint32(0x80000000))


def kth_largest(x: jax.Array, k: int) -> jax.Array:
  """Exact k-th largest entry (1-based) of ``x``, like ``jnp.sort(x.ravel())[-k]``.

  A 32-step radix select (each step counts the entries above a candidate bit
  pattern) instead of a sort: O(32·size) vectorised work, about 25× faster than
  ``jnp.sort`` for a 256×256 matrix on CPU. The gradient flows to the selected
  entry, as through a sort or ``top_k``.

  Example:

    >>> float(kth_largest(jnp.array([[3.0, -1.0], [2.0, -5.0]]), 3))
    -1.0
  """
  flat = jnp.ravel(x)
  keys = _sortable_bits(lax.stop_gradient(flat))
  # Counts in float32 are exact below 2**24 entries and XLA's CPU reduction of
  # them is about 2x faster than of int32.
  count_dtype = jnp.float32 if flat.size < 2**24 else jnp.int32

  def body(i, prefix):
    candidate = prefix | (jnp.uint32(1) << (31 - i).astype(jnp.uint32))
    count = jnp.sum((keys >= candidate).astype(count_dtype))
    return jnp.where(count >= k, candidate, prefix)

  key = lax.fori_loop(0, 32, body, jnp.uint32(0))
  return flat[jnp.argmax(keys == key)]


def rbf_bandwidth(d_qq: jax.Array, d_qp: jax.Array) -> jax.Array:
  """σ² of the median heuristic: k-th largest of D_qp plus of D_qq, k=(n²−n)/2."""
  n = d_qq.shape[0]
  k = (n * n - n) // 2
  return kth_largest(d_qp, k) + kth_largest(d_qq, k)


def _mmd_terms(k_qq, k_pp, k_qp):
  n = k_qq.shape[0]
  off = 1.0 - jnp.eye(n, dtype=k_qq.dtype)
  within = jnp.sum((k_qq + k_pp) * off) / (n * n - n)
  cross = 2.0 * jnp.sum(k_qp) / (n * n)
  return within - cross


def mmd(qz: jax.Array, pz: jax.Array, kernel: str = "rbf", prior_scale=1.0) -> jax.Array:
  """MMD between codes ``qz`` and prior samples ``pz``, as in the WAE authors' code.

  With n the batch size, d the latent dimension, and D_qq, D_pp, D_qp the
  matrices of squared Euclidean distances, for a kernel k::

    stat = [Σ_{i≠j} k(D_qq) + Σ_{i≠j} k(D_pp)] / (n² − n) − 2 Σ_{i,j} k(D_qp) / n²

  - ``"rbf"``: k(D) = exp(−D / 2σ²) with σ² = (k-th largest entry of D_qp) +
    (k-th largest entry of D_qq), k = (n² − n) // 2 (a median heuristic computed
    on the batch). **Gradient flows through σ²** (as through the authors'
    ``tf.nn.top_k``): the selected entries are functions of ``qz``.
  - ``"imq"``: the sum over s in (0.1, 0.2, 0.5, 1, 2, 5, 10) of the statistic with
    k(D) = C / (C + D), C = 2·d·prior_scale²·s. ``prior_scale`` may be a traced
    array (sweepable).

  Args:
    qz: (n, d) codes.
    pz: (n, d) prior samples (same n as ``qz``; n >= 2).
    kernel: ``"rbf"`` or ``"imq"``.
    prior_scale: σ_p, the prior's scale (IMQ only).

  Returns:
    A float32 scalar (can be negative: the estimator is unbiased).

  Example:

    >>> import jax
    >>> q = jax.random.normal(jax.random.key(0), (64, 8))
    >>> p = jax.random.normal(jax.random.key(1), (64, 8))
    >>> float(mmd(q, p, "imq")) < float(mmd(q + 3.0, p, "imq"))
    True
  """
  if kernel not in KERNELS:
    raise ValueError(f"unknown kernel {kernel!r}; expected one of {KERNELS}.")
  if qz.ndim != 2 or qz.shape != pz.shape:
    raise ValueError(f"qz and pz must both be (n, d); got {qz.shape} and {pz.shape}.")
  n, d = qz.shape
  if n < 2:
    raise ValueError(f"mmd needs at least 2 samples, got n={n}.")
  d_qq = sq_distances(qz, qz)
  d_pp = sq_distances(pz, pz)
  d_qp = sq_distances(qz, pz)
  if kernel == "rbf":
    s2 = rbf_bandwidth(d_qq, d_qp)
    return _mmd_terms(jnp.exp(-d_qq / (2 * s2)), jnp.exp(-d_pp / (2 * s2)),
                      jnp.exp(-d_qp / (2 * s2)))
  c_base = 2.0 * d * jnp.square(jnp.asarray(prior_scale, jnp.float32))
  stat = 0.0
  for s in IMQ_SCALES:
    c = c_base * s
    stat = stat + _mmd_terms(c / (c + d_qq), c / (c + d_pp), c / (c + d_qp))
  return stat


def critic_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """Binary cross-entropy of a critic: prior samples (real) → 1, codes (fake) → 0."""
  return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def generator_loss(fake_logits: jax.Array) -> jax.Array:
  """The encoder's non-saturating loss: −log D(q(z)), i.e. BCE of codes against 1."""
  return jnp.mean(jax.nn.softplus(-fake_logits))


def critic_accuracy(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """Fraction of real and fake inputs the critic classifies correctly.

  Example:

    >>> float(critic_accuracy(jnp.array([1.0, -1.0]), jnp.array([-2.0, -3.0])))
    0.75
  """
  return 0.5 * (jnp.mean(real_logits > 0) + jnp.mean(fake_logits < 0))


def logits_and_r1(logits_fn, x: jax.Array, real: jax.Array) -> tuple[jax.Array, jax.Array]:
  """A critic's logits of ``x`` and its R1 penalty, from one forward pass.

  R1 (Mescheder et al. 2018, "Which training methods for GANs do actually converge?") is
  the mean squared norm of the logit's gradient with respect to the input, over the real
  inputs: E_real ‖∇_x D(x)‖². Added to the critic's loss as γ/2 · R1, it damps the
  oscillation of the critic around the equilibrium, where the data's (here the prior's)
  density has no gradient to learn.

  Args:
    logits_fn: ``(n, ...) -> (n,)`` logits, row by row independent (no batch statistics);
      differentiable twice (the penalty's gradient flows through the input gradient).
    x: the critic's inputs, real and fake together.
    real: ``(n,)`` mask of the real rows (1.0) among ``x``.

  Returns:
    ``(logits, r1)``: ``logits_fn(x)`` and the penalty (a scalar).

  Example: ``D(x) = Σ x²`` has ``∇D(x) = 2x``; the real rows' squared norms are 4 and 16.

    >>> x = jnp.array([[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    >>> logits, r1 = logits_and_r1(lambda v: jnp.sum(v ** 2, -1), x, jnp.array([1.0, 1.0, 0.0]))
    >>> logits.tolist(), float(r1)
    ([1.0, 4.0, 50.0], 10.0)
  """
  logits, pull_back = jax.vjp(logits_fn, x)
  (grads,) = pull_back(real.astype(logits.dtype))  # row i: ∇D(x_i) for the real rows, else 0
  sq = jnp.sum(jnp.reshape(grads, (grads.shape[0], -1)) ** 2, axis=-1)
  return logits, jnp.sum(sq) / jnp.maximum(jnp.sum(real), 1.0)
