"""Fig. 4: the prototype regularizer's β sweep combined with a second regularizer at a fixed β (QuickDraw-FS):
Barlow β = 30, SimCLR β = 1, KL β = 1e-3, VQ β = 20.

    python experiments/study_combinations.py --root runs/study [--dry-run] [--datasets quickdraw]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import rae as rae_config
from ldm_jax import study

PARTNERS = {"barlow": 30.0, "simclr": 1.0, "kl": 1e-3, "vq": 20.0}   # Fig. 4a-d captions


def combination_runs(datasets, partners, tiny: bool, betas=None, overrides=()) -> list[study.Run]:
  """`betas`: the prototype β values (default: the A.5 range, its first two with `tiny`)."""
  if betas is None:
    betas = rae_config.PAPER_BETAS["prototype"][:2] if tiny else rae_config.PAPER_BETAS["prototype"]
  runs = []
  for ds in datasets:
    for other in partners:
      runs.append(study.Run(
          f"{ds}/rae_prototype+{other}", f"configs/rae.py:{ds},reg=prototype" + (",tiny" if tiny else ""),
          (("rae.regularizers", repr(("prototype", other))), (f"rae.beta.{other}", repr(PARTNERS[other])),
           ("sweep.betas", repr(tuple(float(b) for b in betas))), *overrides), members=len(betas)))
  return runs


def build_runs(args):
  return combination_runs(args.datasets.split(","), args.partners.split(","), args.tiny)


def add_arguments(p):
  p.add_argument("--datasets", default="quickdraw")
  p.add_argument("--partners", default=",".join(PARTNERS))


build_runs.add_arguments = add_arguments

if __name__ == "__main__":
  study.main(build_runs, __doc__)
