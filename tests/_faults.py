"""Faults injected into a training run: a preemption notice at a chosen step."""

import os
import signal

from aaejax.run import builder


def sigterm_after_step(monkeypatch, step: int):
  """Makes the loop's train function send this process SIGTERM once it has made ``step``
  (as a preemption notice would arrive); returns a function that undoes the patch."""
  make = builder.make_train_fn

  def signalling(*args, **kwargs):
    fn = make(*args, **kwargs)

    def step_fn(state, *rest):
      out = fn(state, *rest)
      if int(out[0].step) == step:
        os.kill(os.getpid(), signal.SIGTERM)
      return out
    return step_fn

  monkeypatch.setattr(builder, "make_train_fn", signalling)
  return lambda: monkeypatch.setattr(builder, "make_train_fn", make)
