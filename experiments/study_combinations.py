"""Fig. 4: the prototype regularizer's β sweep combined with a second regularizer at a fixed β (QuickDraw-FS):
Barlow β = 30, SimCLR β = 1, KL β = 1e-3, VQ β = 20.

    python experiments/study_combinations.py --root runs/study [--dry-run] [--datasets quickdraw]
"""

from ldm_jax import study
from ldm_jax.study.grids import PARTNERS, combination_runs


def build_runs(args):
  return combination_runs(args.datasets.split(","), args.partners.split(","), args.tiny)


def add_arguments(p):
  p.add_argument("--datasets", default="quickdraw")
  p.add_argument("--partners", default=",".join(PARTNERS))


build_runs.add_arguments = add_arguments

if __name__ == "__main__":
  study.main(build_runs, __doc__)
