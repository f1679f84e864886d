"""The decoder's transposed convolutions alone: shifted-block GEMMs, batch-chunked ('matmul') vs sub-pixel 3×3 im2col.

    python experiments/bench_convt.py [--quick]

ConvT(k4, s2, p1) forward + both gradients, 10 of them in one `lax.scan` (as inside an epoch), batch 128, at the
RAE's three decoder layers. One JSON line per layer: baseline = 'im2col', candidate = 'matmul' (layers/s).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
from benchlib import emit

from ldm_jax.models import layers

LAYERS = ((128, 64, 6), (64, 32, 12), (32, 16, 24))   # (C_in, C_out, input size) of Table 1's decoder


def ms_per_layer(impl: str, cin: int, cout: int, h: int, repeats: int, n: int = 10) -> float:
  x = jax.random.normal(jax.random.PRNGKey(0), (128, h, h, cin))
  k = 0.01 * jax.random.normal(jax.random.PRNGKey(1), (4, 4, cin, cout))

  def body(kk, _):
    gx, gk = jax.grad(lambda x, kk: jnp.sum(jnp.sin(layers.conv_transpose4x4_stride2(x, kk, impl))), (0, 1))(x, kk)
    return kk - 1e-6 * gk + 1e-9 * jnp.sum(gx), None

  f = jax.jit(lambda kk: jax.lax.scan(body, kk, None, length=n)[0])
  jax.block_until_ready(f(k))
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(f(k))
    best = min(best, time.perf_counter() - t)
  return best / n * 1e3


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true")
  repeats = 2 if parser.parse_args().quick else 5
  for cin, cout, h in LAYERS:
    base, cand = (ms_per_layer(i, cin, cout, h, repeats) for i in ("im2col", "matmul"))
    emit(f"convt_{cin}to{cout}_{h}px", "sub-pixel 3x3 im2col (im2col)", "shifted-block GEMMs (matmul)", "layers/s",
         1e3 / base, 1e3 / cand, batch=128)


if __name__ == "__main__":
  main()
