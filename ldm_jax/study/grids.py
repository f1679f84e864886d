"""The paper's studies as grids of runs (`Run`: a job config plus overrides, in the order they must run):
every regularizer's β sweep (A.5), the Fig. 4 combinations, one latent DDPM per RAE, then critics and evaluation.
The experiment scripts (`experiments/study_*.py`) and `ldm_jax.study.fig3` compose them.
"""

from __future__ import annotations

from configs import rae as rae_config
from ldm_jax import regularizer_registry
from ldm_jax.study import Run


def rae_runs(datasets, regularizers, tiny: bool, betas=None, overrides=()) -> list[Run]:
  """`betas`: {regularizer: β values} (default: the A.5 range, its first two with `tiny`); `overrides`: (key,
  value) pairs for every run (a study scale's schedule)."""
  runs = []
  for ds in datasets:
    t = ",tiny" if tiny else ""
    runs.append(Run(f"{ds}/rae_none", f"configs/rae.py:{ds}{t}",
                          (("rae.regularizers", "()"), ("sweep.betas", "()"), *overrides), members=1))
    for reg in regularizers:
      values = betas[reg] if betas else rae_config.PAPER_BETAS[reg][:2] if tiny else rae_config.PAPER_BETAS[reg]
      runs.append(Run(f"{ds}/rae_{reg}", f"configs/rae.py:{ds},reg={reg}{t}",
                            (("sweep.betas", repr(tuple(float(b) for b in values))), *overrides),
                            members=len(values)))
  return runs


PARTNERS = regularizer_registry.prototype_partners()   # Fig. 4a-d captions: {partner: its β}


def combination_runs(datasets, partners, tiny: bool, betas=None, overrides=()) -> list[Run]:
  """`betas`: the prototype β values (default: the A.5 range, its first two with `tiny`)."""
  if betas is None:
    betas = rae_config.PAPER_BETAS["prototype"][:2] if tiny else rae_config.PAPER_BETAS["prototype"]
  runs = []
  for ds in datasets:
    for other in partners:
      runs.append(Run(
          f"{ds}/rae_prototype+{other}", f"configs/rae.py:{ds},reg=prototype" + (",tiny" if tiny else ""),
          (("rae.regularizers", repr(("prototype", other))), (f"rae.beta.{other}", repr(PARTNERS[other])),
           ("sweep.betas", repr(tuple(float(b) for b in betas))), *overrides), members=len(betas)))
  return runs


def ldm_runs(rae_grid, root, unet: str, tiny: bool, overrides=()) -> list[Run]:
  return [Run(r.name.replace("/rae_", "/ldm_"), f"configs/ldm.py:{r.name.split('/')[0]},unet={unet}"
                    + (",tiny" if tiny else ""), (("ldm.rae_workdir", str(root / r.name)), *overrides),
                    requires=(r.name,), members=r.members) for r in rae_grid]


def eval_runs(ldm_grid, root, tiny: bool, critics_overrides=(), eval_overrides=()) -> list[Run]:
  """The critics and the evaluation of every diffusion model of `ldm_grid` (latent or pixel space), per dataset."""
  runs = []
  t = ",tiny" if tiny else ""
  for ds in dict.fromkeys(r.name.split("/")[0] for r in ldm_grid):
    ldms = tuple(r.name for r in ldm_grid if r.name.startswith(ds + "/"))
    runs.append(Run(f"{ds}/critics", f"configs/critics.py:{ds}{t}", critics_overrides, members=2))
    runs.append(Run(
        f"{ds}/eval", f"configs/evaluate.py:{ds}{t}",
        (("eval.critics_workdir", str(root / ds / "critics")),
         ("eval.ldm_workdirs", repr(tuple(str(root / n) for n in ldms))),
         ("importance.enabled", str(ds == "quickdraw")), *eval_overrides),
        requires=(f"{ds}/critics", *ldms), members=sum(r.members for r in ldm_grid if r.name in ldms)))
  return runs


def latent_grid(datasets, combination_datasets, partners, root, unet: str, tiny: bool) -> list[Run]:
  """The diffusion models of the RAE sweeps and combinations that `rae_runs` / `combination_runs` define."""
  grid = (rae_runs(datasets, regularizer_registry.REGULARIZERS, tiny)
          + combination_runs(combination_datasets, partners, tiny))
  return ldm_runs(grid, root, unet, tiny)


def add_latent_arguments(p) -> None:
  """The command-line flags of `latent_grid` (experiments/study_ldm.py, study_figures.py)."""
  p.add_argument("--datasets", default="omniglot,quickdraw")
  p.add_argument("--combination-datasets", default="quickdraw")
  p.add_argument("--unet", default="paper")
  p.add_argument("--partners", default=",".join(PARTNERS), help="Fig. 4 partners of the prototype regularizer")


def latent_grid_from_args(args) -> list[Run]:
  import pathlib
  return latent_grid(args.datasets.split(","), args.combination_datasets.split(",") if args.combination_datasets
                     else [], args.partners.split(","), pathlib.Path(args.root).absolute(), args.unet, args.tiny)
