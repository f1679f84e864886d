"""Redraw an evaluation's figures (Fig. 3, 4, A.4–A.9, 5b) from a scores.json, e.g. committed results:

    python experiments/replot_figures.py experiments/results/study_tiny_cpu/scores.json \
        experiments/figures/study_tiny_cpu
"""

import sys

from ldm_jax.jobs import evaluate

if __name__ == "__main__":
  if len(sys.argv) not in (2, 3):
    sys.exit(__doc__)
  for name in evaluate.replot(*sys.argv[1:]):
    print(name)
