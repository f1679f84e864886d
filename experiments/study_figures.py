"""§5, Fig. 3-5: the two critics per dataset, then the evaluate job over every finished diffusion model of the study
(originality vs recognizability, distance to the human point, parametric fits, and on QuickDraw the feature-
importance maps against the ClickMe-QuickDraw human maps), with its figures and tables.

    python experiments/study_figures.py --root runs/study [--dry-run]
"""

import pathlib

from ldm_jax import study
from ldm_jax.study.grids import add_latent_arguments, eval_runs, latent_grid_from_args


def build_runs(args):
  return eval_runs(latent_grid_from_args(args), pathlib.Path(args.root).absolute(), args.tiny)


build_runs.add_arguments = add_latent_arguments

if __name__ == "__main__":
  study.main(build_runs, __doc__)
