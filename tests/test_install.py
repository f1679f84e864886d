"""A plain (non-editable) install runs jobs and studies from any directory: the package carries its configs, and
`--config=configs/<job>.py` finds the installed file."""

import json
import os
import pathlib
import subprocess
import sys

import pytest
from conftest import REPO, run_main


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  """The package as pip installs it (a built wheel, no dependencies) in its own directory, used from another."""
  site = tmp_path_factory.mktemp("site")
  out = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--target", str(site), str(REPO)], capture_output=True, text=True, timeout=600)
  if out.returncode:
    pytest.skip(f"pip could not build the package here: {out.stderr.strip().splitlines()[-1:]}")
  elsewhere = tmp_path_factory.mktemp("elsewhere")
  env = {**os.environ, "PYTHONPATH": str(site)}
  return site, elsewhere, env


def _run(args, installed, timeout=600):
  site, cwd, env = installed
  return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.real_data
def test_an_installed_package_trains_a_job_from_its_own_configs(installed):
  site, cwd, _ = installed
  where = _run(["-c", "import ldm_jax, configs; print(ldm_jax.__file__); print(configs.__file__)"], installed)
  assert [p.startswith(str(site)) for p in where.stdout.split()] == [True, True], where.stdout + where.stderr
  out = _run(["-m", "ldm_jax.main", "--config=configs/rae.py:omniglot,tiny", f"--workdir={cwd}/rae",
              "--config.train.epochs=1"], installed)
  assert out.returncode == 0, out.stderr[-2000:]
  summary = json.loads((cwd / "rae" / "summary.json").read_text())
  here = run_main("--config=configs/rae.py:omniglot,tiny", f"--workdir={cwd}/rae_checkout", "--config.train.epochs=1")
  assert here.returncode == 0, here.stderr[-2000:]
  assert summary == json.loads((cwd / "rae_checkout" / "summary.json").read_text())   # the same job, the same run
  missing = _run(["-m", "ldm_jax.main", "--config=configs/nope.py", f"--workdir={cwd}/x"], installed)
  assert missing.returncode != 0 and "nope.py" in missing.stderr


def test_an_installed_package_plans_the_fig3_study(installed):
  site, cwd, _ = installed
  out = _run(["-m", "ldm_jax.study.fig3", "--scale", "cpu", "--tiny", "--root", "fig3", "--dry-run",
              "--step-seconds", "0.5"], installed)
  assert out.returncode == 0, out.stderr[-2000:]
  plan = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
  assert plan[-1]["runs"] == len(plan) - 1 and plan[-1]["runs_left"] == plan[-1]["runs"]
  assert {p["job"] for p in plan[:-1]} == {"rae", "ldm", "critics", "evaluate"}


@pytest.mark.real_data
@pytest.mark.slow   # ~4 min on one CI worker; the in-process pipeline tests (test_ldm.py) cover the stages
def test_an_installed_package_runs_the_demo_from_its_own_configs(installed):
  """The README's main job, tiny, from the installed package in another directory: every stage runs and the
  summary it writes is what the stages wrote (RAE accuracies, the evaluation's points on the human plane, each
  scored LDM an export inside this workdir)."""
  site, cwd, _ = installed
  out = _run(["-m", "ldm_jax.main", "--config=configs/demo.py:tiny", f"--workdir={cwd}/demo"], installed, timeout=1500)
  assert out.returncode == 0, out.stderr[-2000:]
  demo = cwd / "demo"
  summary = json.loads((demo / "demo_metrics.json").read_text())
  assert summary["rae"] == json.loads((demo / "rae" / "summary.json").read_text())
  points = json.loads((demo / "eval" / "scores.json").read_text())["points"]
  assert [(p["name"], p["recognizability"], p["distance_to_human"]) for p in summary["eval"]["points"]] == \
      [(p["name"], p["recognizability"], p["distance_to_human"]) for p in points]
  assert points[0]["name"] == "humans" and points[0]["distance_to_human"] == 0.0
  scored = [p for p in points if p["kind"] == "ldm"]
  assert len(scored) == len(summary["ldm"]["members"]) == 2
  assert all((demo / "ldm" / "models").resolve() in pathlib.Path(p["path"]).resolve().parents for p in scored)
