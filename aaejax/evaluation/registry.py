"""The evaluator registry, a run's evaluation and the context evaluators read.

:class:`Evaluation` runs the chosen evaluators on a state; :class:`Context` is what they read:
the test split's per-example outputs, the training codes, generated images (made once per eval)
and their features in the frozen nets, cached real-data statistics, the model's other eval
splits. The shared evaluators are registered in :mod:`aaejax.evaluation.evaluators`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from aaejax import core, data
from aaejax.data import batching
from aaejax.errors import ConfigError
from aaejax.evaluation import feature_nets
from aaejax.evaluation import feature_distances as fdist


EVAL_BATCH = 500  # examples per chunk of the per-example pass
GENERATE_CHUNK = 1000  # images per jitted generator call
FD_CACHE_VERSION = 1  # bump when the cached real-data features change meaning


@dataclasses.dataclass(frozen=True)
class Evaluator:
  """A registered evaluator: ``fn(context) -> {metric: float}``.

  Attributes:
    name: what ``config.skip_evaluators`` names.
    needs: capabilities the model must declare.
    fn: the metric computation, given an :class:`Context`.
    applies: ``(model, config) -> bool``, for conditions beyond capabilities
      (e.g. the data set); always by default.
    final_only: runs only at a run's final eval (the costly ones).
    nets: the feature nets (:mod:`aaejax.feature_nets`) it embeds images with; their weights
      are checked when a run's evaluation is set up, before training.
  """

  name: str
  needs: frozenset[str]
  fn: Callable[["Context"], dict[str, float]]
  applies: Callable[[Any, Any], bool] = lambda model, config: True
  final_only: bool = False
  nets: tuple[str, ...] = ()


REGISTRY: dict[str, Evaluator] = {}


def register(name: str, needs, applies=None, final_only: bool = False, nets=()):
  """Decorator: registers ``fn(context) -> metrics`` as evaluator ``name``."""

  def wrap(fn):
    REGISTRY[name] = Evaluator(name, frozenset(needs), fn,
                               applies or (lambda model, config: True), final_only, tuple(nets))
    return fn

  return wrap


def select(model, config) -> list[Evaluator]:
  """The evaluators of a run: the shared ones whose needs ``model`` meets and the model's own
  (:meth:`aaejax.core.Model.evaluators`), less the skipped ones."""
  skip = tuple(config.get("skip_evaluators", ()) or ())
  unknown = sorted(set(skip) - set(REGISTRY) - {e.name for e in model.evaluators()})
  if unknown:
    raise ValueError(f"config.skip_evaluators names unknown evaluators {unknown}; known: "
                     f"{sorted(REGISTRY)}.")
  caps = model.capabilities()
  own = tuple(model.evaluators())
  clash = sorted({e.name for e in own} & set(REGISTRY))
  if clash:
    raise ValueError(f"{type(model).__name__}.evaluators() reuses the shared names {clash}.")
  return [e for e in (*REGISTRY.values(), *own)
          if e.needs <= caps and e.name not in skip and e.applies(model, config)]


def per_example(model, state, batch) -> dict[str, jax.Array]:
  """Per-example test quantities of a batch, as far as the model's capabilities go."""
  caps = model.capabilities()
  out = {}
  if core.ENCODE in caps:
    heads = model.encode(state, batch["image"])
    out["z"] = model.latent(heads)
    if "y_logits" in heads:
      out["y_logits"] = heads["y_logits"]
  if caps & {core.CLASSIFY, core.CLUSTER} and "y_logits" not in out:
    out["y_logits"] = model.classify(state, batch["image"])
  if core.RECONSTRUCT in caps:
    out["recon_loss"] = model.reconstruction_loss(state, batch)
  return out


def _check_feature_nets(evaluators, config) -> None:
  """A clear error, before training, for an evaluator whose feature net has no weights."""
  for e in evaluators:
    for net in e.nets:
      try:
        feature_nets.get(net).check(config)
      except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"evaluator {e.name} needs the {net} feature net: {err} (or turn it "
                          f"off: --config.skip_evaluators=\"('{e.name}',)\")") from None


