"""The 2D toy of the RS-IMLE paper (Fig. 2/5): 20 points on a figure 8, an MLP generator from a 2-d latent, and
the two statistics that show the misalignment issue (pure math: synthetic by design)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ldm_jax.distances import sq_distances
from ldm_jax.imle import algorithm, generator


def figure_eight(n: int = 20) -> np.ndarray:
  t = np.linspace(0, 2 * np.pi, n, endpoint=False)
  return np.stack([np.cos(t), np.sin(t) * np.cos(t)], 1).astype(np.float32)


def train_toy(epsilon: float, iterations: int = 300, seed: int = 0, test_latents: int = 4000,
              adaptive: bool = False) -> dict:
  """Trains on the figure 8 and measures, on fresh prior latents: the coverage gap (mean distance to the nearest
  latent trained on in the last 100 selections) and off-data (mean distance of their samples to the nearest data
  point). Returns the statistics, the per-iteration records and arrays for a figure."""
  data = jnp.asarray(figure_eight())
  model = generator.ToyGenerator()
  params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, 2)))
  tx = optax.adam(1e-3)
  settings = algorithm.ImleSettings(epsilon=epsilon, pool_factor=10, inner_steps=20, batch_size=4, adaptive=adaptive)
  gen = lambda p, z: model.apply(p, z)
  step = algorithm.make_outer_step(gen, lambda x, y: jnp.sum((x - y) ** 2, -1), lambda x: x, tx, settings, 2)
  state, records, selections = algorithm.fit(algorithm.init_state(params, tx, len(data), 2), step, data, data,
                                             jax.random.PRNGKey(seed + 1), iterations, history=True)
  z = np.asarray(jax.random.normal(jax.random.PRNGKey(99), (test_latents, 2)))
  trained_on = np.asarray(selections[-100:]).reshape(-1, 2)
  samples = np.asarray(gen(state.params, jnp.asarray(z)))
  nearest = lambda a, b: float(np.sqrt(np.asarray(sq_distances(jnp.asarray(a), jnp.asarray(b)))).min(1).mean())
  return {"coverage_gap": nearest(z, trained_on), "off_data": nearest(samples, data),
          "records": records, "data": np.asarray(data), "samples": samples, "trained_on": trained_on}
