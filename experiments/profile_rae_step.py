"""Where an RAE sweep's scanned epoch spends its time: a profiler trace of one epoch, kernels summed by kind.

    python experiments/profile_rae_step.py [--runs matmul:1:vmap,s2d:4:vmap] [--drawings 1280] [--top 25]

A diagnostic, not a benchmark (no baseline). Each run is IMPL:K:MODE (conv implementation, sweep members, sweep
mode; K = 1 is one model). On a CPU it prints the busy time per kernel kind summed over the runtime's threads
('ynn_fusion' / 'dot' = the GEMMs on XLA:CPU; slices, pads, concatenations, dynamic-update-slices and broadcasts =
data movement); on a GPU the kernels on the device's streams, with kernels per step and busy vs wall time per step
(busy far under wall = the step waits on launches, not on arithmetic). Then the largest single kernels. Read it
beside `bench_rae_scan.py` and `bench_rae.py`.
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import re
import tempfile
import time

import jax
from bench_rae import epoch_runner

from configs import rae as rae_config
from ldm_jax import data as data_lib

RUNTIME_EVENTS = ("ThunkExecutor", "while", "SlinkyThreadPool", "end: ")
GEMM_KINDS = ("ynn_fusion", "dot_general", "dot", "gemm", "cutlass", "sm90_xmma", "nvjet", "cudnn")


def kernel_times(trace_dir: str) -> tuple[collections.Counter, collections.Counter, dict[str, str]]:
  """(ns per kernel name, calls per kernel name, the profiler's stats of each kernel's first event): XLA:CPU's
  worker threads, or a GPU's streams (whose stats name the HLO op a kernel runs)."""
  path = next(pathlib.Path(trace_dir).rglob("*.xplane.pb"))
  ns, calls, stats = collections.Counter(), collections.Counter(), {}
  gpu = jax.default_backend() == "gpu"
  for plane in jax.profiler.ProfileData.from_file(str(path)).planes:
    if gpu != plane.name.startswith("/device:GPU"):
      continue
    for line in plane.lines:
      # On a GPU the stream lines hold the kernels; on a CPU the Eigen worker threads (Python only waits).
      if not (line.name.startswith("Stream") if gpu else "Eigen" in line.name):
        continue
      for ev in line.events:
        if not ev.name.startswith(RUNTIME_EVENTS):
          ns[ev.name] += ev.duration_ns
          calls[ev.name] += 1
          if ev.name not in stats:
            stats[ev.name] = "; ".join(f"{k}={v}" for k, v in ev.stats if "op" in k or "name" in k)
  return ns, calls, stats


def kind_of(name: str) -> str:
  return re.sub(r"[.\d]+$", "", name)[:60]


def profile(cfg, train, impl: str, k: int, mode: str, top: int) -> None:
  c = cfg.copy_and_resolve_references()
  c.rae.conv_impl = impl
  run, images = epoch_runner(c, train, k, mode)
  jax.block_until_ready(run())   # compile
  t = time.perf_counter()
  jax.block_until_ready(run())
  wall = time.perf_counter() - t
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      jax.block_until_ready(run())
    ns, calls, stats = kernel_times(trace_dir)
    if not ns:   # a profiler whose planes are named otherwise: say what is there rather than divide by zero
      path = next(pathlib.Path(trace_dir).rglob("*.xplane.pb"))
      for plane in jax.profiler.ProfileData.from_file(str(path)).planes:
        print(f"# plane {plane.name}: lines {[line.name for line in plane.lines][:12]}")
      return
  steps = images // (k * c.train.batch_size)
  kinds = collections.Counter()
  for name, t in ns.items():
    kinds[kind_of(name)] += t
  total = sum(kinds.values())
  gemm = sum(t for kd, t in kinds.items() if kd.lower().startswith(GEMM_KINDS) or "gemm" in kd.lower())
  print(f"# {impl}, K={k} {mode}, {images} images ({steps} steps): busy {total / 1e6:.1f} ms, "
        f"wall {wall * 1e3:.1f} ms untraced; per step {sum(calls.values()) / steps:.0f} kernels, "
        f"busy {total / 1e3 / steps:.0f} us, wall {wall * 1e6 / steps:.0f} us; GEMM/conv kernels {gemm / total:.0%}")
  for kind, t in kinds.most_common(top):
    print(f"{t / 1e6:9.2f} ms  {t / total:6.1%}  {kind}")
  print("# largest single kernels (ms, calls, name)")
  for name, t in ns.most_common(top):
    print(f"{t / 1e6:9.2f} ms  {calls[name]:6d}  {name[:100]}")
    if stats.get(name):
      print(f"{'':26}{stats[name][:300]}")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--runs", default="matmul:1:vmap", help="IMPL:K:MODE, comma-separated")
  parser.add_argument("--drawings", type=int, default=1280)
  parser.add_argument("--top", type=int, default=25)
  args = parser.parse_args()
  cfg = rae_config.get_config("omniglot")
  cfg.data.max_train_examples = args.drawings
  train = data_lib.load_split(cfg, "paper_train", args.drawings)
  for spec in args.runs.split(","):
    impl, k, mode = spec.split(":")
    profile(cfg, train, impl, int(k), mode, args.top)


if __name__ == "__main__":
  main()
