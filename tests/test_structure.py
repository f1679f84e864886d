"""The package's layering, read from the source: jobs are leaves, and no two parts of the library import each
other (no cycle between subpackages and top-level modules, imports inside functions included)."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "ldm_jax"
ABOVE_JOBS = {"ldm_jax.main", "ldm_jax.study"}   # the entry point and the study runner start jobs


def _entry_point(module: str) -> bool:
  """Command lines (`python -m ldm_jax.data`, `ldm_jax.generate`): above the library, imported by nobody."""
  return module.endswith(".__main__") or module in ("ldm_jax.main", "ldm_jax.generate")


def _modules() -> dict[str, pathlib.Path]:
  out = {}
  for path in ROOT.rglob("*.py"):
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
      parts.pop()
    out[".".join(parts)] = path
  return out


MODULES = _modules()


def imports_of(path: pathlib.Path) -> set[str]:
  """Every ldm_jax module `path` imports, at any depth (`from ldm_jax import x` names module x when there is one)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found |= {a.name for a in node.names if a.name.startswith("ldm_jax")}
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ldm_jax") and not node.level:
      for a in node.names:
        sub = f"{node.module}.{a.name}"
        found.add(sub if sub in MODULES else node.module)
  return found


def unit(module: str) -> str:
  """A subpackage (ldm_jax.data, ldm_jax.train, …) or a top-level module (ldm_jax.ldm, ldm_jax.rae, …)."""
  parts = module.split(".")
  return ".".join(parts[:2]) if len(parts) > 2 or module in MODULES and MODULES[module].name == "__init__.py" \
      else module


def unit_graph() -> dict[str, set[str]]:
  graph: dict[str, set[str]] = {}
  for module, path in MODULES.items():
    if _entry_point(module):
      continue
    for imported in imports_of(path):
      a, b = unit(module), unit(imported)
      if a != b and b != "ldm_jax":
        graph.setdefault(a, set()).add(b)
  return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected components with more than one node (Tarjan)."""
  index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

  def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in graph.get(v, ()):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      comp = []
      while True:
        w = stack.pop()
        on.discard(w)
        comp.append(w)
        if w == v:
          break
      if len(comp) > 1:
        out.append(sorted(comp))

  for v in list(graph):
    if v not in index:
      visit(v)
  return out


def test_library_code_never_imports_a_job():
  offenders = sorted(f"{m} imports {i}" for m, p in MODULES.items() for i in imports_of(p)
                     if i.startswith("ldm_jax.jobs") and not m.startswith("ldm_jax.jobs") and m not in ABOVE_JOBS)
  assert not offenders, offenders


def test_no_import_cycle_between_parts_of_the_library():
  assert cycles(unit_graph()) == []


def test_every_job_is_a_module_of_ldm_jax_jobs_with_one_entry_point():
  from ldm_jax import jobs
  for name in jobs.JOBS:
    assert f"ldm_jax.jobs.{name}" in MODULES
    assert "def train_and_evaluate(" in MODULES[f"ldm_jax.jobs.{name}"].read_text()
  assert sorted(jobs.JOBS) == sorted(m.rsplit(".", 1)[1] for m in MODULES if m.startswith("ldm_jax.jobs."))


def test_the_cycle_finder_finds_a_planted_cycle():
  assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
  assert cycles({"a": {"b"}, "b": set()}) == []
  assert unit("ldm_jax.train.loop") == "ldm_jax.train" and unit("ldm_jax.rae") == "ldm_jax.rae"
