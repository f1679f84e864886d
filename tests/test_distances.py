"""The two squared-distance forms: the exact one where closeness is measured, the matmul one for big searches."""

import jax
import jax.numpy as jnp
import numpy as np

from ldm_jax import distances


def _reference(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return ((a[:, None] - b[None]) ** 2).sum(-1)


def test_both_forms_equal_the_float64_reference_on_generic_points():
  a = jax.random.normal(jax.random.PRNGKey(0), (37, 16))
  b = jax.random.normal(jax.random.PRNGKey(1), (11, 16))
  np.testing.assert_allclose(distances.sq_distances(a, b), _reference(a, b), rtol=1e-5)
  np.testing.assert_allclose(distances.sq_distances_matmul(a, b), _reference(a, b), rtol=1e-4, atol=1e-4)


def test_the_exact_form_keeps_a_small_distance_that_the_expanded_form_loses():
  """A sample 1e-2 away (per coordinate) from an exemplar of norm ~300: the case exemplar fidelity and
  recognizability measure. Explicit differences keep it; ‖a‖² − 2ab + ‖b‖² cancels it away."""
  exemplar = 100.0 + jax.random.normal(jax.random.PRNGKey(2), (1, 9))
  sample = exemplar + 1e-2
  want = _reference(sample, exemplar)[0, 0]                    # 9e-4
  np.testing.assert_allclose(float(distances.sq_distances(sample, exemplar)[0, 0]), want, rtol=1e-2)
  assert abs(float(distances.sq_distances_matmul(sample, exemplar)[0, 0]) - want) > 0.5 * want


def test_rows_in_chunks_equal_one_block_and_keep_gradients(monkeypatch):
  a = jax.random.normal(jax.random.PRNGKey(3), (50, 8))
  b = jax.random.normal(jax.random.PRNGKey(4), (7, 8))
  whole = distances.sq_distances(a, b)
  monkeypatch.setattr(distances, "_BUDGET", 7 * 8 * 6)       # chunks of 6 rows, the last one padded
  np.testing.assert_allclose(distances.sq_distances(a, b), whole, rtol=1e-6)   # same sums, other order
  g = jax.grad(lambda x: distances.sq_distances(x, b).sum())(a)
  np.testing.assert_allclose(g, 2 * (b.shape[0] * a - b.sum(0)), rtol=1e-5, atol=1e-5)
  assert jnp.all(distances.sq_distances(a, a).diagonal() == 0)
