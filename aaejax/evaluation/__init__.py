"""Evaluation: the eval metrics and figures of a run, chosen from what its model can do.

:mod:`~aaejax.evaluation.registry` (the evaluator registry, :class:`Evaluation`,
:class:`Context`), :mod:`~aaejax.evaluation.evaluators` (the shared evaluators),
:mod:`~aaejax.evaluation.figures` and :mod:`~aaejax.evaluation.plots` (figures and their
primitives), :mod:`~aaejax.evaluation.metrics` (MMD, kNN, cluster accuracies),
:mod:`~aaejax.evaluation.feature_nets` and :mod:`~aaejax.evaluation.feature_distances`
(frozen feature nets, FD/KID), :mod:`~aaejax.evaluation.digits` (the digit classifier) and
:mod:`~aaejax.evaluation.parzen`. The registry's public names are here; importing this
package registers the shared evaluators.
"""

from aaejax.evaluation import evaluators
from aaejax.evaluation.evaluators import likelihood_bounds
from aaejax.evaluation.registry import (EVAL_BATCH, FD_CACHE_VERSION, GENERATE_CHUNK, REGISTRY,
                                        Context, Evaluation, Evaluator, context, labelled,
                                        mnist_like,
                                        per_example, register, select)
