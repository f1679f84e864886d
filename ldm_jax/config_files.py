"""Where a job config file is: `configs/<job>.py[:arg]` names the file in the working directory when it is there
(a checkout), else the same file of the installed `configs` package (a `pip install`, run from anywhere)."""

from __future__ import annotations

import importlib.util
import pathlib


def resolve(spec: str) -> str:
  """'configs/rae.py:omniglot' → the same spec with a path that exists (unchanged when none does: the caller's
  error then names what was asked for)."""
  path, sep, arg = spec.partition(":")
  p = pathlib.Path(path)
  if p.exists() or p.is_absolute() or not p.parts or p.parts[0] != "configs":
    return spec
  found = importlib.util.find_spec("configs")
  if found is None or not found.submodule_search_locations:
    return spec
  installed = pathlib.Path(list(found.submodule_search_locations)[0]).joinpath(*p.parts[1:])
  return f"{installed}{sep}{arg}" if installed.exists() else spec


def load(spec: str):
  """The ConfigDict `get_config(arg)` of a config spec (resolved as above)."""
  path, _, arg = resolve(spec).partition(":")
  module_spec = importlib.util.spec_from_file_location("_ldm_jax_config", path)
  if module_spec is None:
    raise FileNotFoundError(f"no config file {path!r}")
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)
