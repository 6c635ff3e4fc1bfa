"""The papers' figures of a trained model, chosen from what it can do.

Like :mod:`aaejax.evaluation`, a registry: each figure is registered with the
capabilities it needs and drawn (with :mod:`aaejax.evaluation.plots`) for every model that
declares them; a family lists figures of its own in its file
(:meth:`aaejax.core.Model.figures`). :func:`make_figures` writes them all into a
directory.

=========================  ===========================  ====================================
figure                     needs                        what
=========================  ===========================  ====================================
latent_qz.png              encode                       test codes coloured by label
prior_pz.png               encode, prior                prior samples (by class, if any)
manifold.png               decode, prior (2-D input)    the decoder over a 20×20 grid
reconstructions.png        reconstruct                  test images and reconstructions
samples.png                generate                     generated images
components_manifold.png /  label_prior                  mixture components 0–2 / a walk
roll_walk.png                                           along the swiss roll
style_grid.png             style                        a test image's style with each class
cluster_heads.png          categorical                  each category's head and members
representation_manifold    categorical (2-D input)      a grid over the test representations
=========================  ===========================  ====================================
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from aaejax import core, data, priors as priors_lib
from aaejax.evaluation import plots

NUM_EXAMPLES = 5000  # test images drawn in the scatter plots


@dataclasses.dataclass(frozen=True)
class Figure:
  name: str
  needs: frozenset[str]
  fn: Callable[["Canvas"], list[str]]
  applies: Callable[[Any], bool] = lambda model: True


REGISTRY: dict[str, Figure] = {}


def register(name: str, needs, applies=None):
  """Decorator: registers ``fn(canvas) -> [paths]`` as figure ``name``."""

  def wrap(fn):
    REGISTRY[name] = Figure(name, frozenset(needs), fn, applies or (lambda model: True))
    return fn

  return wrap


@dataclasses.dataclass
class Canvas:
  """What a figure sees: model, state, test arrays, output directory, a key."""

  model: Any
  state: Any
  test: dict
  directory: str
  rng: jax.Array
  splits: dict = dataclasses.field(default_factory=dict)  # other eval splits by name

  def path(self, name: str) -> str:
    return os.path.join(self.directory, name)

  @functools.cached_property
  def images(self):
    return self.test["image"][:NUM_EXAMPLES]

  @functools.cached_property
  def labels(self) -> np.ndarray | None:
    """The test labels of :attr:`images`; None for a data set without labels (CelebA)."""
    if "label" not in self.test:
      return None
    return np.asarray(self.test["label"][:NUM_EXAMPLES])

  @functools.cached_property
  def heads(self):
    return _encode(self.model, self.state, self.images)

  def decode(self, codes) -> np.ndarray:
    return np.asarray(_decode(self.model, self.state, jnp.asarray(codes, jnp.float32)))

  @functools.cached_property
  def prior_samples(self):
    """(codes, labels or None): NUM_EXAMPLES prior samples, by class for priors with classes."""
    k = self.model.prior.num_classes
    r = jax.random.split(self.rng)
    labels = jax.random.randint(r[0], (NUM_EXAMPLES,), 0, k) if k else None
    pz = np.asarray(self.model.sample_prior(self.state, r[1], NUM_EXAMPLES, labels))
    return pz, None if labels is None else np.asarray(labels)


@functools.partial(jax.jit, static_argnums=0)
def _encode(model, state, images):
  return model.encode(state, images)


@functools.partial(jax.jit, static_argnums=0)
def _decode(model, state, codes):
  return model.decode(state, codes)


def make_figures(model, state, directory: str, test, rng, skip=(), splits=None) -> list[str]:
  """Draws every registered figure ``model`` can make and the model's own
  (:meth:`aaejax.core.Model.figures`), less ``skip``, into ``directory``. ``splits``: the
  model's other eval splits by name (:attr:`Canvas.splits`)."""
  canvas = Canvas(model, state, test, directory, rng, dict(splits or {}))
  caps = model.capabilities()
  paths = []
  for fig in (*REGISTRY.values(), *model.figures()):
    if fig.needs <= caps and fig.name not in skip and fig.applies(model):
      paths.extend(fig.fn(canvas))
  return paths


# ---- every model ---------------------------------------------------------------------------


@register("latent_qz", {core.ENCODE})
def _latent_qz(c):
  z = np.asarray(c.model.latent(c.heads))
  return [plots.latent_scatter(c.path("latent_qz.png"), z, c.labels, title="q(z), test set")]


@register("prior_pz", {core.ENCODE, core.PRIOR})
def _prior_pz(c):
  pz, labels = c.prior_samples
  return [plots.prior_scatter(c.path("prior_pz.png"), pz, labels)]


