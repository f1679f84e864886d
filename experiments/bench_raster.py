"""The SketchEmbedNet rasteriser kernel vs the straightforward dense rasteriser, side by side.

    python experiments/bench_raster.py [--quick]

Drawings/s of `raster.render` (segment-chunked min with a custom VJP, O(B·H·W) memory) vs `raster.render_dense`
(every pixel against every segment: B × H·W × T), forward and forward + backward, at 28² and 48² for T = 64, on
real Omniglot strokes. Peak memory: XLA's temporary buffers of each compiled program (`memory_analysis`).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
from benchlib import emit, seconds_per_call

from ldm_jax import raster
from ldm_jax.data.sketches import load_sketches


def _programs(render, size: int):
  forward = jax.jit(lambda x, ref: render(x, size, reference=ref))
  weights = jax.random.uniform(jax.random.PRNGKey(0), (size, size))
  backward = jax.jit(jax.grad(lambda x, ref: jnp.sum(weights * render(x, size, reference=ref))))
  return forward, backward


def _temp_bytes(fn, *args) -> float:
  stats = fn.lower(*args).compile().memory_analysis()
  return float(getattr(stats, "temp_size_in_bytes", 0) or 0)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true")
  args = parser.parse_args()
  batch = 64 if args.quick else 256
  strokes = load_sketches("omniglot", max_len=64, max_examples=batch)["strokes"]
  truth = jnp.asarray(strokes)
  noisy = truth.at[:, 1:, :2].add(0.05 * jax.random.normal(jax.random.PRNGKey(1), truth[:, 1:, :2].shape))
  for size in (28, 48):
    kernel, dense = _programs(raster.render, size), _programs(raster.render_dense, size)
    for mode, k in (("forward", 0), ("forward+backward", 1)):
      t_dense = seconds_per_call(dense[k], noisy, truth)
      t_kernel = seconds_per_call(kernel[k], noisy, truth)
      emit("raster", f"dense {mode}", f"kernel {mode}", "drawings/s", batch / t_dense, batch / t_kernel,
           image_size=size, max_len=64, batch=batch,
           peak_temp_mib_dense=round(_temp_bytes(dense[k], noisy, truth) / 2 ** 20, 2),
           peak_temp_mib_kernel=round(_temp_bytes(kernel[k], noisy, truth) / 2 ** 20, 2))


if __name__ == "__main__":
  main()
