"""Shared by the benchmarks: timing and the one-JSON-line-per-result convention.

Each result: bench, baseline, candidate, unit, baseline_value, candidate_value, ratio (candidate throughput ÷
baseline throughput, both measured in the same run) and device.
"""

from __future__ import annotations

import json
import time

import jax


def device_name() -> str:
  d = jax.devices()[0]
  return f"{d.platform}:{d.device_kind} x{jax.device_count()}"


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


def emit(bench: str, baseline: str, candidate: str, unit: str, baseline_value: float, candidate_value: float,
         **extra) -> dict:
  record = {"bench": bench, "baseline": baseline, "candidate": candidate, "unit": unit,
            "baseline_value": round(baseline_value, 3), "candidate_value": round(candidate_value, 3),
            "ratio": round(candidate_value / baseline_value, 3), "device": device_name(), **extra}
  print(json.dumps(record), flush=True)
  return record
