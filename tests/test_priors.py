import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aaejax import priors

KEY = jax.random.key(0)


@pytest.mark.parametrize("name,dim", [("gaussian", 3), ("gaussian_mixture", 2),
                                      ("gaussian_mixture", 5), ("swiss_roll", 2), ("uniform", 4)])
def test_shapes_dtype_and_jit(name, dim):
  p = priors.get(name, dim=dim)
  z = jax.jit(p.sample, static_argnums=1)(KEY, 64)
  assert z.shape == (64, dim) and z.dtype == jnp.float32 and p.dim == dim
  assert np.isfinite(np.asarray(z)).all()


def test_gaussian_and_uniform_statistics():
  z = np.asarray(priors.get("gaussian", dim=4, std=2.0).sample(KEY, 100_000))
  np.testing.assert_allclose(z.mean(0), 0, atol=0.03)
  np.testing.assert_allclose(z.std(0), 2.0, rtol=0.02)
  u = np.asarray(priors.get("uniform", dim=2).sample(KEY, 100_000))
  assert u.min() >= -1 and u.max() <= 1
  np.testing.assert_allclose(u.var(0), 1 / 3, rtol=0.02)


def test_gaussian_mixture_components_and_elongation():
  p = priors.get("gaussian_mixture", dim=2)
  assert p.num_classes == 10
  n = 20_000
  labels = jnp.arange(n) % 10
  z = np.asarray(p.sample(KEY, n, labels))
  means = np.asarray(p.means())
  assert means.shape == (10, 2)
  np.testing.assert_allclose(np.linalg.norm(means, axis=1), p.radius, rtol=1e-5)
  for k in (0, 3, 7):
    zk = z[np.asarray(labels) == k]
    np.testing.assert_allclose(zk.mean(0), means[k], atol=0.05)
    radial = means[k] / np.linalg.norm(means[k])
    tangential = np.array([-radial[1], radial[0]])
    np.testing.assert_allclose((zk @ radial).std(), p.radial_std, rtol=0.05)
    np.testing.assert_allclose((zk @ tangential).std(), p.tangential_std, rtol=0.05)
  # Without labels every component is used about equally.
  free = np.asarray(p.sample(KEY, n))
  nearest = np.argmin(((free[:, None] - means[None]) ** 2).sum(-1), axis=1)
  np.testing.assert_allclose(np.bincount(nearest, minlength=10) / n, 0.1, atol=0.01)


def test_swiss_roll_segments_follow_labels():
  p = priors.get("swiss_roll")
  n = 5000
  z0 = np.asarray(p.sample(KEY, n, jnp.zeros(n, jnp.int32)))
  z9 = np.asarray(p.sample(KEY, n, jnp.full(n, 9, jnp.int32)))
  r0, r9 = np.linalg.norm(z0, axis=1), np.linalg.norm(z9, axis=1)
  # class 0 is the first tenth of the roll (radius <= 3·sqrt(0.1)), class 9 the last.
  assert r0.max() <= p.radius * np.sqrt(0.1) + 1e-5
  assert r9.min() >= p.radius * np.sqrt(0.9) - 1e-5


def test_unlabelled_entries_draw_from_the_whole_prior():
  p = priors.get("gaussian_mixture")
  labels = jnp.concatenate([jnp.full(5000, 2), jnp.full(5000, -1)])
  z = np.asarray(p.sample(KEY, 10_000, labels))
  means = np.asarray(p.means())
  nearest = np.argmin(((z[:, None] - means[None]) ** 2).sum(-1), axis=1)
  assert (nearest[:5000] == 2).mean() > 0.99
  assert len(np.unique(nearest[5000:])) == 10


def test_user_prior_and_register():
  class Ring:
    dim, num_classes = 2, None

    def sample(self, rng, n, labels=None):
      a = jax.random.uniform(rng, (n,), maxval=2 * jnp.pi)
      return jnp.stack([jnp.cos(a), jnp.sin(a)], 1)

  ring = Ring()
  assert priors.get(ring) is ring
  priors.register("ring", lambda dim, **kw: ring)
  assert priors.get("ring") is ring and "ring" in priors.names()


def test_bad_inputs():
  with pytest.raises(ValueError, match="unknown prior"):
    priors.get("cauchy")
  with pytest.raises(ValueError, match="2-D"):
    priors.get("swiss_roll", dim=3)
  with pytest.raises(ValueError, match="no classes"):
    priors.get("gaussian", dim=2, num_classes=10)
  with pytest.raises(ValueError, match="no classes"):
    priors.get("gaussian", dim=2).sample(KEY, 4, jnp.zeros(4, jnp.int32))
  with pytest.raises(ValueError, match="shape"):
    priors.get("gaussian_mixture").sample(KEY, 4, jnp.zeros(3, jnp.int32))
  with pytest.raises(TypeError, match="integers"):
    priors.get("gaussian_mixture").sample(KEY, 4, jnp.zeros(4))
  with pytest.raises(TypeError, match="sample method"):
    priors.get(object())
