"""The dimensionality-reduction AAE (Makhzani et al. 2015, Sec. 7, Fig. 10–11).

The representation r = y·W_c + z: learned cluster heads W_c (:class:`ClusterHeads`) kept at
least η apart by a hinge cost (:func:`head_hinge`) in the reconstruction phase, on top of the
categorical AAE (:class:`~aaejax.models.aae_categorical.CategoricalAAE`).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aaejax.models.aae_categorical import CategoricalAAE


def spread_heads(num_clusters: int, dim: int, spacing: float) -> np.ndarray:
  """(num_clusters, dim) points at least ``spacing`` apart: a regular polygon.

  The vertices of a regular ``num_clusters``-gon of side ``spacing`` in the first
  two coordinates (on a line in 1-D), the other coordinates 0: every pair of
  points is at least ``spacing`` apart, adjacent vertices exactly.
  """
  if dim == 1:
    return (spacing * (np.arange(num_clusters) - (num_clusters - 1) / 2))[:, None]
  angle = 2 * np.pi * np.arange(num_clusters) / num_clusters
  radius = spacing / (2 * np.sin(np.pi / num_clusters))
  heads = np.zeros((num_clusters, dim))
  heads[:, 0], heads[:, 1] = radius * np.cos(angle), radius * np.sin(angle)
  return heads


class ClusterHeads(nn.Module):
  """W_c of the dimensionality-reduction AAE: y ↦ y·W_c, W_c of shape (num_clusters, dim).

  Initialised by :func:`spread_heads` at ``init_spacing`` apart (the hinge's
  margin): Adam moves a head by about the learning rate per step, so heads that
  start close (e.g. drawn at random) take thousands of steps to reach the margin
  while the encoder learns on a representation whose clusters overlap.
  """

  num_clusters: int
  dim: int
  init_spacing: float = 6.0

  @nn.compact
  def __call__(self, y, train: bool = True):
    del train
    heads = spread_heads(self.num_clusters, self.dim, self.init_spacing)
    return y @ self.param("heads", lambda *_: jnp.asarray(heads, jnp.float32))


def head_hinge(heads: jax.Array, margin) -> tuple[jax.Array, jax.Array]:
  """(Σ_{i<j} max(0, margin − ‖h_i − h_j‖), min_{i<j} ‖h_i − h_j‖) over the rows h_i of heads."""
  diff = heads[:, None, :] - heads[None, :, :]
  dist = jnp.sqrt(jnp.sum(jnp.square(diff), axis=-1) + 1e-12)  # finite gradient at 0
  i, j = np.triu_indices(heads.shape[0], 1)
  pairs = dist[i, j]
  return jnp.sum(jax.nn.relu(margin - pairs)), jnp.min(pairs)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class DimReductionAAE(CategoricalAAE):
  """Dimensionality reduction with cluster heads (Fig. 10, 11).

  The representation is r = y·W_c + z (``latent_dim``-dimensional, 2 by
  default): W_c, a learned (num_clusters, latent_dim) matrix, maps each category
  to a cluster head, and z (matched to the gaussian prior) adds the style around
  it. The decoder gets r. The reconstruction phase also trains W_c and adds the
  hinge cost

    head_weight · Σ_{i<j} max(0, η − ‖W_i − W_j‖),   η = ``head_margin``,

  which is zero once every two heads are at least η apart. With labels
  (``num_labeled`` > 0, then 10 clusters) a supervised phase trains q(y|x) as in
  :class:`SemiSupervisedAAE` (``eval/error_rate``); without, the clusters are
  evaluated as :class:`ClusteringAAE`'s (``eval/cluster_error``).

  Attributes:
    head_init_spacing: the heads start at the vertices of a regular polygon of
      this side (:func:`spread_heads`); the config sets it to ``head_margin``.
  """

  latent_dim: int = 2
  head_init_spacing: float = 6.0

  @classmethod
  def from_config(cls, config, image_shape, **fields):
    return super().from_config(config, image_shape,
                               head_init_spacing=float(config.get("head_margin", 6.0)), **fields)

  def phases(self):
    return tuple(dataclasses.replace(p, trains=("encoder", "decoder", "cluster_heads"))
                 if p.name == "recon" else p for p in super().phases())

  def default_hparams(self):
    return dict(super().default_hparams(), head_margin=6.0, head_weight=1.0)

  def networks(self):
    return {**super().networks(),
            "cluster_heads": (ClusterHeads(self.num_categories, self.latent_dim,
                                           self.head_init_spacing), ((2, self.num_categories),))}

  def decoder_input_dim(self):
    return self.latent_dim

  def representation(self, params, y, z):
    """r = y·W_c + z."""
    return self.apply("cluster_heads", params, {}, y, train=False)[0] + z

  def recon_regularizer(self, inputs, params, heads):
    del heads
    hp = inputs.hparams
    loss, min_dist = head_hinge(params["cluster_heads"]["heads"], hp["head_margin"])
    return hp["head_weight"] * loss, {"head_penalty": loss,
                                                 "min_head_distance": min_dist}
