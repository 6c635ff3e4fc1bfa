"""The run machinery: the run builder (:mod:`~aaejax.run.builder`), the training loop
(:mod:`~aaejax.run.train`), checkpoints, history, guards, sweeps, the device mesh and
multi-process runs, FLOP counts."""
