"""Where one RAE's scanned epoch spends its time: a profiler trace of one epoch, XLA's kernels summed by kind.

    python experiments/profile_rae_step.py [--impl matmul] [--drawings 1280] [--top 25]

A diagnostic, not a benchmark (no baseline): prints the busy time per kernel kind summed over the runtime's
threads ('ynn_fusion' / 'dot' = the GEMMs on XLA:CPU; slices, pads, concatenations, dynamic-update-slices and
broadcasts = data movement), then the largest single non-GEMM kernels. Read it beside `bench_rae_scan.py`.
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import re
import tempfile

import jax
from bench_rae_scan import runners

from configs import rae as rae_config
from ldm_jax import data as data_lib
from ldm_jax.data import pipeline

RUNTIME_EVENTS = ("ThunkExecutor", "while", "SlinkyThreadPool", "end: ")
GEMM_KINDS = ("ynn_fusion", "dot_general", "dot")


def kernel_times(trace_dir: str) -> tuple[collections.Counter, collections.Counter]:
  """(ns per kernel name, calls per kernel name) over the runtime's worker threads of the trace's host plane."""
  path = next(pathlib.Path(trace_dir).rglob("*.xplane.pb"))
  ns, calls = collections.Counter(), collections.Counter()
  for plane in jax.profiler.ProfileData.from_file(str(path)).planes:
    for line in plane.lines:
      if "Eigen" not in line.name:   # XLA:CPU's worker threads; the Python thread only waits
        continue
      for ev in line.events:
        if not ev.name.startswith(RUNTIME_EVENTS):
          ns[ev.name] += ev.duration_ns
          calls[ev.name] += 1
  return ns, calls


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--impl", default="matmul")
  parser.add_argument("--drawings", type=int, default=1280)
  parser.add_argument("--top", type=int, default=25)
  args = parser.parse_args()
  cfg = rae_config.get_config("omniglot")
  cfg.rae.conv_impl = args.impl
  train = data_lib.load_split(cfg, "paper_train", args.drawings)
  scanned, _, images = runners(cfg, train, pipeline.to_device(train))
  jax.block_until_ready(scanned())   # compile
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      jax.block_until_ready(scanned())
    ns, calls = kernel_times(trace_dir)
  kinds = collections.Counter()
  for name, t in ns.items():
    kinds[re.sub(r"[.\d]+$", "", name)] += t
  total = sum(kinds.values())
  gemm = sum(t for k, t in kinds.items() if k in GEMM_KINDS)
  print(f"# {args.impl}, {images} drawings: {total / 1e6:.0f} ms busy over the threads, GEMMs {gemm / total:.0%}")
  for kind, t in kinds.most_common(args.top):
    print(f"{t / 1e6:9.1f} ms  {t / total:6.1%}  {kind}")
  print("# largest non-GEMM kernels (ms, calls, name)")
  for name, t in [(n, t) for n, t in ns.most_common() if not n.startswith(GEMM_KINDS)][:args.top]:
    print(f"{t / 1e6:9.1f} ms  {calls[name]:6d}  {name}")


if __name__ == "__main__":
  main()
