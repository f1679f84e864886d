"""The paper's studies as launchable grids: coverage of the paper, host split, resume decisions, dry run."""

import io
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import REPO

from configs import rae as rae_config
from ldm_jax import study
from ldm_jax.regularizer_registry import REGULARIZERS
from ldm_jax.study import fig3 as study_fig3
from ldm_jax.study import grids

ROOT = pathlib.Path("/study")


def _paper_grid():
  raes = grids.rae_runs(["omniglot", "quickdraw"], REGULARIZERS, tiny=False)
  combos = grids.combination_runs(["quickdraw"], grids.PARTNERS, tiny=False)
  ldms = grids.ldm_runs(raes + combos, ROOT, "paper", tiny=False)
  return raes, combos, ldms, grids.eval_runs(ldms, ROOT, tiny=False)


def test_grids_cover_the_papers_studies():
  raes, combos, ldms, evals = _paper_grid()
  # A.5: every β of every regularizer on both datasets, one sweep each, plus the non-regularized RAE.
  per_dataset = 1 + sum(len(b) for b in rae_config.PAPER_BETAS.values())
  assert sum(r.members for r in raes) == 2 * per_dataset == 2 * 92
  assert {r.name for r in raes} >= {"omniglot/rae_kl", "quickdraw/rae_barlow", "omniglot/rae_none"}
  # Fig. 4: the prototype sweep with each partner fixed at the caption's β.
  kl = next(r for r in combos if r.name == "quickdraw/rae_prototype+kl")
  assert dict(kl.overrides)["rae.beta.kl"] == "0.001" and kl.members == len(rae_config.PAPER_BETAS["prototype"])
  cfg = study.load_config(kl)
  assert tuple(cfg.rae.regularizers) == ("prototype", "kl") and cfg.rae.beta.kl == 1e-3
  assert len(cfg.sweep.betas) == 24 and cfg.sweep.regularizer == "prototype"
  # One diffusion model per RAE, trained on (and requiring) its sweep; ~600 models as in the paper.
  assert [l.requires for l in ldms] == [(r.name,) for r in raes + combos]
  assert sum(l.members for l in ldms) == sum(r.members for r in raes + combos) == 184 + 4 * 24
  ev = next(r for r in evals if r.name == "quickdraw/eval")
  assert set(ev.requires) == {"quickdraw/critics"} | {l.name for l in ldms if l.name.startswith("quickdraw/")}
  assert study.load_config(ev).importance.enabled and not study.load_config(evals[1]).importance.enabled


def _fig3(scale, grid, tiny=False):
  args = study.parser("").parse_args(["--root", str(ROOT)] + (["--tiny"] if tiny else []))
  args.scale, args.grid, args.report = scale, grid, False
  return study_fig3.build_runs(args)


def test_the_one_command_study_covers_fig3_at_both_scales_and_as_one_mixed_sweep():
  # Spread β: positions 1/3 and 2/3 of each A.5 range, never a result.
  assert study_fig3.spread_betas("kl") == (1e-3, 0.2) and study_fig3.spread_betas("prototype") == (2.0, 9.0)
  per_reg = _fig3("cpu", "per-regularizer")
  names = [r.name for r in per_reg]
  assert names[:8] == ["omniglot/rae_none", *(f"omniglot/rae_{r}" for r in REGULARIZERS),
                       "omniglot/rae_prototype+barlow"]
  assert names[-4:] == ["omniglot/ldm_prototype+barlow", "omniglot/pixel", "omniglot/critics", "omniglot/eval"]
  ev = study.load_config(per_reg[-1])
  assert len(ev.eval.ldm_workdirs) == 9 and ev.eval.ldm_workdirs[-1] == str(ROOT / "omniglot/pixel")
  assert ev.eval.max_classes == 50 and study.load_config(per_reg[0]).data.max_train_examples == 3000
  mixed = _fig3("cpu", "mixed")
  assert [r.name for r in mixed] == ["omniglot/rae_figure", "omniglot/ldm_figure", "omniglot/pixel",
                                     "omniglot/critics", "omniglot/eval"]
  cfg = study.load_config(mixed[0])
  from ldm_jax import rae
  members, betas = rae.sweep_members(cfg)
  want = {tuple(b) for r in per_reg[:8] for b in rae.sweep_members(study.load_config(r))[1].tolist()}
  assert mixed[0].members == 15 and {tuple(b) for b in betas.tolist()} == want   # the same 15 β vectors
  assert cfg.train.epochs == 6 and cfg.data.max_train_examples == 3000 and len(rae.branches(cfg)) == 8
  assert study.load_config(mixed[1]).ldm.rae_workdir == str(ROOT / "omniglot/rae_figure")
  assert study_fig3.resolve_grid("auto") == ("mixed" if jax.default_backend() == "cpu" else "per-regularizer")
  # Paper scale: both datasets, every A.5 β, Fig. 4's four partners, the paper UNet, the pixel baselines.
  paper = _fig3("paper", "per-regularizer")
  raes = [r for r in paper if "/rae_" in r.name]
  assert sum(r.members for r in raes) == 184 + 4 * 24
  assert {r.name for r in paper} >= {"omniglot/pixel", "quickdraw/pixel", "quickdraw/eval"}
  assert study.load_config(next(r for r in paper if r.name == "omniglot/ldm_kl")).ldm.unet == "paper"


