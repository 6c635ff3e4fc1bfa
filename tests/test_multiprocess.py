"""Two JAX processes on localhost (CPU collectives through gloo) train like one.

A single-process, single-device run is the reference. Two worker processes with
two CPU devices each form one 4-device global mesh (``jax.distributed``): each
builds its half of every global batch (``jax.make_array_from_process_local_data``),
only process 0 writes metrics and plots, and Orbax checkpoints are written and
restored collectively, across a change of layout in both directions.
"""

import json
import os

import pytest

import _parallel_helpers as helpers
from _parallel_helpers import jax_cache_dir  # noqa: F401 (fixture)

RTOL = 1e-5


@pytest.fixture(scope="module")
def runs(tmp_path_factory, jax_cache_dir):
  root = tmp_path_factory.mktemp("multiprocess")
  data_dir = helpers.write_small_mnist(str(root / "data"))
  common = {"data_dir": data_dir}
  d = {k: str(root / k) for k in ("single", "multi", "resumed", "preempted")}
  # One process with one device: the first half of "resumed", then the reference. Two
  # processes with two devices each, at the same time: a whole run, then "resumed" from
  # the one-device checkpoint of step 3 (once it exists).
  port = helpers.free_port()
  specs = [{"runs": [
      {"config": "wae", "workdir": d["resumed"],
       "overrides": {**common, "num_devices": 1, "num_steps": 3}},
      {"config": "wae", "workdir": d["single"], "overrides": {**common, "num_devices": 1}}]}]
  for i in range(2):
    specs.append({"num_processes": 2, "process_id": i, "port": port,
                  "out": str(root / f"process_{i}.json"), "runs": [
                      {"config": "wae", "workdir": d["multi"], "overrides": common},
                      {"config": "wae", "workdir": d["resumed"], "overrides": common,
                       "wait_for": os.path.join(d["resumed"], "checkpoints", "3")},
                      # Until a preemption notice (SIGTERM) reaches process 1 only.
                      {"config": "wae", "workdir": d["preempted"],
                       "expect_stop": "preempted by SIGTERM",
                       "overrides": {**common, "num_steps": 100000, "log_every": 5,
                                     "eval_every": 100000, "checkpoint_every": 100000},
                       **({"sigterm_when": os.path.join(d["preempted"], "metrics.jsonl")}
                          if i == 1 else {})}]})
  logs = [str(root / name) for name in ("single.log", "process_0.log", "process_1.log")]
  procs = [helpers.start_worker(spec, n, log, jax_cache_dir)
           for spec, n, log in zip(specs, (1, 2, 2), logs)]
  helpers.wait_all(procs, logs, timeout=300)
  outs = [str(root / f"process_{i}.json") for i in range(2)]
  return d, [json.load(open(o)) for o in outs]


def test_two_processes_form_one_mesh(runs):
  _, outs = runs
  assert [o["process_index"] for o in outs] == [0, 1]
  assert all(o["process_count"] == 2 and len(o["devices"]) == 4 for o in outs)
  # Every process evaluates on its own copy of the state and gets the same metrics.
  assert outs[0]["results"] == outs[1]["results"]


def test_two_processes_match_single_process(runs):
  d, _ = runs
  single = helpers.losses(d["single"])
  assert {s for s, _ in single} == set(range(1, 7))
  for key in ("multi", "resumed"):
    diff = helpers.max_rel_diff(single, helpers.losses(d[key]))
    print(f"1 process x 1 device vs 2 processes x 2 devices ({key}): "
          f"max relative loss difference {diff:.2e}")
    assert diff < RTOL
  # Only process 0 wrote: no duplicated events.
  assert len(helpers.rows(d["multi"])) == len(helpers.rows(d["single"]))


def test_collective_checkpoint_restores_on_one_device(runs):
  d, _ = runs
  config = helpers.tiny_config("wae")
  a = helpers.final_state(config, d["single"])
  for key in ("multi", "resumed"):
    b = helpers.final_state(config, d[key])
    assert int(b.step) == 6
    diff = helpers.state_max_abs_diff(a, b)
    print(f"final state, single vs {key}: max abs difference {diff:.2e}")
    assert diff < 1e-5



def test_sigterm_to_one_process_stops_both_at_one_step(runs):
  """JAX's preemption service: SIGTERM to process 1 only; both save the same step and stop."""
  d, outs = runs
  stops = [o["results"][2] for o in outs]
  steps = [s["stopped"].split("at step ")[1].split()[0] for s in stops]
  assert steps[0] == steps[1], stops
  assert os.path.isdir(os.path.join(d["preempted"], "checkpoints", steps[0]))
  assert [s["exit_code"] for s in stops] == [143, 143]
