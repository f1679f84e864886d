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



def _config_file_keys(argv: list[str]) -> tuple[str, set[str]] | None:
  """(the config arg, its flattened keys) loaded straight from the config file named by --config, or None."""
  from ldm_jax import config_files
  spec_arg = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if not spec_arg:
    return None
  try:
    cfg = config_files.load(spec_arg)
  except Exception:  # the flag parser's own error is then the better message
    return None
  from ldm_jax.checkpoint import flatten
  keys = set(flatten(cfg.to_dict()))
  return spec_arg, keys | {k.rsplit(".", i)[0] for k in keys for i in range(1, k.count(".") + 1)}


def _flag_error(argv: list[str], error: Exception) -> str:
  """One line for a command line that does not parse: the unknown config key, or the parser's message."""
  loaded = _config_file_keys(argv)
  if loaded:
    spec_arg, keys = loaded
    for a in argv:
      if a.startswith("--config."):
        key = a[len("--config."):].split("=", 1)[0]
        if key not in keys:
          from ldm_jax.config_checks import renamed
          if renamed(key) in keys:
            return f"config key {key!r} (from {a}) is now {renamed(key)!r} in {spec_arg}"
          parent = key.rsplit(".", 1)[0] if "." in key else ""
          near = sorted(k for k in keys if k.rsplit(".", 1)[0] == parent and k.count(".") == key.count("."))
          return (f"unknown config key {key!r} (from {a}) in {spec_arg}"
                  + (f"; keys under {parent!r}: {', '.join(k.rsplit('.', 1)[-1] for k in near)}" if near else ""))
  return " ".join(str(error).split()) or type(error).__name__


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with any failure (unknown key, wrong type, bad config arg) as one line and exit 2.
  `--config=configs/...` outside a checkout names the installed package's file (`config_files.resolve`)."""
  from ldm_jax import config_files
  argv = [f"--config={config_files.resolve(a[len('--config='):])}" if a.startswith("--config=") else a
          for a in argv]
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # noqa: BLE001  (absl and ml_collections raise many types here)
    print(f"error: {_flag_error(argv, e)}", file=sys.stderr)
    sys.exit(2)


def run(config, workdir: str, resume: bool = False):
  """A job as the entry point runs it: config values checked, the workdir held by this job alone, an existing
  run refused without `resume` — all before any data is loaded or any file written — then the job."""
  from ldm_jax import config_checks, distributed, jobs
  from ldm_jax import workdir as workdir_lib
  config_checks.validate(config)
  workdir_lib.refuse_existing_run(workdir, resume)
  if not distributed.is_primary():  # one lock holder per run: the hosts of a multi-host run share the workdir
    return jobs.run(config, workdir, resume=resume)
  with workdir_lib.hold(workdir):
    return jobs.run(config, workdir, resume=resume)


def main(argv):
  del argv
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
  logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every file it writes through absl
  # "Unable to initialize backend 'tpu'" on every start
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
  from ldm_jax import checkpoint, distributed, manifest
  from ldm_jax import workdir as workdir_lib
  distributed.initialize()  # a no-op unless the environment names a cluster (multi-host runs)
  from ldm_jax.data import DataError
  try:
    run(_CONFIG.value, _WORKDIR.value, resume=_RESUME.value)
  except (DataError, checkpoint.ConfigMismatchError, workdir_lib.ExistingRunError, workdir_lib.WorkdirBusyError,
          manifest.CorruptFileError, FloatingPointError, ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(app.run(main, flags_parser=parse_flags))
