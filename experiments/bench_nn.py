"""RS-IMLE's nearest-neighbour-with-rejection kernel vs brute-force searches, side by side.

    python experiments/bench_nn.py [--quick]

For n data points and a pool of m = 10n samples on the unit sphere in d dims: queries/s (data points answered
per second) of `search.rejection_nearest` (jit, tiled, exact) vs numpy brute force (one BLAS matmul for the whole
n × m distance matrix, then rejection and argmin) and, when installed, scikit-learn's and faiss-cpu's exact
brute-force searches (followed by the same rejection). Peak memory: the kernel's working set (the largest
distance block it holds) vs the baseline's n × m matrix; on a GPU also the allocator's peak.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from benchlib import emit, seconds_per_call

from ldm_jax.imle import search


def numpy_brute_force(data: np.ndarray, pool: np.ndarray, epsilon: float):
  d2 = (data * data).sum(1)[:, None] + (pool * pool).sum(1)[None, :] - 2.0 * data @ pool.T
  rejected = (d2 < epsilon ** 2).any(0)
  d2[:, rejected] = np.inf
  return d2.argmin(1), rejected


def _sphere(rng, n, d):
  x = rng.normal(size=(n, d)).astype(np.float32)
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def _time(fn, repeats):
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return sorted(times)[len(times) // 2]


def bench(n: int, d: int, repeats: int, epsilon: float = 0.5) -> None:
  m = 10 * n
  rng = np.random.default_rng(0)
  data, pool = _sphere(rng, n, d), _sphere(rng, m, d)
  tile_n, tile_m = max(n, 1024), 4096
  jd, jp = jnp.asarray(data), jnp.asarray(pool)
  t_kernel = seconds_per_call(search.rejection_nearest, jd, jp, epsilon, tile_n, tile_m, repeats=repeats)
  got = np.asarray(search.rejection_nearest(jd, jp, epsilon, tile_n, tile_m)[0])
  stats = jax.devices()[0].memory_stats() or {}
  extra = {"n": n, "m": m, "d": d, "epsilon": epsilon,
           "kernel_block_bytes": 4 * min(n, tile_n) * tile_m, "baseline_matrix_bytes": 4 * n * m}
  if "peak_bytes_in_use" in stats:
    extra["device_peak_bytes"] = stats["peak_bytes_in_use"]
  t_numpy = _time(lambda: numpy_brute_force(data, pool, epsilon), repeats)
  want = numpy_brute_force(data, pool, epsilon)[0]
  extra["agree_with_numpy"] = float((got == want).mean())
  emit("rejection_nn", "numpy brute force (one matmul)", "jit tiled kernel", "queries/s", n / t_numpy,
       n / t_kernel, **extra)
  try:
    from sklearn.neighbors import NearestNeighbors
    def sk():
      rejected = NearestNeighbors(radius=epsilon, algorithm="brute").fit(data).radius_neighbors(
          pool, return_distance=False)
      keep = np.array([len(r) == 0 for r in rejected])
      NearestNeighbors(n_neighbors=1, algorithm="brute").fit(pool[keep]).kneighbors(data)
    emit("rejection_nn", "scikit-learn brute force", "jit tiled kernel", "queries/s", n / _time(sk, repeats),
         n / t_kernel, n=n, m=m, d=d)
  except ImportError:
    pass
  try:
    import faiss
    def fs():
      index = faiss.IndexFlatL2(d)
      index.add(data)
      dist, _ = index.search(pool, 1)
      keep = dist[:, 0] >= epsilon ** 2
      index = faiss.IndexFlatL2(d)
      index.add(pool[keep])
      index.search(data, 1)
    emit("rejection_nn", "faiss-cpu IndexFlatL2", "jit tiled kernel", "queries/s", n / _time(fs, repeats),
         n / t_kernel, n=n, m=m, d=d)
  except ImportError:
    pass


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--quick", action="store_true", help="a few CPU minutes")
  p.add_argument("--sizes", default=None, help="n:d pairs, e.g. 1000:512,10000:4096 (m = 10n)")
  a = p.parse_args()
  sizes = [(1000, 512)] if a.quick else [(1000, 512), (1000, 4096), (10000, 512), (10000, 4096)]
  if a.sizes:
    sizes = [tuple(int(v) for v in pair.split(":")) for pair in a.sizes.split(",")]
  for n, d in sizes:
    bench(n, d, repeats=2 if a.quick else 3)


if __name__ == "__main__":
  main()
