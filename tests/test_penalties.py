import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aaejax import penalties


def numpy_mmd(qz, pz, kernel, prior_scale=1.0):
  """Independent float64 implementation of the WAE authors' estimator."""
  qz, pz = np.asarray(qz, np.float64), np.asarray(pz, np.float64)
  n, d = qz.shape
  dist = lambda a, b: ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
  d_qq, d_pp, d_qp = dist(qz, qz), dist(pz, pz), dist(qz, pz)
  off = ~np.eye(n, dtype=bool)

  def stat(k):
    return ((k(d_qq)[off].sum() + k(d_pp)[off].sum()) / (n * n - n)
            - 2 * k(d_qp).sum() / (n * n))

  if kernel == "rbf":
    half = (n * n - n) // 2
    s2 = np.sort(d_qp.ravel())[::-1][half - 1] + np.sort(d_qq.ravel())[::-1][half - 1]
    return stat(lambda d: np.exp(-d / (2 * s2)))
  c_base = 2 * d * prior_scale ** 2
  return sum(stat(lambda d, c=c_base * s: c / (c + d)) for s in (.1, .2, .5, 1., 2., 5., 10.))


@pytest.mark.parametrize("kernel,n,d,shift,scale", [
    (k, n, d, s, sc) for k, (n, d), s, sc in itertools.product(
        ("rbf", "imq"), ((2, 1), (7, 3), (100, 8), (64, 2)), (0.0, 1.5), (1.0, 2.0))])
def test_mmd_matches_numpy(kernel, n, d, shift, scale):
  rng = np.random.default_rng(n * d)
  qz = rng.normal(size=(n, d)).astype(np.float32) + shift
  pz = (scale * rng.normal(size=(n, d))).astype(np.float32)
  got = float(jax.jit(penalties.mmd, static_argnums=2)(qz, pz, kernel, scale))
  want = numpy_mmd(qz, pz, kernel, scale)
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


def test_mmd_detects_shift_and_can_be_negative():
  rng = np.random.default_rng(0)
  p = rng.normal(size=(200, 4)).astype(np.float32)
  q_same = rng.normal(size=(200, 4)).astype(np.float32)
  for kernel in penalties.KERNELS:
    same = float(penalties.mmd(q_same, p, kernel))
    shifted = float(penalties.mmd(q_same + 2.0, p, kernel))
    assert shifted > 10 * abs(same)
  # The unbiased estimator is negative for some equal-distribution batches.
  values = [float(penalties.mmd(rng.normal(size=(20, 2)), rng.normal(size=(20, 2)), "imq"))
            for _ in range(20)]
  assert min(values) < 0 < max(values)


def test_kth_largest_matches_sort_and_routes_gradient():
  rng = np.random.default_rng(1)
  for size, k in ((10, 1), (10, 10), (1000, 450), (65536, 32640)):
    x = rng.normal(size=size).astype(np.float32)
    x[: size // 10] = np.abs(x[: size // 10])  # ties and mixed signs
    assert float(penalties.kth_largest(jnp.asarray(x), k)) == np.sort(x)[::-1][k - 1]
  x = jnp.asarray([3.0, -1.0, 2.0, 5.0])
  g = jax.grad(lambda x: penalties.kth_largest(x, 2))(x)
  np.testing.assert_array_equal(g, [1.0, 0.0, 0.0, 0.0])


def test_rbf_gradient_matches_numpy_finite_difference():
  rng = np.random.default_rng(2)
  qz = rng.normal(size=(12, 3)).astype(np.float64)
  pz = rng.normal(size=(12, 3)).astype(np.float64)
  g = np.asarray(jax.grad(lambda q: penalties.mmd(q, jnp.asarray(pz, jnp.float32), "rbf"))(
      jnp.asarray(qz, jnp.float32)))
  eps = 1e-4
  for i, j in ((0, 0), (5, 2), (11, 1)):
    up, down = qz.copy(), qz.copy()
    up[i, j] += eps
    down[i, j] -= eps
    fd = (numpy_mmd(up, pz, "rbf") - numpy_mmd(down, pz, "rbf")) / (2 * eps)
    np.testing.assert_allclose(g[i, j], fd, rtol=2e-2, atol=1e-4)


def test_mmd_bad_inputs():
  z = jnp.zeros((4, 2))
  with pytest.raises(ValueError, match="unknown kernel"):
    penalties.mmd(z, z, "laplace")
  with pytest.raises(ValueError, match="must both be"):
    penalties.mmd(z, jnp.zeros((5, 2)))
  with pytest.raises(ValueError, match="at least 2"):
    penalties.mmd(z[:1], z[:1])


def test_gan_losses():
  big = jnp.full((8,), 20.0)
  assert float(penalties.critic_loss(big, -big)) < 1e-6          # perfect critic
  assert float(penalties.generator_loss(big)) < 1e-6             # fooled critic
  np.testing.assert_allclose(float(penalties.critic_loss(jnp.zeros(4), jnp.zeros(4))),
                             2 * np.log(2), rtol=1e-6)
  np.testing.assert_allclose(float(penalties.generator_loss(jnp.zeros(4))), np.log(2), rtol=1e-6)
  assert float(penalties.critic_accuracy(jnp.array([1., -1.]), jnp.array([-1., -1.]))) == 0.75


def test_r1_matches_per_example_gradients_to_second_order():
  """logits_and_r1 from one pass equals the mean of per-example ‖∇_z D(z, c)‖² over the real
  rows (the condition held fixed), and so does its gradient in the critic's parameters."""
  from aaejax.nets import networks
  critic = networks.Critic((16, 16))
  z = jax.random.normal(jax.random.key(0), (6, 2))
  cond = jax.nn.one_hot(jnp.arange(6) % 3, 3)
  params = critic.init(jax.random.key(1), z, cond)
  real = jnp.arange(6) < 4

  def one_pass(p):
    logits, r1 = penalties.logits_and_r1(lambda v: critic.apply(p, v, cond), z, real)
    return r1, logits

  def by_example(p):
    grad = jax.vmap(jax.grad(lambda v, c: critic.apply(p, v[None], c[None])[0]))(z[:4], cond[:4])
    return jnp.mean(jnp.sum(grad ** 2, axis=-1))

  (r1, logits), g1 = jax.value_and_grad(one_pass, has_aux=True)(params)
  np.testing.assert_allclose(logits, critic.apply(params, z, cond), rtol=1e-6)
  np.testing.assert_allclose(r1, by_example(params), rtol=1e-5)
  assert float(r1) > 0
  g2 = jax.grad(by_example)(params)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
