"""§5, Fig. 3-5: the two critics per dataset, then the evaluate job over every finished diffusion model of the study
(originality vs recognizability, distance to the human point, parametric fits, and on QuickDraw the feature-
importance maps against the ClickMe-QuickDraw human maps), with its figures and tables.

    python experiments/study_figures.py --root runs/study [--dry-run]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.study_ldm import add_arguments as ldm_arguments
from experiments.study_ldm import build_runs as ldm_build_runs
from ldm_jax import study


def eval_runs(ldm_grid, root, tiny: bool, critics_overrides=(), eval_overrides=()) -> list[study.Run]:
  """The critics and the evaluation of every diffusion model of `ldm_grid` (latent or pixel space), per dataset."""
  runs = []
  t = ",tiny" if tiny else ""
  for ds in dict.fromkeys(r.name.split("/")[0] for r in ldm_grid):
    ldms = tuple(r.name for r in ldm_grid if r.name.startswith(ds + "/"))
    runs.append(study.Run(f"{ds}/critics", f"configs/critics.py:{ds}{t}", critics_overrides, members=2))
    runs.append(study.Run(
        f"{ds}/eval", f"configs/evaluate.py:{ds}{t}",
        (("evaluate.critics_workdir", str(root / ds / "critics")),
         ("evaluate.ldm_workdirs", repr(tuple(str(root / n) for n in ldms))),
         ("importance.enabled", str(ds == "quickdraw")), *eval_overrides),
        requires=(f"{ds}/critics", *ldms), members=sum(r.members for r in ldm_grid if r.name in ldms)))
  return runs


def build_runs(args):
  import pathlib
  return eval_runs(ldm_build_runs(args), pathlib.Path(args.root).absolute(), args.tiny)


build_runs.add_arguments = ldm_arguments

if __name__ == "__main__":
  study.main(build_runs, __doc__)
