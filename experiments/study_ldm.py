"""§4.2 / A.4: one guided latent DDPM per RAE of every finished sweep under the study root (all of a sweep's
diffusion models train as one compiled program on that sweep's latents).

    python experiments/study_ldm.py --root runs/study [--dry-run] [--unet paper|small]

Run after study_rae_sweeps.py / study_combinations.py: it picks up each `<dataset>/rae_*` workdir of the grid
those scripts define (a dry run lists them even before they exist).
"""

from ldm_jax import study
from ldm_jax.study.grids import add_latent_arguments, latent_grid_from_args

build_runs = latent_grid_from_args
build_runs.add_arguments = add_latent_arguments

if __name__ == "__main__":
  study.main(build_runs, __doc__)
