"""The paper's central study from one command: every regularizer's β sweep, the unregularised RAE, a Fig. 4
combination and the pixel-space baseline, through RAE → latent DDPM per RAE → critics → evaluation (Fig. 2/3/4,
A.4–A.9), then one table ranking every model by its distance to the human point (`<root>/<dataset>/study.md`).

    python experiments/study_fig3.py --scale cpu --root runs/fig3_cpu            # 84 min on 2 cores (BENCHMARKS.md)
    python -m ldm_jax.study.fig3 --scale cpu --root runs/fig3_cpu                 # the same, from a pip install
    python experiments/study_fig3.py --scale paper --root runs/fig3 --dry-run    # grid + measured device-hours
    python experiments/study_fig3.py --scale paper --root runs/fig3 --hosts 8 --host $SLURM_PROCID
    python experiments/study_fig3.py --scale cpu --tiny --root /tmp/fig3         # minutes (the slow test)

Scales:
  cpu    Omniglot, the first 3,000 training drawings (150 characters); each regularizer at 2 β spread over its A.5
         range (`spread_betas`), Barlow(30)+Prototype at the same prototype β; RAEs 6 epochs (batch 32), the
         `small` UNet 150 epochs at lr 1e-3 (the CPU demo's schedule), the pixel baseline 40 epochs, the critics
         3 epochs on 6,000 drawings, 50 test characters × 10 samples; every model (pixel baseline included) samples
         with η = 1 DDIM over 100 of the 1000 steps (`SAMPLER`).
  paper  the A.5 β ranges and the paper's schedules on the full Omniglot and QuickDraw training splits (held-out
         QuickDraw categories), Fig. 4's four partners on QuickDraw, the paper UNet, critics and evaluation as
         configured (configs/*.py).
Every stage is resumable and idempotent (rerun the same command); `<root>/timings.jsonl` holds each run's wall
clock. Report only: `--report` rebuilds the table from finished runs.
"""

import json
import pathlib

from configs import rae as rae_config
from ldm_jax import rae, study
from ldm_jax.regularizer_registry import REGULARIZERS
from ldm_jax.study.grids import PARTNERS, combination_runs, eval_runs, ldm_runs, rae_runs


def spread_betas(reg: str, k: int = 2) -> tuple[float, ...]:
  """k values of the A.5 range at its interior (i / (k+1)) quantiles, e.g. KL → 1e-3, 0.2: a weak and a strong
  setting, chosen by position in the published range (not by any result)."""
  values = rae_config.PAPER_BETAS[reg]
  n = len(values)
  return tuple(float(values[round(i * (n - 1) / (k + 1))]) for i in range(1, k + 1))


def _pairs(d: dict) -> tuple[tuple[str, str], ...]:
  return tuple((k, str(v)) for k, v in d.items())


# Every model at cpu scale samples with the same cheaper stochastic sampler: η = 1 DDIM over 100 of the 1000 steps
# (DDPM's posterior variance on a strided schedule; over all steps it is the ancestral sampler, tests/test_diffusion).
# The pixel baseline's 1000-step ancestral sampling did not fit a 2-core CPU (> 29 min for its job's 300 samples).
SAMPLER = {"sampler": "ddim", "ddim_steps": 100, "ddim_eta": 1.0}
_SAMPLE = {f"eval.{k}": v for k, v in SAMPLER.items()}

CPU = {
    "rae": _pairs({"data.max_train_examples": 3000, "train.epochs": 6, "train.batch_size": 32,
                   "train.checkpoint_every_epochs": 2}),
    "ldm": _pairs({"data.max_train_examples": 3000, "train.lr": 1e-3, "train.batch_size": 64, "train.epochs": 150,
                   "train.checkpoint_every_epochs": 50, "eval.max_classes": 50, "eval.per_exemplar": 6, **_SAMPLE}),
    "pixel": _pairs({"data.max_train_examples": 3000, "train.lr": 1e-3, "train.batch_size": 64, "train.epochs": 40,
                     "train.checkpoint_every_epochs": 20, "eval.max_classes": 50, "eval.per_exemplar": 6,
                     **_SAMPLE}),
    "critics": _pairs({"data.max_train_examples": 6000, "train.epochs": 3, "train.checkpoint_every_epochs": 1}),
    "eval": _pairs({"eval.max_classes": 50, "eval.samples_per_class": 10, "eval.tasks_per_class": 5,
                  **{f"eval.{k}": v for k, v in SAMPLER.items()}}),
}


