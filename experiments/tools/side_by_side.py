"""Runs' figures side by side: one PNG, a row per figure, a column per run.

  python experiments/tools/side_by_side.py --runs=runs/vae,runs/vaegan \
      --labels=VAE,VAE-GAN --figures=samples,reconstructions --out=runs/vae_vs_vaegan.png

Reads ``<run>/plots/<figure>.png`` as each run wrote it. Every run's ``reconstructions.png``
shows the same first test images (:mod:`aaejax.evaluation.figures`), so its columns compare
the models on the same inputs; ``samples.png`` holds 100 decoded prior samples of each.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("runs", None, "Run directories (their plots/ folders are read).")
flags.DEFINE_list("labels", None, "Column titles (default: the runs' folder names).")
flags.DEFINE_list("figures", ["samples", "reconstructions"], "Figure names, one row each.")
flags.DEFINE_string("out", "side_by_side.png", "The PNG written.")


def side_by_side(runs, labels, figures, out: str) -> str:
  """Writes ``out``: ``figures`` (rows) of ``runs`` (columns) titled by ``labels``."""
  if len(labels) != len(runs):
    raise ValueError(f"--labels: {len(labels)} labels for {len(runs)} runs; expected one each.")
  paths = [[os.path.join(r, "plots", f"{f}.png") for r in runs] for f in figures]
  missing = [p for row in paths for p in row if not os.path.isfile(p)]
  if missing:
    raise FileNotFoundError(f"no such figure: {', '.join(missing)} (has each run finished an "
                            "eval with plots on?)")
  fig, axes = plt.subplots(len(figures), len(runs), squeeze=False,
                           figsize=(5 * len(runs), 5 * len(figures)))
  for i, row in enumerate(paths):
    for j, p in enumerate(row):
      ax = axes[i][j]
      ax.imshow(plt.imread(p))
      ax.set_axis_off()
      ax.set_title(f"{labels[j]}: {figures[i]}", fontsize=11)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  fig.savefig(out, dpi=100)
  plt.close(fig)
  return out


def main(argv):
  del argv
  if not FLAGS.runs:
    raise app.UsageError("--runs: expected at least one run directory.")
  labels = FLAGS.labels or [os.path.basename(os.path.normpath(r)) for r in FLAGS.runs]
  try:
    print(side_by_side(FLAGS.runs, labels, FLAGS.figures, FLAGS.out))
  except (ValueError, FileNotFoundError) as e:
    raise app.UsageError(str(e)) from None


if __name__ == "__main__":
  app.run(main)