@register("manifold", {core.DECODE, core.PRIOR}, applies=lambda m: m.decoder_input_dim() == 2)
def _manifold(c):
  n = 20
  if isinstance(c.model.prior, priors_lib.Gaussian):
    grid = plots.gaussian_percentile_grid(n, std=float(c.state.hparams["prior_scale"])
                                          * c.model.prior.std)
  else:
    lo, hi = np.percentile(c.prior_samples[0], [1, 99], axis=0)
    grid = plots.box_grid(n, lo, hi)
  return [plots.manifold(c.path("manifold.png"), c.decode(grid), n, title="decoded grid")]


@register("reconstructions", {core.RECONSTRUCT})
def _reconstructions(c):
  originals = np.asarray(data.to_float(c.images[:50]))
  labels = None if c.labels is None else jnp.asarray(c.labels)
  recons = c.decode(c.model.decoder_input(c.heads, labels)[:50])
  pairs = np.stack([originals, recons], 1).reshape(-1, *originals.shape[1:])
  return [plots.image_grid(c.path("reconstructions.png"), pairs, 10,
                           title="test images (odd columns) and reconstructions (even)")]


@register("samples", {core.GENERATE})
def _samples(c):
  images = np.asarray(c.model.generate(c.state, jax.random.fold_in(c.rng, 2), 100))
  return [plots.image_grid(c.path("samples.png"), images, 10, title="generated images")]


# ---- label-aware AAEs ------------------------------------------------------------------------


@register("label_prior", {core.LABEL_PRIOR})
def _label_prior(c):
  """Mixture: the manifold of components 0–2; swiss roll: 100 codes walking along the roll."""
  p, scale = c.model.prior, float(c.state.hparams["prior_scale"])
  if isinstance(p, priors_lib.SwissRoll):
    u = (np.arange(100) + 0.5) / 100
    codes = scale * np.asarray(p.position(jnp.asarray(u, jnp.float32)))
    return [plots.image_grid(c.path("roll_walk.png"), c.decode(codes), 10,
                             title="decoded walk along the swiss roll",
                             row_titles=[str(k) for k in range(p.num_classes)])]
  radial = p.radius + p.radial_std * np.linspace(-2.0, 2.0, 10)
  tangential = p.tangential_std * np.linspace(-2.0, 2.0, 5)
  codes, titles = [], []
  for k in range(min(3, p.num_classes)):
    angle = float(p.angles()[k])
    along, across = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle),
                                                                         np.cos(angle)])
    for t in tangential:
      codes.append(radial[:, None] * along + t * across)
      titles.append(f"{k}: {t / p.tangential_std:+.0f}σ")
  codes = scale * np.pad(np.concatenate(codes), ((0, 0), (0, c.model.latent_dim - 2)))
  return [plots.image_grid(c.path("components_manifold.png"), c.decode(codes), 10,
                           title="components 0-2: radius (columns) × tangential offset (rows)",
                           row_titles=titles)]


@register("style_grid", {core.STYLE})
def _style_grid(c):
  """Row i holds test image i, then its style z decoded with each class."""
  k = c.model.num_classes
  images = np.asarray(c.test["image"][:10])
  z = np.asarray(c.heads["z"][:10])
  codes = np.concatenate([np.repeat(z, k, axis=0), np.tile(np.eye(k), (len(z), 1))], axis=1)
  decoded = c.decode(codes).reshape(len(z), k, *images.shape[1:])
  grid = np.concatenate([np.asarray(data.to_float(images))[:, None], decoded], axis=1)
  return [plots.image_grid(c.path("style_grid.png"), grid.reshape(-1, *grid.shape[2:]), k + 1,
                           title="style z of the test image (left), decoded with each class",
                           col_titles=["input"] + [str(j) for j in range(k)])]


@register("cluster_heads", {core.CATEGORICAL})
def _cluster_heads(c):
  """Per category, its head r(one-hot, z = 0) decoded, then its first 10 test members."""
  k = c.model.num_categories
  heads = c.model.representation(c.state.params, jnp.eye(k), jnp.zeros((k, c.model.latent_dim)))
  head_images = c.decode(heads)
  images = np.asarray(data.to_float(c.images))
  cluster = np.argmax(np.asarray(c.heads["y_logits"]), axis=-1)
  rows = []
  for j in range(k):
    members = images[cluster == j][:10]
    blank = np.ones((10 - len(members), *images.shape[1:]), np.float32)
    rows.append(np.concatenate([head_images[j:j + 1], members, blank]))
  return [plots.image_grid(c.path("cluster_heads.png"), np.concatenate(rows), 11,
                           title="decoded category head (left, z = 0) and test members",
                           row_titles=[str(j) for j in range(k)])]


@register("representation_manifold", {core.CATEGORICAL},
          applies=lambda m: m.decoder_input_dim() == 2)
def _representation_manifold(c):
  r = np.asarray(c.model.latent(c.heads))
  lo, hi = np.percentile(r, [1, 99], axis=0)
  return [plots.image_grid(c.path("representation_manifold.png"),
                           c.decode(plots.box_grid(20, lo, hi)), 20,
                           title="decoded grid over the test representations")]