def build_runs(args) -> list[study.Run]:
  root = pathlib.Path(args.root).absolute()
  tiny = args.tiny
  t = ",tiny" if tiny else ""
  if args.scale == "cpu":
    o = {k: () for k in CPU} if tiny else CPU   # --tiny: the configs' own tiny sizes
    betas = {r: spread_betas(r) for r in REGULARIZERS}
    datasets, combos, partners, unet = ["omniglot"], ["omniglot"], ["barlow"], "small"
  else:
    o = {k: () for k in CPU}
    betas = {r: rae_config.PAPER_BETAS[r][:2] for r in REGULARIZERS} if tiny else None
    datasets, combos, partners, unet = ["omniglot", "quickdraw"], ["quickdraw"], list(PARTNERS), "paper"
  raes = rae_runs(datasets, REGULARIZERS, tiny, betas, o["rae"])
  raes += combination_runs(combos, partners, tiny, betas["prototype"] if betas else None, o["rae"])
  if resolve_grid(args.grid) == "mixed":
    raes = [mixed_run(ds, [r for r in raes if r.name.startswith(ds + "/")], tiny) for ds in datasets]
  ldms = ldm_runs(raes, root, unet, tiny, o["ldm"])
  pixels = [study.Run(f"{ds}/pixel", f"configs/ldm.py:{ds},space=pixel,unet=small{t}", o["pixel"])
            for ds in datasets]
  return raes + ldms + pixels + eval_runs(ldms + pixels, root, tiny, o["critics"], o["eval"])


def resolve_grid(grid: str) -> str:
  """'auto': one mixed sweep per dataset on a CPU (bench_rae.py --only figure: 1.1× the per-regularizer sweeps'
  throughput under lax.map, 2.1× on compile + first epoch), one sweep per regularizer elsewhere (under vmap a mixed
  sweep runs every member's forward pass: 0.19× on the CPU; not measured on a GPU)."""
  if grid != "auto":
    return grid
  import jax
  return "mixed" if jax.default_backend() == "cpu" else "per-regularizer"


def mixed_run(dataset: str, runs: list[study.Run], tiny: bool) -> study.Run:
  """The dataset's RAE sweeps as ONE mixed sweep (`sweep.members`): every member keeps its β vector; the overrides
  the sweeps share (the scale's schedule) carry over."""
  members = []
  for r in runs:
    cfg = study.load_config(r)
    members += [",".join(f"{k}={b!r}" for k, b in m["beta"].items() if b > 0) or "none"   # exact β
                for m in rae.sweep_members(cfg)[0]]
  shared = [o for o in runs[0].overrides if all(o in r.overrides for r in runs)]
  overrides = (("rae.regularizers", repr(tuple(REGULARIZERS))), ("sweep.betas", "()"),
               ("sweep.members", repr(tuple(members))), *[o for o in shared if o[0] not in ("sweep.betas",)])
  return study.Run(f"{dataset}/rae_figure", f"configs/rae.py:{dataset}" + (",tiny" if tiny else ""), overrides,
                   members=len(members))


def add_arguments(p):
  p.add_argument("--scale", choices=("cpu", "paper"), default="cpu")
  p.add_argument("--grid", choices=("auto", "mixed", "per-regularizer"), default="auto",
                 help="RAEs as one mixed sweep per dataset or one sweep per regularizer (auto: by backend)")
  p.add_argument("--report", action="store_true", help="only rebuild <root>/<dataset>/study.md from finished runs")


build_runs.add_arguments = add_arguments


def _json(path: pathlib.Path):
  return json.loads(path.read_text()) if path.exists() else None