class Evaluation:
  """A run's evaluation: its evaluators and compiled functions, reused at every eval.

  Args:
    model: the model.
    config: the run's config (``skip_evaluators``, evaluator options).
    test: the test split's device arrays (``image``, ``label``).
    splits: the other splits of :meth:`aaejax.core.Model.eval_splits` by name (device
      arrays), read by evaluators as :meth:`Context.split`.
  """

  def __init__(self, model, config, test: Mapping[str, jax.Array],
               splits: Mapping[str, Mapping[str, jax.Array]] | None = None):
    self.model, self.config, self.test = model, config, test
    self.splits = {**dict(splits or {}), "test": test}
    missing = sorted(set(model.eval_splits()) - set(self.splits))
    if missing:
      raise ValueError(f"{type(model).__name__} evaluates on the splits {missing}, not given "
                       f"(splits: {sorted(self.splits)}).")
    self.evaluators = select(model, config)
    _check_feature_nets(self.evaluators, config)
    self.outputs = jax.jit(lambda state, arrays: batching.chunked(
        functools.partial(per_example, model, state), arrays, EVAL_BATCH))

  @property
  def names(self) -> list[str]:
    return [e.name for e in self.evaluators]

  def prepare(self, say: Callable[[str], None] = print) -> None:
    """Loads the evaluators' feature nets now, saying first what takes a while (the digit
    classifier's training on first use), so that the first eval does not stall unexplained."""
    for net in dict.fromkeys(n for e in self.evaluators for n in e.nets):
      users = ", ".join(e.name for e in self.evaluators if net in e.nets)
      note = feature_nets.get(net).pending(self.config)
      if note:
        say(f"eval ({users}): {note}")
      feature_nets.embedder(net, self.config)

  def __call__(self, state, train_subset: Mapping[str, jax.Array], rng: jax.Array,
               final: bool = False) -> dict[str, float]:
    """``eval/…`` metrics of ``state``; ``train_subset`` holds training examples (labels −1
    where hidden) for evaluators that need a reference set. ``final``: the run's last
    eval, which adds the ``final_only`` evaluators."""
    ctx = Context(self, state, train_subset, rng)
    result: dict[str, float] = {}
    for i, e in enumerate(self.evaluators):
      if e.final_only and not final:
        continue
      ctx.rng = jax.random.fold_in(rng, i)
      result.update(e.fn(ctx))
    return result


