"""IMLE / RS-IMLE training: the generator, Algorithm 1 on the paper's 2D toy, and the distribution metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ldm_jax.eval import distribution
from ldm_jax.imle import algorithm, generator


def _toy(epsilon: float, seed: int, iterations: int = 300):
  t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
  data = jnp.asarray(np.stack([np.cos(t), np.sin(t) * np.cos(t)], 1), jnp.float32)   # 20 points on a figure 8
  model = generator.ToyGenerator()
  params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, 2)))
  tx = optax.adam(1e-3)
  settings = algorithm.ImleSettings(epsilon=epsilon, pool_factor=10, inner_steps=20, batch_size=4)
  gen = lambda p, z: model.apply(p, z)
  step = algorithm.make_outer_step(gen, lambda x, y: jnp.sum((x - y) ** 2, -1), lambda x: x, tx, settings, 2)
  state, records, selections = algorithm.fit(algorithm.init_state(params, tx, 20, 2), step, data, data,
                                             jax.random.PRNGKey(seed + 1), iterations, history=True)
  z = np.asarray(jax.random.normal(jax.random.PRNGKey(99), (4000, 2)))
  trained_on = np.asarray(selections[-100:]).reshape(-1, 2)       # the latents of the last 100 selections
  coverage_gap = np.sqrt(((z[:, None] - trained_on[None]) ** 2).sum(-1)).min(1).mean()
  samples = np.asarray(gen(state.params, jnp.asarray(z)))
  off_data = np.sqrt(((samples[:, None] - np.asarray(data)[None]) ** 2).sum(-1)).min(1).mean()
  return records, coverage_gap, off_data


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_rs_imle_covers_the_prior_and_lands_closer_to_the_data_on_the_2d_toy(seed):
  """Fig. 2/5: IMLE trains on tight bands of the latent space and leaves gaps that test-time latents fall into;
  rejecting samples already within ε of a data point spreads the training latents over the prior."""
  imle, imle_gap, imle_off = _toy(0.0, seed)
  rs, rs_gap, rs_off = _toy(0.1, seed)
  assert all(r["rejected_fraction"] == 0 for r in imle)          # ε = 0 is plain IMLE
  assert rs[-1]["rejected_fraction"] > 0.2
  assert imle[-1]["loss"] < 0.1 * imle[0]["loss"] and rs[-1]["loss"] < 0.2 * rs[0]["loss"]
  assert rs_gap < 0.9 * imle_gap, (rs_gap, imle_gap)            # test latents nearer to a trained-on latent
  assert rs_off < 0.7 * imle_off, (rs_off, imle_off)            # test-time samples nearer to the data


@pytest.mark.parametrize("name,size", [("small", 48), ("small28", 28)])
def test_generator_shapes_range_and_gradients(name, size):
  model = generator.build_generator(name)
  z = jax.random.normal(jax.random.PRNGKey(0), (3, model.latent_dim))
  params = model.init(jax.random.PRNGKey(1), z)
  x = model.apply(params, z)
  assert x.shape == (3, size, size) and float(jnp.abs(x).max()) <= 1.0
  grads = jax.grad(lambda p: jnp.mean(model.apply(p, z) ** 2))(params)
  assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
  assert float(jnp.abs(grads["params"]["map0"]["kernel"]).sum()) > 0      # reaches the mapping network


def test_precision_recall_and_frechet_known_values():
  rng = np.random.default_rng(0)
  real = rng.normal(size=(300, 4)).astype(np.float32)
  p, r = distribution.precision_recall(jnp.asarray(real), jnp.asarray(real))
  assert float(p) == 1.0 and float(r) == 1.0
  far = real + 100.0
  p, r = distribution.precision_recall(jnp.asarray(real), jnp.asarray(far))
  assert float(p) == 0.0 and float(r) == 0.0
  collapsed = np.repeat(real[:1], 300, axis=0) + 1e-3 * rng.normal(size=(300, 4)).astype(np.float32)
  p, r = distribution.precision_recall(jnp.asarray(real), jnp.asarray(collapsed))
  assert float(p) == 1.0 and float(r) < 0.1                     # mode collapse: precise, no recall
  assert distribution.frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
  shift = np.array([3.0, 0.0, 4.0, 0.0])
  assert distribution.frechet_distance(real, real + shift) == pytest.approx(25.0, rel=1e-6)
