"""The small core every model family builds on (the model protocol).

:mod:`~aaejax.core.model` (the :class:`Model` base class and capabilities),
:mod:`~aaejax.core.phases` (:class:`Phase`, parameter paths, step inputs, progress),
:mod:`~aaejax.core.update` (the phase update and :func:`run_phases`, the body of every step),
:mod:`~aaejax.core.state` (:class:`TrainState`), :mod:`~aaejax.core.streams`
(:class:`Stream`), :mod:`~aaejax.core.batch_checks` (batch checks) and
:mod:`~aaejax.core.config_checks` (config field checks). Their public names are here.
"""

from aaejax.core.batch_checks import (LabelFields, check_batch, check_codes, check_count,
                                      check_images, check_labels, image_inputs, is_concrete)
from aaejax.core.model import (CAPABILITIES, CATEGORICAL, CLASSIFY, CLUSTER, DECODE, ENCODE,
                               GENERATE, LABEL_PRIOR, LIKELIHOOD, PRIOR, RECONSTRUCT, STYLE,
                               Model)
from aaejax.core.phases import (Forward, Phase, PhaseLoss, StepInputs, check_paths,
                                check_phases, constant_schedule, groups, lr_schedule, merge,
                                optimizer_fields, phase_lr_schedules, progress, select)
from aaejax.core.state import LossFn, Params, TrainState
from aaejax.core.streams import Stream
from aaejax.core.update import apply_gradients, learning_rate, run_phases, update
