"""Tests run on the real data in ../shared/data (CI has it at the same relative path)."""

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
if "LDM_JAX_DATA_DIR" not in os.environ and SHARED_DATA.exists():
  os.environ["LDM_JAX_DATA_DIR"] = str(SHARED_DATA)


def pytest_collection_modifyitems(config, items):
  if not pathlib.Path(os.environ.get("LDM_JAX_DATA_DIR", SHARED_DATA)).exists():
    skip = pytest.mark.skip(reason="no data dir: set LDM_JAX_DATA_DIR or place shared/data beside the repo")
    for item in items:
      if "real_data" in item.keywords:
        item.add_marker(skip)


def run_main(*args, env=None, timeout=900):
  """Runs `python -m ldm_jax.main` in a fresh process; returns the CompletedProcess."""
  full_env = {**os.environ, **(env or {})}
  return subprocess.run([sys.executable, "-m", "ldm_jax.main", *args], cwd=REPO, env=full_env, capture_output=True,
                        text=True, timeout=timeout)


@pytest.fixture(scope="session")
def omniglot_test():
  from ldm_jax import data
  return data.load("omniglot", "paper_test")
