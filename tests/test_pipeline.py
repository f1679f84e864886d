"""The device-resident pipeline: deterministic batches and well-formed episodes, sampled inside jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ldm_jax.data import pipeline

pytestmark = pytest.mark.real_data


@pytest.fixture(scope="module")
def split(omniglot_test):
  return pipeline.to_device(omniglot_test)


def test_batches_are_a_pure_function_of_key_and_step(split):
  key = jax.random.PRNGKey(3)
  sample = jax.jit(pipeline.sample_batch, static_argnums=3)
  a, b = sample(split, key, 7, 32), sample(split, key, 7, 32)
  np.testing.assert_array_equal(a["image"], b["image"])
  c = sample(split, key, 8, 32)
  assert not np.array_equal(a["image"], c["image"])
  assert a["image"].shape == (32, 48, 48, 1) and float(a["image"].max()) <= 1.0
  # the exemplar of each row is its class's exemplar
  lab = np.asarray(a["label"])
  np.testing.assert_array_equal(np.asarray(a["exemplar"]),
                                np.asarray(pipeline.to_float(split.images[split.exemplar_index[lab]])))


def test_epoch_visits_every_row_once(split):
  n, bsz = split.num_examples, 100
  perm = pipeline.epoch_permutation(jax.random.PRNGKey(0), 0, n)
  rows = jnp.concatenate([pipeline.batch_rows(perm, i, bsz) for i in range(pipeline.steps_per_epoch(n, bsz))])
  assert len(np.unique(np.asarray(rows))) == len(rows) == 3000


def test_episode_shapes_labels_and_disjoint_support(split):
  ep = jax.jit(pipeline.sample_episode, static_argnums=(2, 3, 4))(split, jax.random.PRNGKey(1), 20, 1, 5)
  assert ep["support"].shape == (20, 1, 48, 48, 1) and ep["query"].shape == (20, 5, 48, 48, 1)
  assert len(np.unique(np.asarray(ep["classes"]))) == 20
  np.testing.assert_array_equal(ep["labels"], np.repeat(np.arange(20)[:, None], 5, 1))
  s = np.asarray(ep["support"]).reshape(20, 1, -1)
  q = np.asarray(ep["query"]).reshape(20, 5, -1)
  for c in range(20):  # support drawing never reappears among the same class's queries
    assert not any(np.array_equal(s[c, 0], q[c, j]) for j in range(5))