def model_rows(root: pathlib.Path, dataset: str) -> list[dict]:
  """One row per evaluated model: its evaluation point joined with its diffusion model's and its RAE's summaries
  (by export path → LDM workdir/member → RAE workdir/member)."""
  scores = _json(root / dataset / "eval" / "scores.json")
  if scores is None:
    return []
  rows = []
  for p in scores["points"]:
    row = {k: p.get(k) for k in ("name", "kind", "regularizer", "beta", "originality", "originality_norm",
                                 "recognizability", "distance_to_human", "closest", "diverged")}
    if p["kind"] in ("ldm", "pixel"):
      export = pathlib.Path(p["path"])
      member = int(export.name)
      ldm_work = export.parent.parent
      ldm_sum = _json(ldm_work / "summary.json")["members"][member]
      row.update(denoising_loss=ldm_sum["loss_last_epoch"], ldm_nonfinite_steps=ldm_sum["nonfinite_steps"])
      if p["kind"] == "ldm":
        cfg = _json(ldm_work / "config.json")
        rae_work = pathlib.Path(cfg["ldm"]["rae_workdir"])
        rae_member = ldm_sum.get("rae_member", member)
        rae_sum = _json(rae_work / "summary.json")["members"][rae_member]
        row.update(rae_oneshot_accuracy=rae_sum["oneshot_accuracy"], rae_recon=rae_sum["recon"],
                   rae_nonfinite_steps=rae_sum["nonfinite_steps"], rae_diverged=rae_sum["diverged"])
    rows.append(row)
  return sorted(rows, key=lambda r: (r["distance_to_human"] is None, r["distance_to_human"] or 0.0))


def _cell(v, fmt="{:.3f}"):
  if v is None:
    return ""
  return fmt.format(v) if isinstance(v, float) else str(v)


def write_report(root: pathlib.Path, dataset: str) -> pathlib.Path | None:
  rows = model_rows(root, dataset)
  if not rows:
    return None
  scores = _json(root / dataset / "eval" / "scores.json")
  critics = scores.get("critics", {})
  timings = [json.loads(l) for l in (root / "timings.jsonl").read_text().splitlines()] \
      if (root / "timings.jsonl").exists() else []
  lines = [f"# Fig. 3 study on {dataset}: every model ranked by distance to the human point", "",
           f"Critics: {critics.get('kind', '?')} ({critics.get('workdir', '')}); {scores.get('classes')} test "
           f"classes × {scores.get('samples_per_class')} samples ({scores.get('sampler', 'ddpm (all T steps)')}), "
           f"{scores.get('n_way')}-way recognizability.", "",
           "| rank | model | regularizer | β | RAE 1-shot acc. | RAE non-finite steps | denoising loss | "
           "LDM non-finite steps | originality | orig. (norm.) | recognizability | distance to human |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for i, r in enumerate(rows):
    lines.append("| " + " | ".join([
        str(i), r["name"] + (" (closest)" if r.get("closest") else "") + (" (DIVERGED)" if r.get("diverged") else ""),
        "(pixel space)" if r["kind"] == "pixel" else r["regularizer"] or "", _cell(r["beta"], "{:g}"),
        _cell(r.get("rae_oneshot_accuracy")), _cell(r.get("rae_nonfinite_steps")),
        _cell(r.get("denoising_loss"), "{:.4f}"),
        _cell(r.get("ldm_nonfinite_steps")), _cell(r["originality"]), _cell(r["originality_norm"]),
        _cell(r["recognizability"]), _cell(r["distance_to_human"])]) + " |")
  closest = [r for r in rows if r.get("closest")]
  if closest:
    lines += ["", "Per regularizer, the β closest to humans: " + ", ".join(
        f"{r['regularizer']} β = {r['beta']:g} ({r['distance_to_human']:.3f})" for r in closest) + "."]
  mine = [t for t in timings if t["run"].startswith(dataset + "/")]
  if mine:
    stages: dict[str, float] = {}
    for t in mine:
      stage = t["run"].split("/", 1)[1].split("_", 1)[0]
      stages[stage] = stages.get(stage, 0.0) + t["seconds"]
    lines += ["", "Wall clock per stage (this host, as run; a resumed run counts each attempt): " + ", ".join(
        f"{k} {v / 60:.1f} min" for k, v in stages.items()) + f"; {sum(stages.values()) / 60:.1f} min in all."]
  out = root / dataset / "study.md"
  out.write_text("\n".join(lines) + "\n")
  (root / dataset / "study.json").write_text(json.dumps({"rows": rows, "timings": mine}, indent=1))
  return out


def main(argv=None):
  p = study.parser(__doc__)
  add_arguments(p)
  args = p.parse_args(argv)
  root = pathlib.Path(args.root).absolute()
  if not args.report:
    study.main(build_runs, __doc__, argv)
  if args.dry_run:
    return
  for ds in dict.fromkeys(r.name.split("/")[0] for r in build_runs(args)):
    out = write_report(root, ds)
    if out:
      print(f"[study] {out}", flush=True)


if __name__ == "__main__":
  main()
