"""RS-IMLE's hot kernel: exact nearest-neighbour selection with rejection (paper Algorithm 1), tiled and sharded.

For n data points and a pool of m generated samples, all in the search space (a fixed Gaussian projection to k
dims, each projected vector L2-normalised, so ε is a chord distance on the unit sphere, 0–2):

1. reject every pool sample within ε of ANY data point (ε = 0 rejects nothing: plain IMLE);
2. for each data point return the index and distance of its nearest remaining sample.

Both steps are `lax.scan`s over (data tile × pool tile) blocks, each block one matmul (‖a‖² + ‖b‖² − 2a·b), so
memory is O(tile_n · tile_m), never O(n · m); the search is exact. When the data fit in one tile (n ≤ tile_n, the
usual case: n is the training set) both steps share one pass over the pool. Ties go to the smallest pool index. A data
point with every sample rejected gets index −1 and distance +inf. `sharded_rejection_nearest` splits the pool over
a device mesh axis: each device rejects and searches its shard, then one `pmin` picks the global winner.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from ldm_jax.distances import sq_distances_matmul

NO_SAMPLE = -1


def make_projection(key: jax.Array, in_dim: int, out_dim: int) -> jax.Array:
  """The fixed random projection [in_dim, out_dim]: Gaussian, each output direction L2-normalised."""
  w = jax.random.normal(key, (out_dim, in_dim))
  return (w / jnp.linalg.norm(w, axis=1, keepdims=True)).T


def project(x: jax.Array, projection: jax.Array) -> jax.Array:
  """Flattened inputs [N, ...] → points on the unit sphere [N, k]."""
  y = x.reshape(x.shape[0], -1).astype(jnp.float32) @ projection
  return y / jnp.maximum(jnp.linalg.norm(y, axis=-1, keepdims=True), 1e-12)


def _tiles(x: jax.Array, tile: int) -> tuple[jax.Array, jax.Array]:
  """[N, k] → ([T, tile, k] zero-padded, [T, tile] validity)."""
  n = x.shape[0]
  pad = (-n) % tile
  xs = jnp.pad(x, ((0, pad), (0, 0))).reshape(-1, tile, x.shape[1])
  valid = (jnp.arange(n + pad) < n).reshape(-1, tile)
  return xs, valid


def rejected_mask(data: jax.Array, pool: jax.Array, epsilon, tile_n: int = 1024, tile_m: int = 4096) -> jax.Array:
  """[m] bool: pool samples within ε (Euclidean) of any data point."""
  d_tiles, d_valid = _tiles(data, min(tile_n, data.shape[0]))
  p_tiles, _ = _tiles(pool, min(tile_m, pool.shape[0]))
  eps2 = jnp.asarray(epsilon, jnp.float32) ** 2

  def pool_tile(p):
    def data_tile(hit, dv):
      d, valid = dv
      close = (sq_distances_matmul(d, p) < eps2) & valid[:, None]
      return hit | jnp.any(close, axis=0), None
    hit, _ = jax.lax.scan(data_tile, jnp.zeros(p.shape[0], bool), (d_tiles, d_valid))
    return hit

  return jax.lax.map(pool_tile, p_tiles).reshape(-1)[: pool.shape[0]]


def masked_nearest(data: jax.Array, pool: jax.Array, usable: jax.Array, tile_n: int = 1024, tile_m: int = 4096,
                   index_offset=0) -> tuple[jax.Array, jax.Array]:
  """For each data point, (index, squared distance) of the nearest pool sample with usable = True; (−1, inf) when
  none is. Ties → the smallest index."""
  tn, tm = min(tile_n, data.shape[0]), min(tile_m, pool.shape[0])
  d_tiles, _ = _tiles(data, tn)
  p_tiles, p_valid = _tiles(pool, tm)
  p_usable = jnp.pad(usable, (0, p_valid.size - usable.shape[0])).reshape(p_valid.shape) & p_valid
  starts = jnp.arange(p_tiles.shape[0]) * tm

  def data_tile(d):
    def pool_tile(best, tile):
      best_d, best_i = best
      p, ok, start = tile
      dist = jnp.where(ok[None, :], sq_distances_matmul(d, p), jnp.inf)
      i = jnp.argmin(dist, axis=1)
      di = jnp.take_along_axis(dist, i[:, None], 1)[:, 0]
      better = di < best_d                                  # strict: an earlier tile keeps a tie
      return (jnp.where(better, di, best_d), jnp.where(better, start + i, best_i)), None
    init = (jnp.full(d.shape[0], jnp.inf), jnp.full(d.shape[0], NO_SAMPLE, jnp.int32))
    (best_d, best_i), _ = jax.lax.scan(pool_tile, init, (p_tiles, p_usable, starts))
    return best_i, best_d

  idx, dist = jax.lax.map(data_tile, d_tiles)
  idx, dist = idx.reshape(-1)[: data.shape[0]], dist.reshape(-1)[: data.shape[0]]
  return jnp.where(idx >= 0, idx + index_offset, NO_SAMPLE), dist


def fused_rejection_nearest(data: jax.Array, pool: jax.Array, epsilon, tile_m: int = 4096, index_offset=0):
  """One pass when all n data points fit in one tile: each [n, tile_m] distance block both rejects its samples
  (a pool sample's rejection only needs its own column) and updates every data point's running minimum.
  Returns (index, squared distance, rejected)."""
  tm = min(tile_m, pool.shape[0])
  p_tiles, p_valid = _tiles(pool, tm)
  eps2 = jnp.asarray(epsilon, jnp.float32) ** 2
  starts = jnp.arange(p_tiles.shape[0]) * tm

  def pool_tile(best, tile):
    best_d, best_i = best
    p, valid, start = tile
    dist = sq_distances_matmul(data, p)
    rejected = jnp.any(dist < eps2, axis=0)
    dist = jnp.where((valid & ~rejected)[None, :], dist, jnp.inf)
    i = jnp.argmin(dist, axis=1)
    di = jnp.take_along_axis(dist, i[:, None], 1)[:, 0]
    better = di < best_d
    return (jnp.where(better, di, best_d), jnp.where(better, start + i, best_i)), rejected

  init = (jnp.full(data.shape[0], jnp.inf), jnp.full(data.shape[0], NO_SAMPLE, jnp.int32))
  (best_d, best_i), rejected = jax.lax.scan(pool_tile, init, (p_tiles, p_valid, starts))
  return (jnp.where(best_i >= 0, best_i + index_offset, NO_SAMPLE), best_d,
          rejected.reshape(-1)[: pool.shape[0]])


def _select(data, pool, epsilon, tile_n, tile_m, index_offset=0):
  if data.shape[0] <= tile_n:
    return fused_rejection_nearest(data, pool, epsilon, tile_m, index_offset)
  rejected = rejected_mask(data, pool, epsilon, tile_n, tile_m)      # two passes: rejection needs every tile
  idx, sq = masked_nearest(data, pool, ~rejected, tile_n, tile_m, index_offset)
  return idx, sq, rejected


@functools.partial(jax.jit, static_argnames=("tile_n", "tile_m"))
def rejection_nearest(data: jax.Array, pool: jax.Array, epsilon, tile_n: int = 1024, tile_m: int = 4096):
  """(index [n] int32, distance [n], rejected [m] bool): the RS-IMLE selection on one device. Up to `tile_n`
  data points it is one pass over pool tiles (memory O(n · tile_m)); beyond, two passes over (tile_n × tile_m)
  blocks (memory O(tile_n · tile_m), twice the FLOPs)."""
  idx, sq, rejected = _select(data, pool, epsilon, tile_n, tile_m)
  return idx, jnp.sqrt(sq), rejected


def sharded_rejection_nearest(data: jax.Array, pool: jax.Array, epsilon, mesh: Mesh, axis: str,
                              tile_n: int = 1024, tile_m: int = 4096):
  """`rejection_nearest` with the pool split over the mesh axis `axis` (m must divide by its size); data and
  results are replicated. Equal to the single-device result, ties included."""
  shards = mesh.shape[axis]
  if pool.shape[0] % shards:
    raise ValueError(f"pool size {pool.shape[0]} does not split over {shards} devices on axis {axis!r}")
  per_shard = pool.shape[0] // shards

  def local(d, p, eps):
    idx, sq, rejected = _select(d, p, eps, tile_n, tile_m, jax.lax.axis_index(axis) * per_shard)
    best = jax.lax.pmin(sq, axis)
    # The smallest global index among the shards that reach the best distance (ties as on one device).
    winner = jnp.where((sq == best) & (idx >= 0), idx, jnp.iinfo(jnp.int32).max)
    winner = jax.lax.pmin(winner, axis)
    return jnp.where(jnp.isfinite(best), winner, NO_SAMPLE), jnp.sqrt(best), rejected

  # check_vma=False: the scans' carries start replicated and become per-shard; the collectives above are explicit.
  fn = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(axis), P()), out_specs=(P(), P(), P(axis)),
                     check_vma=False)
  return jax.jit(fn)(data, pool, jnp.asarray(epsilon, jnp.float32))


def brute_force(data: np.ndarray, pool: np.ndarray, epsilon: float):
  """The numpy reference: the full n × m distance matrix (float64)."""
  d = np.sqrt(np.maximum(((data[:, None, :].astype(np.float64) - pool[None].astype(np.float64)) ** 2).sum(-1), 0))
  rejected = (d < epsilon).any(0)
  d = np.where(rejected[None, :], np.inf, d)
  idx = np.where(np.isfinite(d.min(1)), d.argmin(1), NO_SAMPLE)
  return idx, d.min(1), rejected
