"""FLOPs of a train step: the dense/conv multiply-adds of every phase.

:func:`count` traces a function to a jaxpr (nothing is compiled or run) and
adds up ``2 · multiply-adds`` of every ``dot_general`` and
``conv_general_dilated`` in it, forward and backward, attributed to the
outermost ``jax.named_scope`` that matches one of ``scopes``
(:meth:`aaejax.models.base.Autoencoder.phase` opens one per phase). This is
the work the program asks for, after JAX's autodiff has dropped what no
gradient needs (the input gradient of a first layer, the weight gradients of
networks a phase does not train); XLA may still share some of it between
phases (common subexpressions), so the counted FLOPs are an upper bound of
the executed ones. Elementwise work (activations, Adam, the MMD's kernels) is
not counted.

:func:`mlp_step_flops` is the same count written by hand for MLPs, and
:func:`compiled_flops` XLA's own estimate of a compiled program, both used to
cross-check :func:`count`.

Example:

  >>> import jax, jax.numpy as jnp
  >>> f = lambda w, x: jnp.tanh(x @ w)            # one 16x32 @ 32x8 matmul
  >>> count(f, jnp.ones((32, 8)), jnp.ones((16, 32)))["total"]
  8192
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Iterable, Mapping, Sequence

import jax
from jax.extend import core as ext_core

OTHER = "other"


def dot_general_flops(lhs_shape: Sequence[int], rhs_shape: Sequence[int],
                      dimension_numbers) -> int:
  """2 × multiply-adds of a ``dot_general``: 2·|batch|·|contract|·|lhs free|·|rhs free|.

  Example:

    >>> dot_general_flops((16, 32), (32, 8), (((1,), (0,)), ((), ())))  # a 16x32 @ 32x8 matmul
    8192
  """
  (_, rhs_contract), (_, rhs_batch) = dimension_numbers
  rhs_free = math.prod(d for i, d in enumerate(rhs_shape)
                       if i not in rhs_contract and i not in rhs_batch)
  return 2 * math.prod(lhs_shape) * rhs_free


def conv_flops(out_shape: Sequence[int], rhs_shape: Sequence[int], dimension_numbers,
               feature_group_count: int = 1, lhs_shape: Sequence[int] | None = None,
               window_strides: Sequence[int] | None = None, padding=None,
               lhs_dilation: Sequence[int] | None = None,
               rhs_dilation: Sequence[int] | None = None) -> int:
  """2 × multiply-adds of a ``conv_general_dilated``: every output element sums ``kernel
  window × input features / groups`` products, less (given ``lhs_shape`` and the conv's
  strides, padding and dilations) the products with zeros that padding or input dilation
  put in: a transposed convolution and a strided convolution's input gradient (input
  dilation s) do 1/s² of their nominal products per axis pair, which is what any
  implementation that skips the inserted zeros (PyTorch's, sub-pixel) computes.

  >>> from jax import lax
  >>> dn = lax.conv_dimension_numbers((1, 4, 4, 1), (3, 3, 1, 1), ("NHWC", "HWIO", "NHWC"))
  >>> conv_flops((1, 4, 4, 1), (3, 3, 1, 1), dn)   # nominal: 16 outputs × 9 taps
  288
  >>> conv_flops((1, 4, 4, 1), (3, 3, 1, 1), dn, lhs_shape=(1, 4, 4, 1),
  ...            window_strides=(1, 1), padding=((1, 1), (1, 1)))  # 10 of 12 taps per axis are real
  200
  """
  del feature_group_count  # the kernel's input-feature dim is already C_in / groups
  rhs_spec = dimension_numbers.rhs_spec  # (out feature dim, in feature dim, spatial...)
  in_features = rhs_shape[rhs_spec[1]]
  window = math.prod(rhs_shape[i] for i in rhs_spec[2:])
  nominal = 2 * math.prod(out_shape) * window * in_features
  if lhs_shape is None or window_strides is None or padding is None:
    return nominal
  spatial = len(rhs_spec) - 2
  lhs_dilation = tuple(lhs_dilation or (1,) * spatial)
  rhs_dilation = tuple(rhs_dilation or (1,) * spatial)
  real = nominal
  for d in range(spatial):
    size = lhs_shape[dimension_numbers.lhs_spec[2 + d]]
    k = rhs_shape[rhs_spec[2 + d]]
    o = out_shape[dimension_numbers.out_spec[2 + d]]
    lo, dil = padding[d][0], lhs_dilation[d]
    taps = sum(1 for i in range(o) for j in range(k)
               if 0 <= (p := i * window_strides[d] + j * rhs_dilation[d] - lo) <= (size - 1) * dil
               and p % dil == 0)
    real = real * taps // (o * k)
  return real


def _subjaxprs(params: Mapping[str, Any]) -> Iterable[tuple[Any, int, bool]]:
  """(jaxpr, multiplier, is_branch) of every sub-program of an equation."""
  length = params.get("length", 1) if "length" in params else 1
  for key, value in params.items():
    values = value if isinstance(value, (tuple, list)) else (value,)
    for v in values:
      if isinstance(v, ext_core.ClosedJaxpr):
        v = v.jaxpr
      if isinstance(v, ext_core.Jaxpr):
        yield v, (length if key == "jaxpr" else 1), key == "branches"


def _scope_of(name_stack: str, scopes: Sequence[str]) -> str | None:
  best = None
  for s in scopes:
    m = re.search(rf"(?<![\w]){re.escape(s)}(?![\w])", name_stack)
    if m and (best is None or m.start() < best[0]):
      best = (m.start(), s)
  return None if best is None else best[1]


def jaxpr_flops(jaxpr, scopes: Sequence[str] = (), prefix: str = "",
                scope: str | None = None) -> dict[str, int]:
  """FLOPs of a (closed) jaxpr by scope (``"other"`` outside every scope in ``scopes``).

  Sub-programs are followed: ``pjit``/``custom_*`` calls once, ``scan`` bodies
  ``length`` times, ``cond`` the costliest branch, ``while`` bodies once (their
  trip count is not static).

  Example:

    >>> import jax.numpy as jnp
    >>> f = lambda w, x: jax.lax.scan(lambda c, _: (c @ w, None), x, None, length=5)[0]
    >>> jaxpr_flops(jax.make_jaxpr(f)(jnp.ones((8, 8)), jnp.ones((4, 8))))  # 5 x 2·4·8·8
    {'other': 2560}
  """
  if isinstance(jaxpr, ext_core.ClosedJaxpr):
    jaxpr = jaxpr.jaxpr
  out: dict[str, int] = {}

  def add(key, n):
    out[key] = out.get(key, 0) + n

  for eqn in jaxpr.eqns:
    stack = prefix + "/" + str(eqn.source_info.name_stack)
    here = scope or _scope_of(stack, scopes) or None
    name = eqn.primitive.name
    if name == "dot_general":
      add(here or OTHER, dot_general_flops(eqn.invars[0].aval.shape, eqn.invars[1].aval.shape,
                                           eqn.params["dimension_numbers"]))
    elif name == "conv_general_dilated":
      q = eqn.params
      add(here or OTHER, conv_flops(eqn.outvars[0].aval.shape, eqn.invars[1].aval.shape,
                                    q["dimension_numbers"], q.get("feature_group_count", 1),
                                    eqn.invars[0].aval.shape, q["window_strides"], q["padding"],
                                    q["lhs_dilation"], q["rhs_dilation"]))
    branches = []
    for sub, mult, is_branch in _subjaxprs(eqn.params):
      sub_flops = jaxpr_flops(sub, scopes, stack, here)
      if is_branch:
        branches.append(sub_flops)
      else:
        for k, v in sub_flops.items():
          add(k, mult * v)
    if branches:
      for k, v in max(branches, key=lambda b: sum(b.values())).items():
        add(k, v)
  return out


def count(fn: Callable, *args, scopes: Sequence[str] = (), **kwargs) -> dict[str, Any]:
  """Traces ``fn(*args, **kwargs)`` and counts its dense/conv FLOPs.

  Returns ``{"total": int, "by_scope": {scope: int}}``; ``by_scope`` has one entry
  per name in ``scopes`` that has FLOPs, and ``"other"`` for the rest.
  """
  closed = jax.make_jaxpr(fn)(*args, **kwargs)
  by_scope = jaxpr_flops(closed, tuple(scopes))
  return {"total": sum(by_scope.values()), "by_scope": by_scope}


def step_flops(model, state, batch, rng) -> dict[str, Any]:
  """FLOPs of ``model.train_step(state, batch, rng)``, by phase (see :func:`count`)."""
  return count(model.train_step, state, batch, rng, scopes=tuple(model.phase_paths()))


def compiled_flops(compiled) -> float | None:
  """XLA's FLOP estimate of a compiled program (``jit(f).lower(...).compile()``), if any."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # noqa: BLE001 — not every backend implements it
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  if not analysis or "flops" not in analysis:
    return None
  return float(analysis["flops"])


# ---- the same count by hand, for MLPs ---------------------------------------------------


def mlp_macs(sizes: Sequence[int]) -> int:
  """Multiply-adds of one example through dense layers ``sizes[0] -> sizes[1] -> ...``.

  Example:

    >>> mlp_macs([784, 100, 10])  # 784·100 + 100·10
    79400
  """
  return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def mlp_backward_macs(sizes: Sequence[int], weight_grads: bool = True,
                      input_grad: bool = True) -> int:
  """Multiply-adds of one example's backward pass through an MLP.

  Each layer costs one matmul for its weight gradient (if ``weight_grads``) and
  one for the gradient of its input — except the first layer's input when
  ``input_grad`` is false (nothing upstream needs it).

  Example:

    >>> mlp_backward_macs([784, 100, 10], input_grad=False)  # 79400 + 100·10
    80400
  """
  layers = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
  macs = sum(layers) if weight_grads else 0
  macs += sum(layers) - (0 if input_grad else layers[0])
  return macs


def aae_step_flops(batch: int, image_dim: int, latent_dim: int, hidden: Sequence[int],
                   critic_hidden: Sequence[int],
                   decoder_hidden: Sequence[int] | None = None,
                   shared_encoder_pass: bool = True) -> dict[str, int]:
  """FLOPs of the three-phase AAE step with MLP encoder, decoder and critic, by hand.

  ``decoder_hidden`` defaults to ``hidden`` in the same order, as
  :class:`aaejax.nets.networks.MLPDecoder` uses it.

  recon: encoder+decoder forward and backward (no gradient w.r.t. the images);
  critic: encoder forward, critic forward+backward on codes and prior samples
  (no gradient w.r.t. its inputs); gen: critic forward, the critic's input
  gradient only (its weights are not trained), encoder backward, and — with
  ``shared_encoder_pass=False``, as in implementations that run the encoder
  again for the generator phase — a second encoder forward.
  :class:`aaejax.models.AAE` shares it.

  Example:

    >>> f = aae_step_flops(batch=2, image_dim=4, latent_dim=2, hidden=[3], critic_hidden=[3])
    >>> f["total"] == f["recon"] + f["critic"] + f["gen"]
    True
  """
  enc = [image_dim, *hidden, latent_dim]
  dec = [latent_dim, *(hidden if decoder_hidden is None else decoder_hidden), image_dim]
  cri = [latent_dim, *critic_hidden, 1]
  recon = (mlp_macs(enc) + mlp_macs(dec) + mlp_backward_macs(dec)
           + mlp_backward_macs(enc, input_grad=False))
  critic = mlp_macs(enc) + 2 * (mlp_macs(cri) + mlp_backward_macs(cri, input_grad=False))
  gen = (mlp_macs(cri) + mlp_backward_macs(cri, weight_grads=False)
         + mlp_backward_macs(enc, input_grad=False)
         + (0 if shared_encoder_pass else mlp_macs(enc)))
  out = {k: 2 * batch * v for k, v in {"recon": recon, "critic": critic, "gen": gen}.items()}
  out["total"] = sum(out.values())
  return out
