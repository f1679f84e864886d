"""Fig. 3 / A.5: every regularizer's β sweep on each dataset (one compiled sweep per dataset × regularizer), plus
the non-regularized RAE.

    python experiments/study_rae_sweeps.py --root runs/study --dry-run          # grid + device-hours
    python experiments/study_rae_sweeps.py --root runs/study                    # train (rerun to resume)
    python experiments/study_rae_sweeps.py --root runs/study --hosts 4 --host 2 # this host's quarter
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import rae as rae_config
from ldm_jax import study
from ldm_jax.models.rae import REGULARIZERS


def rae_runs(datasets, regularizers, tiny: bool, betas=None, overrides=()) -> list[study.Run]:
  """`betas`: {regularizer: β values} (default: the A.5 range, its first two with `tiny`); `overrides`: (key,
  value) pairs for every run (a study scale's schedule)."""
  runs = []
  for ds in datasets:
    t = ",tiny" if tiny else ""
    runs.append(study.Run(f"{ds}/rae_none", f"configs/rae.py:{ds}{t}",
                          (("rae.regularizers", "()"), ("sweep.betas", "()"), *overrides), members=1))
    for reg in regularizers:
      values = betas[reg] if betas else rae_config.PAPER_BETAS[reg][:2] if tiny else rae_config.PAPER_BETAS[reg]
      runs.append(study.Run(f"{ds}/rae_{reg}", f"configs/rae.py:{ds},reg={reg}{t}",
                            (("sweep.betas", repr(tuple(float(b) for b in values))), *overrides),
                            members=len(values)))
  return runs


def build_runs(args):
  return rae_runs(args.datasets.split(","), args.regularizers.split(","), args.tiny)


def add_arguments(p):
  p.add_argument("--datasets", default="omniglot,quickdraw")
  p.add_argument("--regularizers", default=",".join(REGULARIZERS))


build_runs.add_arguments = add_arguments

if __name__ == "__main__":
  study.main(build_runs, __doc__)
