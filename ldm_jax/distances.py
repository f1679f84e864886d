"""Squared Euclidean distances between two sets of rows, in the two forms this library uses on purpose.

`sq_distances` sums explicit differences: exact wherever what is measured is how close a point sits to another
(a sample to its exemplar: exemplar fidelity, recognizability, 1-shot accuracy; the prototype loss; VQ snapping).
There the expanded form ‖a‖² − 2a·b + ‖b‖² subtracts two nearly equal numbers of size ‖a‖² and keeps none of the
small distance's digits. Rows of `a` go in chunks, so memory stays bounded for pixel-space rows.

`sq_distances_matmul` is the expanded form as one matmul (highest precision, clamped at 0): for the large searches
whose cost is that matmul (IMLE's nearest neighbour with rejection, k-NN over thousands of features), where the
points compared are distinct draws and a relative error of ~1e-7·‖a‖² is far below any decision they feed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ldm_jax.data import pipeline

_BUDGET = 1 << 24   # elements of the [chunk, m, k] difference tensor (64 MiB in f32)


def _direct(a: jax.Array, b: jax.Array) -> jax.Array:
  return jnp.sum(jnp.square(a[:, None, :] - b[None, :, :]), -1)


def sq_distances(a: jax.Array, b: jax.Array) -> jax.Array:
  """[n, k], [m, k] → [n, m]: Σ_k (a_ik − b_jk)², by explicit differences (exact near 0; differentiable)."""
  n, m, k = a.shape[0], b.shape[0], a.shape[-1]
  chunk = max(1, _BUDGET // max(1, m * k))
  return _direct(a, b) if n <= chunk else pipeline.map_in_chunks(lambda t: _direct(t, b), a, chunk)


def sq_distances_matmul(a: jax.Array, b: jax.Array) -> jax.Array:
  """[n, k], [m, k] → [n, m]: ‖a‖² + ‖b‖² − 2a·bᵀ as one matmul at highest precision, clamped at 0."""
  d = jnp.sum(a * a, -1)[:, None] + jnp.sum(b * b, -1)[None, :] - 2.0 * jnp.matmul(a, b.T, precision="highest")
  return jnp.maximum(d, 0.0)
