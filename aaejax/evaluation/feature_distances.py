"""Distances between two sets of image features: Fréchet distance (FID-style) and KID.

Both compare the features of generated images with those of real ones, in the
embedding of a feature network (:mod:`aaejax.evaluation.feature_nets`):

- :func:`frechet_distance` of the gaussians fitted by :func:`gaussian_stats`
  (Heusel et al. 2017): ``|μ₁ − μ₂|² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^{1/2})``;
- :func:`kernel_distance`, the kernel inception distance (Bińkowski et al. 2018):
  the unbiased MMD² with the cubic polynomial kernel, averaged over random subsets.

Precision: the covariances and the Fréchet distance are computed in float64 on
the host (numpy). In float32 the trace term of 2048-D covariances loses about
three digits: Tr Σ₁ + Tr Σ₂ and 2 Tr (Σ₁Σ₂)^{1/2} are large and nearly cancel
for close distributions. KID runs in float32 on device (its kernel values are
O(1) and the estimate is a mean of them).

The real data's features and statistics do not change between evals: :func:`cached`
computes them once and keeps them on disk (in the cache directory of
:func:`cache_dir`) and in process, keyed by whatever identifies them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from aaejax.data import downloads

CACHE_DIR_ENV = downloads.CACHE_DIR_ENV

_MEMORY: dict[str, dict[str, np.ndarray]] = {}


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
  """Mean and (unbiased, ``ddof=1``) covariance of ``features``, in float64 on the host.

  Args:
    features: (n, d) array (numpy or device), n ≥ 2.

  Returns:
    ``(mu, sigma)``: (d,) mean and (d, d) covariance, float64.

  Example:
    >>> mu, sigma = gaussian_stats(np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]]))
    >>> mu.tolist(), sigma.tolist()
    ([2.0, 1.0], [[4.0, 0.0], [0.0, 0.0]])
  """
  f = np.asarray(features, np.float64)
  if f.ndim != 2 or f.shape[0] < 2:
    raise ValueError(f"features must be an (n, d) array with n >= 2, got shape {f.shape}")
  mu = f.mean(axis=0)
  centred = f - mu
  return mu, centred.T @ centred / (f.shape[0] - 1)


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
  """The symmetric square root of a symmetric positive semi-definite matrix (eigenvalues
  below 0, rounding noise, clipped to 0)."""
  w, v = np.linalg.eigh((s + s.T) / 2)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """Fréchet (2-Wasserstein) distance² between N(μ₁, Σ₁) and N(μ₂, Σ₂), in float64.

  ``d² = |μ₁ − μ₂|² + Tr Σ₁ + Tr Σ₂ − 2 Tr (Σ₁ Σ₂)^{1/2}``, with
  ``Tr (Σ₁ Σ₂)^{1/2} = Σᵢ √λᵢ`` over the eigenvalues λᵢ of the symmetric PSD
  matrix ``Σ₁^{1/2} Σ₂ Σ₁^{1/2}`` (similar to Σ₁Σ₂, so the same eigenvalues).
  Unlike ``scipy.linalg.sqrtm(Σ₁ Σ₂)`` (pytorch-fid) this needs no ``eps`` fix
  for singular covariances (fewer samples than dimensions) and has no complex
  round-off: negative eigenvalues of rounding size are clipped to 0.

  Args:
    mu1, mu2: (d,) means.
    sigma1, sigma2: (d, d) covariances.

  Returns:
    The distance² (≥ 0 up to rounding), a float. Units: squared feature units.

  Example (1-D: (μ₁ − μ₂)² + (s₁ − s₂)²):
    >>> round(frechet_distance([0.0], [[4.0]], [3.0], [[1.0]]), 12)
    10.0
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  d = mu1.shape[0]
  if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
    raise ValueError(f"expected (d,) means and (d, d) covariances, got {mu1.shape}, "
                     f"{s1.shape}, {mu2.shape}, {s2.shape}")
  root = _sqrt_psd(s1)
  eig = np.linalg.eigvalsh(root @ s2 @ root)
  tr_sqrt = np.sqrt(np.clip(eig, 0.0, None)).sum()
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)


def _poly_kernel(a: jax.Array, b: jax.Array) -> jax.Array:
  """(m, m') cubic polynomial kernel ``(a·b / d + 1)³``."""
  return (a @ b.T / a.shape[-1] + 1.0) ** 3


def mmd2_unbiased(x: jax.Array, y: jax.Array) -> jax.Array:
  """The unbiased MMD² estimate of two equal-size samples under :func:`_poly_kernel`.

  ``1/(m(m−1)) Σ_{i≠j} [k(xᵢ,xⱼ) + k(yᵢ,yⱼ)] − 2/m² Σ_{i,j} k(xᵢ,yⱼ)``: its
  expectation is the population MMD², 0 when x and y come from one distribution
  (so it can be negative). ``x``, ``y``: (m, d) with m ≥ 2.
  """
  m = x.shape[0]
  kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
  within = (kxx.sum() - jnp.trace(kxx) + kyy.sum() - jnp.trace(kyy)) / (m * (m - 1))
  return within - 2.0 * kxy.mean()


