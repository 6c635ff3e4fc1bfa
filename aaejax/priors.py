"""Latent priors p(z) that the adversary or the kernel test matches q(z) to.

Every prior is an object with a ``sample(rng, n, labels=None)`` method returning
an ``(n, dim)`` float32 array, and attributes ``dim`` and ``num_classes``
(``None`` for priors without classes). Sampling is pure and jittable (``n`` is
static). A user-defined prior is any object with the same method and attributes;
pass it wherever a prior name is accepted, or register a factory with
:func:`register`.

Label conditioning: priors with classes accept ``labels`` (int array of shape
``(n,)``). ``labels[i] >= 0`` draws sample ``i`` from that class's component
(mixture) or segment (swiss roll); ``labels[i] < 0`` means "unlabelled" and draws
it from the whole prior.

Example:

  >>> import jax
  >>> from aaejax import priors
  >>> p = priors.get("gaussian_mixture", dim=2)
  >>> z = p.sample(jax.random.key(0), 4, labels=jax.numpy.array([0, 3, -1, 9]))
  >>> z.shape, p.num_classes
  ((4, 2), 10)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol, runtime_checkable

import jax
import jax.numpy as jnp


@runtime_checkable
class Prior(Protocol):
  """What the models need of a prior."""

  dim: int
  num_classes: int | None

  def sample(self, rng: jax.Array, n: int, labels: jax.Array | None = None) -> jax.Array:
    ...


def _check_labels(labels, n: int, num_classes: int | None, name: str):
  if labels is None:
    return None
  if num_classes is None:
    raise ValueError(f"prior {name!r} has no classes; it cannot be sampled with labels.")
  labels = jnp.asarray(labels)
  if labels.shape != (n,):
    raise ValueError(f"labels must have shape ({n},), got {labels.shape}.")
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"labels must be integers, got dtype {labels.dtype}.")
  return labels


def _components(rng, n, labels, num_classes):
  """Component index per sample: the label, or a uniform draw where label < 0."""
  random = jax.random.randint(rng, (n,), 0, num_classes)
  return random if labels is None else jnp.where(labels >= 0, labels, random)


@dataclasses.dataclass(frozen=True)
class Gaussian:
  """Isotropic gaussian N(0, std² I).

  Attributes:
    dim: latent dimension.
    std: standard deviation of every coordinate (default 1.0).
  """

  dim: int
  std: float = 1.0
  num_classes: None = None

  def sample(self, rng, n, labels=None):
    _check_labels(labels, n, None, "gaussian")
    return self.std * jax.random.normal(rng, (n, self.dim), jnp.float32)


@dataclasses.dataclass(frozen=True)
class Uniform:
  """Uniform on the box [low, high]^dim (default [-1, 1]^dim)."""

  dim: int
  low: float = -1.0
  high: float = 1.0
  num_classes: None = None

  def sample(self, rng, n, labels=None):
    _check_labels(labels, n, None, "uniform")
    return jax.random.uniform(rng, (n, self.dim), jnp.float32, self.low, self.high)


@dataclasses.dataclass(frozen=True)
class GaussianMixture:
  """Mixture of ``num_classes`` gaussians, as in the AAE paper's Fig. 2 and 4.

  Component k has its mean on a circle of radius ``radius`` in the first two
  coordinates, at angle 2πk/num_classes, and is elongated radially: standard
  deviation ``radial_std`` along the radius and ``tangential_std`` across it.
  Coordinates beyond the first two (when ``dim > 2``) are N(0, tangential_std²).
  Components are equally likely.

  Defaults: num_classes 10, radius 4.0, radial_std 1.0, tangential_std 0.2.
  """

  dim: int = 2
  num_classes: int = 10
  radius: float = 4.0
  radial_std: float = 1.0
  tangential_std: float = 0.2

  def means(self) -> jax.Array:
    """(num_classes, dim) component means."""
    angle = self.angles()
    m = self.radius * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=1)
    return jnp.pad(m, ((0, 0), (0, self.dim - 2)))

  def angles(self) -> jax.Array:
    return 2 * jnp.pi * jnp.arange(self.num_classes, dtype=jnp.float32) / self.num_classes

  def sample(self, rng, n, labels=None):
    labels = _check_labels(labels, n, self.num_classes, "gaussian_mixture")
    k_rng, e_rng = jax.random.split(rng)
    comp = _components(k_rng, n, labels, self.num_classes)
    eps = jax.random.normal(e_rng, (n, self.dim), jnp.float32)
    radial = self.radius + self.radial_std * eps[:, 0]
    tangential = self.tangential_std * eps[:, 1]
    angle = self.angles()[comp]
    c, s = jnp.cos(angle), jnp.sin(angle)
    xy = jnp.stack([c * radial - s * tangential, s * radial + c * tangential], axis=1)
    return jnp.concatenate([xy, self.tangential_std * eps[:, 2:]], axis=1)


@dataclasses.dataclass(frozen=True)
class SwissRoll:
  """2-D swiss roll, as in the AAE paper's Fig. 2 and 4.

  A position u ~ U(0, 1) along the roll maps to angle ``turns``·2π·√u and radius
  ``radius``·√u (so the density per unit area is roughly uniform along the roll),
  plus N(0, noise²) on each coordinate. Class k of ``num_classes`` owns the
  segment u ∈ [k/num_classes, (k+1)/num_classes): class 0 is the first 10% of the
  roll (from its centre), and so on.

  Defaults: num_classes 10, turns 2.0, radius 3.0, noise 0.0.
  """

  dim: int = 2
  num_classes: int = 10
  turns: float = 2.0
  radius: float = 3.0
  noise: float = 0.0

  def __post_init__(self):
    if self.dim != 2:
      raise ValueError(f"swiss_roll is 2-D; got dim={self.dim}.")

  def position(self, u: jax.Array) -> jax.Array:
    """Maps positions u in [0, 1] along the roll to (len(u), 2) points."""
    t = jnp.sqrt(u)
    angle = 2 * jnp.pi * self.turns * t
    return self.radius * t[:, None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=1)

  def sample(self, rng, n, labels=None):
    labels = _check_labels(labels, n, self.num_classes, "swiss_roll")
    k_rng, u_rng, e_rng = jax.random.split(rng, 3)
    comp = _components(k_rng, n, labels, self.num_classes)
    u = (comp + jax.random.uniform(u_rng, (n,), jnp.float32)) / self.num_classes
    z = self.position(u)
    if self.noise:
      z = z + self.noise * jax.random.normal(e_rng, z.shape, jnp.float32)
    return z


_REGISTRY: dict[str, Callable[..., Any]] = {
    "gaussian": Gaussian,
    "gaussian_mixture": GaussianMixture,
    "swiss_roll": SwissRoll,
    "uniform": Uniform,
}


def register(name: str, factory: Callable[..., Any]) -> None:
  """Registers ``factory(dim=..., num_classes=..., **options)`` under ``name``."""
  _REGISTRY[name] = factory


def names() -> tuple[str, ...]:
  return tuple(sorted(_REGISTRY))


def get(name: str | Prior, dim: int = 2, num_classes: int | None = None, **options) -> Prior:
  """Returns the prior called ``name`` (or ``name`` itself if it is a prior object).

  Args:
    name: one of :func:`names` (``"gaussian"``, ``"gaussian_mixture"``,
      ``"swiss_roll"``, ``"uniform"`` and any registered name), or an object with
      a ``sample`` method, returned as is.
    dim: latent dimension (default 2).
    num_classes: number of components/segments for priors with classes (default
      10); must be left ``None`` for priors without classes.
    **options: the prior's own options (see each class), e.g. ``std=2.0``.
  """
  if not isinstance(name, str):
    if not callable(getattr(name, "sample", None)):
      raise TypeError(f"a prior must be a name or have a sample method; got {name!r}.")
    return name
  if name not in _REGISTRY:
    raise ValueError(f"unknown prior {name!r}; known priors: {', '.join(names())}.")
  if not isinstance(dim, int) or dim < 1:
    raise ValueError(f"dim must be a positive int, got {dim!r}.")
  factory = _REGISTRY[name]
  kwargs = dict(dim=dim, **options)
  if name in ("gaussian", "uniform"):
    if num_classes is not None:
      raise ValueError(f"prior {name!r} has no classes; got num_classes={num_classes}.")
  elif num_classes is not None:
    if num_classes < 1:
      raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
    kwargs["num_classes"] = num_classes
  if name == "gaussian_mixture" and dim < 2:
    raise ValueError("gaussian_mixture needs dim >= 2.")
  return factory(**kwargs)
