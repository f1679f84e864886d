"""JAX's multi-controller runtime: one Python process per host (or per GPU), all running the same program.

`initialize()` starts it from the environment before anything touches a device:
  * JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES, JAX_PROCESS_ID: any launcher;
  * SLURM (`srun`, more than one task) and Open MPI (`mpirun`): JAX reads their variables itself;
  * Cloud TPU VMs (more than one worker in TPU_WORKER_HOSTNAMES): JAX asks the TPU metadata;
  * LDM_JAX_DISTRIBUTED=1: let JAX auto-detect any other cluster it knows.
Nothing set: one process, nothing to start.

After that every process sees the global device list, so a mesh built from `jax.devices()` spans all hosts; jit
and orbax do the rest (each process computes on and writes the shards it holds). Host-side files (metrics,
summaries) are written by process 0 only.
"""

from __future__ import annotations

import logging
import os
import pathlib
from typing import Mapping

import jax
import numpy as np

log = logging.getLogger(__name__)
_started = False


def cluster_kwargs(environ: Mapping[str, str]) -> dict | None:
  """Arguments for `jax.distributed.initialize` from the environment, or None for a single process."""
  if environ.get("JAX_COORDINATOR_ADDRESS"):
    missing = [k for k in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID") if not environ.get(k)]
    if missing:
      raise ValueError(f"JAX_COORDINATOR_ADDRESS is set but {', '.join(missing)} is not: set the number of "
                       f"processes and this process's id (0-based) too")
    return {"coordinator_address": environ["JAX_COORDINATOR_ADDRESS"],
            "num_processes": int(environ["JAX_NUM_PROCESSES"]), "process_id": int(environ["JAX_PROCESS_ID"])}
  if int(environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in environ:
    return {}
  if int(environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
    return {}
  if "," in environ.get("TPU_WORKER_HOSTNAMES", ""):
    return {}
  if environ.get("LDM_JAX_DISTRIBUTED", "").lower() in ("1", "true", "yes"):
    return {}
  return None


def initialize(environ: Mapping[str, str] = os.environ) -> bool:
  """Starts the multi-controller runtime if the environment names a cluster; True if this is a multi-process run.
  Must run before the first JAX computation (the entry point calls it first)."""
  global _started
  if _started:
    return True
  kwargs = cluster_kwargs(environ)
  if kwargs is None:
    return False
  jax.distributed.initialize(**kwargs)
  _started = True
  log.info("process %d of %d; %d local of %d devices", jax.process_index(), jax.process_count(),
           jax.local_device_count(), jax.device_count())
  return True


def is_primary() -> bool:
  return jax.process_index() == 0


def write_text(path: str | pathlib.Path, text: str) -> None:
  """Host-side file written once (by process 0) however many processes run the job."""
  if is_primary():
    pathlib.Path(path).write_text(text)


def to_host(tree):
  """A pytree of (possibly multi-host sharded) arrays as numpy arrays on every process.

  Single process: `jax.device_get`. Several: arrays that span other hosts are all-gathered first, so code after
  training (evaluation, export) runs unchanged on each process."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils
  return jax.tree.map(lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True))
                      if isinstance(x, jax.Array) and not x.is_fully_addressable else np.asarray(x), tree)
