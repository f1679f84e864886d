"""Multi-host runs: the environment → jax.distributed arguments, and a 2-process CPU sweep equal to 1 process."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import REPO

from ldm_jax import distributed


def test_cluster_kwargs_from_each_convention():
  assert distributed.cluster_kwargs({}) is None
  assert distributed.cluster_kwargs({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4",
                                     "JAX_PROCESS_ID": "3"}) == {
      "coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}
  with pytest.raises(ValueError, match="JAX_PROCESS_ID"):
    distributed.cluster_kwargs({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2"})
  # SLURM / Open MPI / TPU VMs: JAX reads the launcher's own variables (no arguments); one task is one process.
  assert distributed.cluster_kwargs({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "8"}) == {}
  assert distributed.cluster_kwargs({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}) is None
  assert distributed.cluster_kwargs({"OMPI_COMM_WORLD_SIZE": "2"}) == {}
  assert distributed.cluster_kwargs({"TPU_WORKER_HOSTNAMES": "t0,t1"}) == {}
  assert distributed.cluster_kwargs({"TPU_WORKER_HOSTNAMES": "t0"}) is None
  assert distributed.cluster_kwargs({"LDM_JAX_DISTRIBUTED": "1"}) == {}


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


SWEEP_ARGS = ["--config=configs/rae.py:tiny,reg=kl", "--config.sweep.betas=(0.0,1e-3,1e-2,0.1)",
              "--config.train.sweep_mode=vmap", "--config.data.max_train_examples=160", "--config.train.batch_size=16",
              "--config.eval.episodes=10"]


def _main(workdir, env, devices: int):
  env = {**os.environ, **env, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  return subprocess.Popen([sys.executable, "-m", "ldm_jax.main", *SWEEP_ARGS, f"--workdir={workdir}"], cwd=REPO,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc, timeout=900):
  out, _ = proc.communicate(timeout=timeout)
  assert proc.returncode == 0, out[-4000:]
  return out


@pytest.mark.real_data
def test_two_process_sweep_equals_one_process(tmp_path):
  """2 processes × 2 CPU devices (loopback coordinator, gloo collectives) train a 4-member RAE sweep on a 4 × 1 mesh:
  the metrics and the final checkpoint equal those of one process with 4 devices, and process 0 alone writes."""
  port = _free_port()
  procs = [_main(tmp_path / "multi", {"JAX_COORDINATOR_ADDRESS": f"localhost:{port}", "JAX_NUM_PROCESSES": "2",
                                      "JAX_PROCESS_ID": str(i)}, devices=2) for i in range(2)]
  outs = [_finish(p) for p in procs]
  assert "process 1 of 2; 2 local of 4 devices" in outs[1]
  _finish(_main(tmp_path / "single", {}, devices=4))

  read = lambda run: [json.loads(l) for l in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
  multi, single = read("multi"), read("single")
  assert [(r["epoch"], r["member"]) for r in multi] == [(e, m) for e in (1, 2) for m in range(4)]  # written once
  for a, b in zip(multi, single):
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
  sa = json.loads((tmp_path / "multi" / "summary.json").read_text())["members"]
  sb = json.loads((tmp_path / "single" / "summary.json").read_text())["members"]
  assert [m["oneshot_accuracy"] for m in sa] == pytest.approx([m["oneshot_accuracy"] for m in sb], abs=1e-6)

  from ldm_jax import rae
  _, _, va, _, _ = rae.load_sweep(tmp_path / "multi")
  _, _, vb, _, _ = rae.load_sweep(tmp_path / "single")
  for a, b in zip(va, vb):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
