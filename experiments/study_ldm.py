"""§4.2 / A.4: one guided latent DDPM per RAE of every finished sweep under the study root (all of a sweep's
diffusion models train as one compiled program on that sweep's latents).

    python experiments/study_ldm.py --root runs/study [--dry-run] [--unet paper|small]

Run after study_rae_sweeps.py / study_combinations.py: it picks up each `<dataset>/rae_*` workdir of the grid
those scripts define (a dry run lists them even before they exist).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.study_combinations import PARTNERS, combination_runs
from experiments.study_rae_sweeps import rae_runs
from ldm_jax import study
from ldm_jax.models.rae import REGULARIZERS


def ldm_runs(rae_grid, root, unet: str, tiny: bool, overrides=()) -> list[study.Run]:
  return [study.Run(r.name.replace("/rae_", "/ldm_"), f"configs/ldm.py:{r.name.split('/')[0]},unet={unet}"
                    + (",tiny" if tiny else ""), (("ldm.rae_workdir", str(root / r.name)), *overrides),
                    requires=(r.name,), members=r.members) for r in rae_grid]


def build_runs(args):
  import pathlib
  root = pathlib.Path(args.root).absolute()
  grid = rae_runs(args.datasets.split(","), REGULARIZERS, args.tiny)
  grid += combination_runs(args.combination_datasets.split(",") if args.combination_datasets else [],
                           args.partners.split(","), args.tiny)
  return ldm_runs(grid, root, args.unet, args.tiny)


def add_arguments(p):
  p.add_argument("--datasets", default="omniglot,quickdraw")
  p.add_argument("--combination-datasets", default="quickdraw")
  p.add_argument("--unet", default="paper")
  p.add_argument("--partners", default=",".join(PARTNERS), help="Fig. 4 partners of the prototype regularizer")


build_runs.add_arguments = add_arguments

if __name__ == "__main__":
  study.main(build_runs, __doc__)