def test_load_config_types_overrides_and_refuses_unknown_keys():
  run = study.Run("x", "configs/rae.py:omniglot,reg=kl", (("sweep.betas", "(1, 2)"), ("train.lr", "1"),
                                                          ("data.data_dir", "123")))
  cfg = study.load_config(run, extra=(("train.epochs", "7"),))
  assert cfg.sweep.betas == (1, 2) and cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
  assert cfg.data.data_dir == "123" and cfg.train.epochs == 7
  with pytest.raises(KeyError, match="train.lrr"):
    study.load_config(study.Run("x", "configs/rae.py", (("train.lrr", "1"),)))


def test_hosts_split_every_run_exactly_once():
  runs = _paper_grid()[0]
  shares = [study.owned(runs, 3, h) for h in range(3)]
  assert sorted(r.name for s in shares for r in s) == sorted(r.name for r in runs)
  assert max(map(len, shares)) - min(map(len, shares)) <= 1
  with pytest.raises(ValueError, match="--host 3"):
    study.owned(runs, 3, 3)


def test_state_and_command_resume_an_interrupted_run(tmp_path):
  run = study.Run("omniglot/rae_kl", "configs/rae.py:omniglot,reg=kl", (("train.epochs", "3"),))
  assert study.state(tmp_path, run) == "new" and "--resume" not in study.command(tmp_path, run)
  (tmp_path / run.name / "checkpoints" / "2").mkdir(parents=True)
  (tmp_path / run.name / "checkpoints" / "10").mkdir()
  assert study.state(tmp_path, run) == "checkpoint 10"
  cmd = study.command(tmp_path, run, extra=(("train.lr", "0.1"),))
  assert cmd[-1] == "--resume" and "--config.train.epochs=3" in cmd and "--config.train.lr=0.1" in cmd
  (tmp_path / run.name / "summary.json").write_text("{}")
  assert study.state(tmp_path, run) == "done"
  ldm = study.Run("omniglot/ldm_kl", "configs/ldm.py:omniglot", requires=("omniglot/rae_none",))
  with pytest.raises(RuntimeError, match="rae_none"):
    study.execute(tmp_path, [ldm])


@pytest.mark.real_data
def test_dry_run_prints_the_grid_and_device_hours_from_a_measured_step(tmp_path):
  raes, _, ldms, evals = _paper_grid()
  out = io.StringIO()
  rows = study.dry_run(tmp_path, raes + evals[:2], step_seconds=0.05, out=out)
  lines = [json.loads(l) for l in out.getvalue().splitlines()]
  assert lines[:-1] == rows and len(rows) == len(raes) + 2
  kl = next(r for r in rows if r["run"] == "omniglot/rae_kl")
  assert kl["steps"] == 300 * (29460 // 128)  # 300 epochs of the 29,460 paper-train drawings, batches of 128
  assert kl["device_hours"] == pytest.approx(0.05 * 11 * kl["steps"] / 3600)
  total = lines[-1]
  assert total["models"] == 184 + 2 + 92 and total["not_estimated"] == ["critics", "evaluate"]
  # Measured: the tiny sweep's real step, compiled and timed on this host.
  probe = study.dry_run(tmp_path, [study.Run("t", "configs/rae.py:omniglot,reg=kl,tiny", members=2)], out=io.StringIO())
  assert 0 < probe[0]["step_seconds"] < 60 and probe[0]["device_hours"] > 0


@pytest.mark.slow
@pytest.mark.real_data
def test_a_killed_study_restarted_with_the_same_command_ends_with_the_same_checkpoints(tmp_path):
  script = [sys.executable, "experiments/grids.py", "--tiny", "--datasets", "omniglot",
            "--regularizers", "kl", "--set", "train.epochs=3"]
  run = lambda root: subprocess.run([*script, "--root", str(root)], cwd=REPO, capture_output=True, text=True,
                                    timeout=1800)
  ref = run(tmp_path / "ref")
  assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
  # The same study, killed (SIGKILL, like a preemption) once the kl sweep has its first checkpoint.
  proc = subprocess.Popen([*script, "--root", str(tmp_path / "cut")], cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
  ckpt = tmp_path / "cut" / "omniglot" / "rae_kl" / "checkpoints" / "1"
  while not (ckpt / "commit_success.txt").exists() and not ckpt.with_name("2").exists():
    assert proc.poll() is None, "the study ended before it could be interrupted"
    time.sleep(0.5)
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()
  first = grids.rae_runs(["omniglot"], ["kl"], tiny=True)[1]
  assert study.state(tmp_path / "cut", first).startswith("checkpoint")
  again = run(tmp_path / "cut")
  assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
  assert "omniglot/rae_none: done" in again.stdout and "checkpoint" in again.stdout

  from ldm_jax import rae
  for name in ("rae_none", "rae_kl"):
    a = rae.load_sweep(tmp_path / "ref" / "omniglot" / name)[2]
    b = rae.load_sweep(tmp_path / "cut" / "omniglot" / name)[2]
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
