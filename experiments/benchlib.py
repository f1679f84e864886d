"""Shared by the benchmarks: timing and the one-JSON-line-per-result convention.

Each result: bench, baseline, candidate, unit, baseline_value, candidate_value, ratio (candidate throughput ÷
baseline throughput, both measured in the same run) and device.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import time
from typing import Callable

import jax


def device_name() -> str:
  """The accelerator, or on a CPU its model and core count: the CI's 2-core machines are not all the same CPU, and
  ratios moved with it (experiments/BENCHMARKS.md)."""
  d = jax.devices()[0]
  if d.platform == "cpu":
    return f"cpu:{cpu_model()} x{os.cpu_count()} cores"
  return f"{d.platform}:{d.device_kind} x{jax.device_count()}"


def cpu_model() -> str:
  try:
    lines = pathlib.Path("/proc/cpuinfo").read_text().splitlines()
  except OSError:
    return platform.processor() or "unknown"
  return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")


def seconds_per_call(fn, *args, repeats: int = 3, warmup: int = 1) -> float:
  """Median wall time of fn(*args) after `warmup` calls (which compile), blocking on the result."""
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return sorted(times)[len(times) // 2]


def interleaved_seconds(fns: dict[str, Callable], rounds: int, warmup: int = 1) -> dict[str, float]:
  """Median wall time of each fn() (blocking on its result), the calls interleaved round by round.

  This 2-core VM's speed drifts by ±20 % within minutes (every program alike, CPU time too); timing one side
  after the other would fold that drift into the ratio, so each round times every side once."""
  for fn in fns.values():
    for _ in range(warmup):
      jax.block_until_ready(fn())
  times = {name: [] for name in fns}
  for _ in range(rounds):
    for name, fn in fns.items():
      t = time.perf_counter()
      jax.block_until_ready(fn())
      times[name].append(time.perf_counter() - t)
  return {name: sorted(ts)[len(ts) // 2] for name, ts in times.items()}


def emit(bench: str, baseline: str, candidate: str, unit: str, baseline_value: float, candidate_value: float,
         **extra) -> dict:
  record = {"bench": bench, "baseline": baseline, "candidate": candidate, "unit": unit,
            "baseline_value": round(baseline_value, 3), "candidate_value": round(candidate_value, 3),
            "ratio": round(candidate_value / baseline_value, 3), "device": device_name(), **extra}
  print(json.dumps(record), flush=True)
  return record