@functools.partial(jax.jit, static_argnums=(2, 3))
def _subset_mmds(f_real, f_fake, subsets: int, m: int, rng):
  """(subsets,) unbiased MMD² of random size-``m`` subsets (without replacement)."""

  def one(key):
    kr, kf = jax.random.split(key)
    x = f_real[jax.random.permutation(kr, f_real.shape[0])[:m]]
    y = f_fake[jax.random.permutation(kf, f_fake.shape[0])[:m]]
    return mmd2_unbiased(x, y)

  return jax.lax.map(one, jax.random.split(rng, subsets))


def kernel_distance(f_real, f_fake, subsets: int = 100, subset_size: int = 1000,
                    rng: jax.Array | None = None) -> tuple[float, float]:
  """KID: the mean and spread of the unbiased MMD² (cubic kernel) over random subsets.

  The protocol of Bińkowski et al. (2018) and torch-fidelity: ``subsets`` times,
  draw m = min(``subset_size``, n_real, n_fake) rows of each set without
  replacement and take :func:`mmd2_unbiased`, with the kernel
  ``k(x, y) = (x·y / d + 1)³``. Jitted, one subset at a time on device.

  The spread is the standard deviation of the subset estimates (torch-fidelity's
  ``kernel_inception_distance_std``): the error of one m-sample estimate. The
  subsets overlap, so it is not divided by √subsets; the error of the mean is
  smaller than it. When m equals both set sizes every subset is the whole set and
  the spread is 0 (one estimate, computed ``subsets`` times): with fewer than
  ``subset_size`` rows, pass a smaller ``subset_size`` to get a spread.

  Args:
    f_real, f_fake: (n_real, d) and (n_fake, d) features, n ≥ 2.
    subsets: number of subsets.
    subset_size: rows per subset (capped by the set sizes).
    rng: a JAX key (default ``jax.random.key(0)``).

  Returns:
    ``(mean, std)``, floats in squared feature units (torch-fidelity's numbers are
    these for Inception features; papers often print them ×10³).
  """
  f_real, f_fake = jnp.asarray(f_real, jnp.float32), jnp.asarray(f_fake, jnp.float32)
  if f_real.ndim != 2 or f_fake.ndim != 2 or f_real.shape[1] != f_fake.shape[1]:
    raise ValueError(f"features must be (n, d) arrays of one d, got {f_real.shape} and "
                     f"{f_fake.shape}")
  m = min(int(subset_size), f_real.shape[0], f_fake.shape[0])
  if m < 2 or subsets < 1:
    raise ValueError(f"kernel_distance needs subsets >= 1 and at least 2 rows per subset, got "
                     f"subsets={subsets}, subset size {m} (n_real={f_real.shape[0]}, "
                     f"n_fake={f_fake.shape[0]}, subset_size={subset_size})")
  mmds = np.asarray(_subset_mmds(f_real, f_fake, int(subsets), m,
                                 jax.random.key(0) if rng is None else rng), np.float64)
  return float(mmds.mean()), float(mmds.std())


# ---- the cache of real-data features and statistics --------------------------------------


def cache_dir(config_dir: str | None = None) -> str:
  """The cache directory: ``config_dir`` if set, else ``$AAEJAX_CACHE_DIR``, else
  ``~/.cache/aaejax`` (:func:`aaejax.data.downloads.resolve_cache_dir`)."""
  return downloads.resolve_cache_dir(config_dir)


def cache_path(key: Mapping[str, Any], directory: str | None = None) -> str:
  """The ``.npz`` file of ``key`` (a JSON-able mapping): readable fields in the name, the
  digest of the whole key after them."""
  text = json.dumps(dict(key), sort_keys=True, default=str)
  digest = hashlib.sha1(text.encode()).hexdigest()[:16]
  readable = "-".join(str(key[k]) for k in ("kind", "dataset", "split", "net", "n") if k in key)
  readable = "".join(c if c.isalnum() or c in "-_=." else "_" for c in readable)
  return os.path.join(cache_dir(directory), f"fdstats-{readable}-{digest}.npz")


def cached(key: Mapping[str, Any], compute: Callable[[], Mapping[str, np.ndarray]],
           directory: str | None = None) -> dict[str, np.ndarray]:
  """``compute()``'s arrays, computed once per ``key`` and kept in process and on disk.

  Written atomically (temporary file, then ``os.replace``) to :func:`cache_path`;
  a later process with the same key reads the file. The key must name everything
  the arrays depend on (dataset, split, feature net and its weights, sample count).
  """
  path = cache_path(key, directory)
  if path in _MEMORY:
    return _MEMORY[path]
  if os.path.exists(path):
    with np.load(path) as npz:
      arrays = {k: npz[k] for k in npz.files}
  else:
    arrays = {k: np.asarray(v) for k, v in compute().items()}
    downloads.save_npz_atomic(path, arrays)
  _MEMORY[path] = arrays
  return arrays
