"""The one entry point: `python -m ldm_jax.main --config=configs/<job>.py[:arg] --workdir=DIR [--resume]`.

Config values are overridden with `--config.<key>=<value>`; the config is locked, so an unknown key or a value of
the wrong type stops the run before anything starts. On a cluster, start the same command once per host (or GPU):
`ldm_jax.distributed` reads the coordinator from the environment (JAX_COORDINATOR_ADDRESS/JAX_NUM_PROCESSES/
JAX_PROCESS_ID, SLURM, Open MPI, TPU VMs).
"""

from __future__ import annotations

import logging
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Job config file (configs/<job>.py[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and outputs.")
_RESUME = flags.DEFINE_bool("resume", False, "Continue from the last checkpoint in --workdir.")
flags.mark_flags_as_required(["config", "workdir"])

JOBS = ("rae", "ldm", "critics", "evaluate", "imle", "imle_oneshot", "sketch", "demo")


def train_and_evaluate(config, workdir: str, resume: bool = False):
  """Dispatches on `config.job`."""
  if config.job == "rae":
    from ldm_jax.train import rae
    return rae.train_and_evaluate(config, workdir, resume=resume)
  if config.job == "ldm":
    from ldm_jax.train import ldm
    return ldm.train_and_evaluate(config, workdir, resume=resume)
  if config.job == "critics":
    from ldm_jax.train import critics
    return critics.train_and_evaluate(config, workdir, resume=resume)
  if config.job == "evaluate":
    from ldm_jax.eval import evaluate
    return evaluate.train_and_evaluate(config, workdir, resume=resume)
  if config.job == "imle":
    from ldm_jax.imle import job
    return job.train_and_evaluate(config, workdir, resume=resume)
  if config.job == "imle_oneshot":
    from ldm_jax.imle import oneshot_job
    return oneshot_job.train_and_evaluate(config, workdir, resume=resume)
  if config.job == "sketch":
    from ldm_jax.sketch import job
    return job.train_and_evaluate(config, workdir, resume=resume)
  if config.job == "demo":
    from ldm_jax.train import demo
    return demo.train_and_evaluate(config, workdir, resume=resume)
  raise ValueError(f"unknown job {config.job!r}; known jobs: {JOBS}")


def main(argv):
  del argv
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
  logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every file it writes through absl
  from ldm_jax import checkpoint, distributed
  distributed.initialize()  # a no-op unless the environment names a cluster (multi-host runs)
  from ldm_jax.data import DataError
  try:
    train_and_evaluate(_CONFIG.value, _WORKDIR.value, resume=_RESUME.value)
  except (DataError, checkpoint.ConfigMismatchError, checkpoint.ExistingRunError, FloatingPointError,
          ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(app.run(main))
