"""The entry point: config errors, and a killed run that resumes to the same parameters as an uninterrupted one."""

import json
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import REPO, run_main

from ldm_jax import rae
from ldm_jax.train import loop

pytestmark = pytest.mark.real_data

TINY = ["--config=configs/rae.py:omniglot,tiny", "--config.data.max_train_examples=320",
        "--config.train.batch_size=32", "--config.train.epochs=4", "--config.eval.episodes=20"]


def test_unknown_config_key_fails_before_running(tmp_path):
  out = run_main(*TINY, "--config.rae.no_such_key=1", f"--workdir={tmp_path}/w")
  assert out.returncode != 0 and "no_such_key" in out.stderr
  assert not (tmp_path / "w").exists()


def test_wrong_config_type_fails_before_running(tmp_path):
  out = run_main(*TINY, "--config.train.epochs=many", f"--workdir={tmp_path}/w")
  assert out.returncode != 0 and "epochs" in out.stderr
  assert not (tmp_path / "w").exists()


def _final_params(workdir, member):
  _, variables, info = rae.load_member(workdir, member)
  return variables, info


def test_killed_run_resumes_to_the_same_result(tmp_path):
  ref = run_main(*TINY, f"--workdir={tmp_path}/ref")
  assert ref.returncode == 0, ref.stderr[-2000:]
  # The same run, killed (SIGKILL) once its first checkpoint is on disk, then resumed.
  work = tmp_path / "killed"
  proc = subprocess.Popen([sys.executable, "-m", "ldm_jax.main", *TINY, f"--workdir={work}"], cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 600
  while not (work / "checkpoints" / "1").exists() and proc.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  done = sorted(int(p.name) for p in (work / "checkpoints").iterdir() if p.name.isdigit())
  assert done and done[-1] < 4, f"the run was not interrupted (checkpoints {done})"

  again = run_main(*TINY, f"--workdir={work}")
  assert again.returncode == 2 and "--resume" in again.stderr  # nothing is overwritten without --resume
  other = run_main(*TINY, "--config.rae.latent_dim=32", "--resume", f"--workdir={work}")
  assert other.returncode == 2 and "rae.latent_dim" in other.stderr  # a checkpoint from another config
  resumed = run_main(*TINY, "--resume", f"--workdir={work}")
  assert resumed.returncode == 0, resumed.stderr[-2000:]

  for member in (0, 1):
    (a, info_a), (b, _) = _final_params(tmp_path / "ref", member), _final_params(work, member)
    assert info_a["beta"]["prototype"] == (0.0, 1.0)[member]
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_array_equal(x, y)
  # metrics: one record per (epoch, member), loadable per member, and the reconstruction loss fell
  recs = loop.read_metrics(work, member=1)
  assert [r["epoch"] for r in recs] == [1, 2, 3, 4]
  assert recs[-1]["recon"] < recs[0]["recon"]
  summary = json.loads((work / "summary.json").read_text())
  assert len(summary["members"]) == 2 and 0 <= summary["members"][1]["oneshot_accuracy"] <= 1