@dataclasses.dataclass
class Context:
  """What an evaluator sees: the model, the state, the data, a key, cached outputs."""

  evaluation: Evaluation
  state: Any
  train: Mapping[str, jax.Array]
  rng: jax.Array
  _cache: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    self.eval_rng = self.rng  # the eval's key (``rng`` becomes each evaluator's own)

  @property
  def model(self):
    return self.evaluation.model

  @property
  def config(self):
    return self.evaluation.config

  @property
  def test(self):
    return self.evaluation.test

  def split(self, name: str) -> Mapping[str, jax.Array]:
    """The device arrays of eval split ``name`` (:meth:`aaejax.core.Model.eval_splits`)."""
    return self.evaluation.splits[name]

  @property
  def test_outputs(self) -> dict[str, jax.Array]:
    """:func:`per_example` over the whole test split (computed once per eval)."""
    if "test" not in self._cache:
      self._cache["test"] = self.evaluation.outputs(self.state, self.test)
    return self._cache["test"]

  @property
  def train_outputs(self) -> dict[str, jax.Array]:
    """:func:`per_example` over the training subset (computed once per eval)."""
    if "train" not in self._cache:
      self._cache["train"] = self.evaluation.outputs(self.state, self.train)
    return self._cache["train"]

  def generated(self, n: int) -> jax.Array:
    """``n`` generated images (float, on device), drawn once per eval and shared.

    Chunk ``i`` of :data:`GENERATE_CHUNK` images uses ``fold_in(key, i)``, so the
    images of a smaller ``n`` are a prefix of those of a larger one.
    """
    chunks = self._cache.setdefault("generated", [])
    key = jax.random.fold_in(self.eval_rng, 0x6E4)
    while len(chunks) * GENERATE_CHUNK < n:
      chunks.append(generate_images(self.model, self.state,
                                    jax.random.fold_in(key, len(chunks)), GENERATE_CHUNK))
    if ("generated", n) not in self._cache:
      used = chunks[:-(-n // GENERATE_CHUNK)]
      self._cache[("generated", n)] = (used[0] if len(used) == 1
                                       else jnp.concatenate(used))[:n]
    return self._cache[("generated", n)]

  def fake_features(self, net: str, n: int) -> np.ndarray:
    """(n, dim) features of :meth:`generated` images under feature net ``net`` (once per
    eval)."""
    if ("fake", net, n) not in self._cache:
      self._cache[("fake", net, n)] = feature_nets.embedder(net, self.config)(self.generated(n))
    return self._cache[("fake", net, n)]

  def _real_key(self, kind: str, net: str, n: int) -> dict:
    dataset = self.config.get("dataset", "mnist")
    # Where the test images come from (another copy or subset of a data set has other
    # statistics at the same n).
    where = data.source(dataset, "test", self.config.get("data_dir") or None,
                        cache_dir=self.config.get("cache_dir") or None)
    return {"kind": kind, "dataset": dataset, "split": "test", "source": where,
            "net": net, "n": n, "weights": feature_nets.get(net).identity(self.config),
            "version": FD_CACHE_VERSION}

  def _real_test_features(self, net: str, n: int) -> np.ndarray:
    if ("real", net, n) not in self._cache:
      self._cache[("real", net, n)] = feature_nets.embedder(net, self.config)(
          self.test["image"][:n])
    return self._cache[("real", net, n)]

  def real_features(self, net: str, n: int) -> np.ndarray:
    """(n, dim) features of the first ``n`` test images, cached on disk."""
    return fdist.cached(self._real_key("features", net, n),
                        lambda: {"features": self._real_test_features(net, n)},
                        self.config.get("cache_dir") or None)["features"]

  def real_stats(self, net: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`aaejax.feature_distances.gaussian_stats` of :meth:`real_features`, cached on
    disk (without the features themselves)."""

    def compute():
      mu, sigma = fdist.gaussian_stats(self._real_test_features(net, n))
      return {"mu": mu, "sigma": sigma}

    stats = fdist.cached(self._real_key("stats", net, n), compute,
                         self.config.get("cache_dir") or None)
    return stats["mu"], stats["sigma"]


def context(model, state, test, train=None, *, config=None, rng=None, test_outputs=None,
            train_outputs=None, splits=None) -> Context:
  """A :class:`Context` for calling one evaluator directly: ``REGISTRY[name].fn(ctx)``.

  ``test_outputs`` / ``train_outputs`` (dicts as :func:`per_example` returns)
  stand in for the model's own pass, e.g. hand-made codes in a test.
  """
  ctx = Context(Evaluation(model, config or {}, test, splits), state, train or {},
                jax.random.key(0) if rng is None else rng)
  if test_outputs is not None:
    ctx._cache["test"] = test_outputs
  if train_outputs is not None:
    ctx._cache["train"] = train_outputs
  return ctx


def mnist_like(model, config):
  """28×28×1 images of a 10-class data set: what the digit classifier judges."""
  return (tuple(model.image_shape) == (28, 28, 1)
          and data.NUM_CLASSES.get(config.get("dataset", "mnist"), 10) == 10)


def labelled(model, config) -> bool:
  """Whether the run's data set has labels (CelebA has none): an ``applies`` condition."""
  del model
  return data.has_labels(config.get("dataset", "mnist"))


@functools.partial(jax.jit, static_argnums=(0, 3))
def generate_images(model, state, rng, n):
  return model.generate(state, rng, n)
