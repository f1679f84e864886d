"""Sample-set vs data-set metrics in a feature space: improved precision / recall (Kynkäänniemi et al. 2019) and
the Fréchet distance between Gaussian fits (FID's formula, here in whatever feature space the caller names)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ldm_jax.distances import sq_distances_matmul


def _pairwise(a: jax.Array, b: jax.Array) -> jax.Array:
  return jnp.sqrt(sq_distances_matmul(a, b))


def _coverage(reference: jax.Array, queries: jax.Array, k: int) -> jax.Array:
  """Fraction of queries inside the union of the reference points' k-NN balls."""
  d_ref = _pairwise(reference, reference)
  radius = jnp.sort(d_ref, axis=1)[:, k]                       # column 0 is the point itself
  return jnp.mean(jnp.any(_pairwise(queries, reference) <= radius[None, :], axis=1))


@functools.partial(jax.jit, static_argnames=("k",))
def precision_recall(real: jax.Array, fake: jax.Array, k: int = 3) -> tuple[jax.Array, jax.Array]:
  """(precision: generated samples on the real manifold, recall: real points on the generated manifold)."""
  return _coverage(real, fake, k), _coverage(fake, real, k)


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
  """‖μ_r − μ_f‖² + Tr(Σ_r + Σ_f − 2(Σ_r Σ_f)^½)."""
  from scipy import linalg
  real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
  mu_r, mu_f = real.mean(0), fake.mean(0)
  s_r, s_f = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
  covmean = linalg.sqrtm(s_r @ s_f)
  covmean = (covmean[0] if isinstance(covmean, tuple) else covmean).real
  return float(np.sum((mu_r - mu_f) ** 2) + np.trace(s_r + s_f - 2.0 * covmean))
