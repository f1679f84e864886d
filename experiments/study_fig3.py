"""The paper's central study from one command (every regularizer, a Fig. 4 combination, the pixel baseline →
LDMs → critics → evaluation → one ranked table): `ldm_jax.study.fig3`, whose docstring lists the scales.

    python experiments/study_fig3.py --scale cpu --root runs/fig3_cpu
    python experiments/study_fig3.py --scale paper --root runs/fig3 --dry-run
"""

from ldm_jax.study import fig3

if __name__ == "__main__":
  fig3.main()
