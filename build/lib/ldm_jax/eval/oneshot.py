"""N-way 1-shot classification by nearest exemplar in an embedding space, vectorised over episodes under jit."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ldm_jax.data.pipeline import DeviceSplit
from ldm_jax.distances import sq_distances


@functools.partial(jax.jit, static_argnames=("n_way", "episodes"))
def nearest_exemplar_accuracy(embeddings: jax.Array, split: DeviceSplit, key: jax.Array, n_way: int = 20,
                              episodes: int = 200) -> jax.Array:
  """Mean accuracy of `episodes` N-way 1-shot tasks: support = the N classes' exemplars, queries = every other
  drawing of those classes, prediction = the nearest exemplar (Euclidean) in the embedding.

  Args:
    embeddings: [N, D], one row per drawing of `split`.
  """
  exemplars = embeddings[split.exemplar_index]                      # [C, D]
  m = split.class_rows.shape[1]

  def episode(k):
    classes = jax.random.choice(k, split.num_classes, (n_way,), replace=False)
    rows = split.class_rows[classes]                                 # [n_way, M]
    valid = (jnp.arange(m)[None, :] < split.class_sizes[classes][:, None]) & (
        rows != split.exemplar_index[classes][:, None])
    q = embeddings[rows]                                             # [n_way, M, D]
    d = sq_distances(q.reshape(-1, q.shape[-1]), exemplars[classes]).reshape(n_way, m, n_way)
    correct = jnp.argmin(d, -1) == jnp.arange(n_way)[:, None]
    return jnp.sum(correct & valid) / jnp.sum(valid)

  return jnp.mean(jax.vmap(episode)(jax.random.split(key, episodes)))


@jax.jit
def exemplar_fidelity(samples: jax.Array, exemplars: jax.Array) -> dict[str, jax.Array]:
  """How often generated samples sit closer to their own exemplar than to the others' (Euclidean).

  Args:
    samples: [C, n, D], n samples conditioned on each of C exemplars.
    exemplars: [C, D].
  Returns:
    'nearest': fraction of samples whose nearest exemplar is their own (chance 1/C);
    'pairwise': fraction of (sample, other exemplar) pairs with d(sample, own) < d(sample, other) (chance 1/2).
  """
  c, n, _ = samples.shape
  s = samples.reshape(c * n, -1)
  d = sq_distances(s, exemplars)
  own_class = jnp.repeat(jnp.arange(c), n)
  own = d[jnp.arange(c * n), own_class]
  others = jnp.arange(c)[None, :] != own_class[:, None]
  return {"nearest": jnp.mean(jnp.argmin(d, -1) == own_class),
          "pairwise": jnp.sum((own[:, None] < d) & others) / jnp.sum(others)}
