"""Runs ``train.train_and_evaluate`` for the parallel tests, in its own JAX process.

  python tests/_multiprocess_worker.py '{"runs": [...], "num_processes": 2, "process_id": 0,
                                         "port": 12345}'

``runs``: a list of ``{"config": NAME, "workdir": DIR, "overrides": {...}}``, run
one after another; a run with ``"expect_error"`` must raise a ``ValueError``
whose message contains it, one with ``"expect_stop"`` an ``aaejax.run.guards.RunStopped``; a run with ``"wait_for": PATH`` first waits (at most
``wait_timeout_s``, default 200 s) until PATH exists (e.g. a checkpoint that
another process writes); ``"sigterm_when": PATH`` sends this process SIGTERM once
PATH exists and is not empty. With ``num_processes`` > 1 the process first joins a
localhost JAX cluster (CPU collectives through gloo). The CPU device count comes
from ``XLA_FLAGS`` (set by the parent). Writes ``{"results": [...]}`` to ``out``.
"""

import json
import os
import signal
import sys
import threading
import time


def _sigterm_when(path: str) -> None:
  while not (os.path.exists(path) and os.path.getsize(path)):
    time.sleep(0.1)
  os.kill(os.getpid(), signal.SIGTERM)


def main(spec):
  import jax
  if spec.get("num_processes", 1) > 1:
    from aaejax.run import distributed
    distributed.initialize(f"localhost:{spec['port']}", spec["num_processes"],
                           spec["process_id"], cpu_collectives="gloo",
                           timeout_s=spec.get("init_timeout_s", 60))
  import _parallel_helpers as helpers
  from aaejax.run import train
  results = []
  for run in spec["runs"]:
    if "wait_for" in run:
      deadline = time.monotonic() + run.get("wait_timeout_s", 200)
      while not os.path.exists(run["wait_for"]):
        if time.monotonic() > deadline:
          raise TimeoutError(f"{run['wait_for']} did not appear.")
        time.sleep(0.2)
    if "sigterm_when" in run:  # a preemption notice to this process once PATH exists
      threading.Thread(target=_sigterm_when, args=(run["sigterm_when"],), daemon=True).start()
    config = helpers.tiny_config(run["config"], **run.get("overrides", {}))
    if "expect_stop" in run:  # the run must stop early (aaejax.run.guards.RunStopped)
      from aaejax.run import guards
      try:
        train.train_and_evaluate(config, run["workdir"])
      except guards.RunStopped as e:
        assert run["expect_stop"] in str(e), str(e)
        results.append({"stopped": str(e), "exit_code": e.exit_code})
        continue
      raise AssertionError(f"the run did not stop: {run}")
    if "expect_error" in run:
      try:
        train.train_and_evaluate(config, run["workdir"])
      except ValueError as e:
        assert run["expect_error"] in str(e), str(e)
        results.append({"error": str(e)})
        continue
      raise AssertionError(f"no ValueError for {run}")
    results.append(train.train_and_evaluate(config, run["workdir"]))
  if spec.get("out"):
    with open(spec["out"], "w") as f:
      json.dump({"results": results, "process_index": jax.process_index(),
                 "process_count": jax.process_count(),
                 "devices": [str(d) for d in jax.devices()]}, f)
  if spec.get("num_processes", 1) > 1:
    jax.distributed.shutdown()


if __name__ == "__main__":
  main(json.loads(sys.argv[1]))
