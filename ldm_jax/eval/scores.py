"""Originality vs recognizability (paper §5.1, A.6), given critic features: pure functions, batched under jit.

A generated set is [C classes, n samples] with one exemplar per class; the human point uses real test drawings as
the "samples". Features come from the critics (`originality`: a SimCLR extractor, `recognizability`: a one-shot
prototypical network's metric space); these functions only need the arrays.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ldm_jax.distances import sq_distances


def feature_scale(features: jax.Array) -> jax.Array:
  """The mean over samples of the per-sample std across feature dimensions (one scalar per model)."""
  return jnp.mean(jnp.std(features.reshape(-1, features.shape[-1]), axis=-1))


@jax.jit
def originality(sample_features: jax.Array, exemplar_features: jax.Array) -> jax.Array:
  """[C, n] Euclidean distances of each sample to its own exemplar, after dividing all features by the model's
  `feature_scale` of its samples."""
  scale = feature_scale(sample_features)
  diff = (sample_features - exemplar_features[:, None, :]) / scale
  return jnp.sqrt(jnp.sum(diff * diff, axis=-1))


@functools.partial(jax.jit, static_argnames=("n_way", "tasks_per_class"))
def recognizability(sample_embeddings: jax.Array, exemplar_embeddings: jax.Array, key: jax.Array, n_way: int = 20,
                    tasks_per_class: int = 10) -> jax.Array:
  """[C, n] fraction of N-way 1-shot tasks in which each sample is classified as its own class.

  Every class is the query class of exactly `tasks_per_class` tasks; a task's support is the exemplars of that
  class and N−1 other classes drawn without replacement (fixed by `key`); the queries are all n samples of the
  class, classified by the nearest exemplar (squared Euclidean, prototypical networks).
  """
  c = exemplar_embeddings.shape[0]
  if n_way > c:
    raise ValueError(f"{n_way}-way tasks need at least {n_way} classes, got {c}")

  def task(cls, k):
    others = jax.random.choice(k, c - 1, (n_way - 1,), replace=False)
    others = others + (others >= cls)                         # skip the query class itself
    support = exemplar_embeddings[jnp.concatenate([cls[None], others])]      # [N, D], own class first
    q = sample_embeddings[cls]                                                # [n, D]
    d = sq_distances(q, support)                                              # exact near the exemplar
    return jnp.argmin(d, axis=-1) == 0

  keys = jax.random.split(key, c * tasks_per_class).reshape(c, tasks_per_class, -1)
  correct = jax.vmap(lambda cls, ks: jax.vmap(lambda k: task(cls, k))(ks))(jnp.arange(c), keys)  # [C, T, n]
  return jnp.mean(correct, axis=1)


@functools.partial(jax.jit, static_argnames=("bins",))
def binned_by_originality(originality_values: jax.Array, recognized: jax.Array, bins: int = 10):
  """Each class's samples sorted by originality and split into `bins` equal bins: ([C, bins] mean originality,
  [C, bins] mean recognizability), for generalization curves. n must be a multiple of `bins`."""
  c, n = originality_values.shape
  if n % bins:
    raise ValueError(f"{n} samples per class do not split into {bins} equal bins")
  order = jnp.argsort(originality_values, axis=-1)
  ori = jnp.take_along_axis(originality_values, order, -1).reshape(c, bins, -1).mean(-1)
  rec = jnp.take_along_axis(recognized, order, -1).reshape(c, bins, -1).mean(-1)
  return ori, rec


def normalise_originality(values: np.ndarray) -> np.ndarray:
  """Min-max to [0, 1] across every compared point (all models and the human point together)."""
  values = np.asarray(values, np.float64)
  span = values.max() - values.min()
  return np.zeros_like(values) if span == 0 else (values - values.min()) / span


def distance_to_human(originality_norm: np.ndarray, recognizability_values: np.ndarray, human_index: int):
  """Euclidean distance of every point to the human point in the (normalised originality, recognizability)
  plane."""
  points = np.stack([np.asarray(originality_norm, np.float64), np.asarray(recognizability_values, np.float64)], -1)
  return np.linalg.norm(points - points[human_index], axis=-1)


def place_on_human_plane(originality_raw, recognizability_values, human_index: int):
  """(normalised originality, distance to the human point) of every point — models and humans together: the one
  way every job places its sets on the paper's plane."""
  ori = normalise_originality(originality_raw)
  return ori, distance_to_human(ori, recognizability_values, human_index)


def parametric_fit(betas, originality_values, recognizability_values, degree: int = 2, log: bool = True,
                   points: int = 100):
  """The parametric fit of A.5 (after [54]): two least-squares degree-2 polynomials, originality against the
  hyperparameter and recognizability against it (Fig. A.4–A.9 b, c), evaluated on one dense grid in increasing β
  and combined into a curve in the originality–recognizability plane oriented by increasing β (Fig. A.4–A.9 a).

  Where this chooses what the paper leaves open: the hyperparameter axis is log10 β (`log=True`; the A.5 ranges
  span up to six decades, e.g. 1e-6…0.5 for KL), so β = 0 models are not part of a fit (they are drawn as their own
  marker); with fewer than three distinct β the degree drops to (distinct β − 1). Returns (t grid, originality
  curve, recognizability curve)."""
  b = np.asarray(betas, np.float64)
  if log and np.any(b <= 0):
    raise ValueError("log-β fits need β > 0; fit the β = 0 model as its own marker")
  t = np.log10(b) if log else b
  deg = min(degree, len(np.unique(t)) - 1)
  fo = np.polyfit(t, originality_values, deg)
  fr = np.polyfit(t, recognizability_values, deg)
  grid = np.linspace(t.min(), t.max(), points)
  return grid, np.polyval(fo, grid), np.polyval(fr, grid)
