"""Fig. 3 / A.5: every regularizer's β sweep on each dataset (one compiled sweep per dataset × regularizer), plus
the non-regularized RAE.

    python experiments/study_rae_sweeps.py --root runs/study --dry-run          # grid + device-hours
    python experiments/study_rae_sweeps.py --root runs/study                    # train (rerun to resume)
    python experiments/study_rae_sweeps.py --root runs/study --hosts 4 --host 2 # this host's quarter
"""

from ldm_jax import study
from ldm_jax.regularizer_registry import REGULARIZERS
from ldm_jax.study.grids import rae_runs


def build_runs(args):
  return rae_runs(args.datasets.split(","), args.regularizers.split(","), args.tiny)


def add_arguments(p):
  p.add_argument("--datasets", default="omniglot,quickdraw")
  p.add_argument("--regularizers", default=",".join(REGULARIZERS))


build_runs.add_arguments = add_arguments

if __name__ == "__main__":
  study.main(build_runs, __doc__)
