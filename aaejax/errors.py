"""The error type of a user's mistake in a config or a run setting.

A leaf module (it imports nothing of aaejax), so that every floor can raise it: the field
checks (:mod:`aaejax.core.config_checks`), the model registry, the evaluators, checkpoints and
run histories. The command-line tools print its message without a traceback.
"""


class ConfigError(ValueError):
  """A bad config field or run setting; the message names it, its value and what is expected."""
