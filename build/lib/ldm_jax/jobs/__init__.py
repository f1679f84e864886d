"""The jobs: one module per `config.job`, each a leaf with `train_and_evaluate(config, workdir, resume)`.

Jobs compose the library (data → RAE → latent diffusion → sampling → evaluation; IMLE and SketchEmbedNet beside
them) and write a workdir; no library module imports a job (tests/test_structure.py). `ldm_jax.main` checks the
config and the workdir, then `run` dispatches here by name.
"""

from __future__ import annotations

import importlib

JOBS = ("rae", "ldm", "critics", "evaluate", "imle", "imle_oneshot", "sketch", "demo")   # = module names


def run(config, workdir: str, resume: bool = False):
  """The job `config.job` on `workdir`, its config values checked first (one-line `ConfigError`s)."""
  from ldm_jax import config_checks
  if config.job not in JOBS:
    raise ValueError(f"unknown job {config.job!r}; known jobs: {JOBS}")
  config_checks.validate(config)
  return importlib.import_module(f"ldm_jax.jobs.{config.job}").train_and_evaluate(config, workdir, resume=resume)
