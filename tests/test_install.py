"""A plain (non-editable) install runs jobs and studies from any directory: the package carries its configs, and
`--config=configs/<job>.py` finds the installed file."""

import json
import os
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
