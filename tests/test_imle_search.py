"""RS-IMLE's nearest-neighbour-with-rejection kernel against a brute-force numpy reference."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO

from ldm_jax.imle import search


def _sphere(rng, n, k):
  x = rng.normal(size=(n, k)).astype(np.float32)
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def _assert_same_selection(got, want, data, pool):
  """Indices equal, except where two samples are equally near within float32 rounding."""
  idx, dist, rejected = (np.asarray(a) for a in got)
  w_idx, w_dist, w_rej = want
  np.testing.assert_array_equal(rejected, w_rej)
  np.testing.assert_allclose(dist, w_dist, rtol=1e-5, atol=1e-5)
  differ = idx != w_idx
  if differ.any():
    true = np.linalg.norm(data[differ].astype(np.float64) - pool[idx[differ]].astype(np.float64), axis=-1)
    np.testing.assert_allclose(true, w_dist[differ], atol=1e-5)
  assert differ.mean() < 0.01


@pytest.mark.parametrize("epsilon", [0.0, 0.6, 0.9])
def test_matches_brute_force_on_the_sphere_with_ragged_tiles(epsilon):
  rng = np.random.default_rng(0)
  data, pool = _sphere(rng, 300, 16), _sphere(rng, 3000, 16)
  want = search.brute_force(data, pool, epsilon)
  assert (0.0 < want[2].mean() < 1.0) if epsilon else not want[2].any()   # ε > 0 rejects part of the pool
  for tn, tm in ((1024, 4096), (64, 256), (7, 999)):      # one tile, dividing and ragged tiles
    _assert_same_selection(search.rejection_nearest(jnp.asarray(data), jnp.asarray(pool), epsilon, tn, tm),
                           want, data, pool)


def test_ties_go_to_the_smallest_index_and_all_rejected_is_explicit():
  data = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
  pool = np.array([[0.6, 0.8], [0.0, -1.0], [0.6, 0.8], [-1.0, 0.0]], np.float32)   # rows 0 and 2 tie
  idx, dist, rejected = search.rejection_nearest(jnp.asarray(data), jnp.asarray(pool), 0.0, 1, 1)
  assert idx.tolist() == [0, 0] and not rejected.any()
  idx, dist, rejected = search.rejection_nearest(jnp.asarray(data), jnp.asarray(pool), 0.95)   # rejects 0 and 2
  assert rejected.tolist() == [True, False, True, False] and idx.tolist() == [1, 3]
  idx, dist, rejected = search.rejection_nearest(jnp.asarray(data), jnp.asarray(pool), 2.5)    # > any chord
  assert idx.tolist() == [search.NO_SAMPLE] * 2 and np.all(np.isinf(dist)) and rejected.all()


@pytest.mark.real_data
def test_matches_brute_force_on_projected_omniglot(omniglot_test):
  images = omniglot_test["images"].astype(np.float32) / 255.0
  proj = search.make_projection(jax.random.PRNGKey(0), 48 * 48, 64)
  points = np.asarray(search.project(jnp.asarray(images), proj))
  assert np.allclose(np.linalg.norm(points, axis=1), 1.0, atol=1e-5)
  data, pool = points[:200], points[200:2200]                  # 200 drawings vs 2,000 others
  for epsilon in (0.0, 0.8):
    want = search.brute_force(data, pool, epsilon)
    _assert_same_selection(search.rejection_nearest(jnp.asarray(data), jnp.asarray(pool), epsilon, 64, 512),
                           want, data, pool)
  assert 0 < want[2].sum() < len(pool)                         # ε = 0.8 rejects some drawings, not all


SHARDED = textwrap.dedent("""
  import os, sys, json
  os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
  sys.path.insert(0, {repo!r})
  import jax, jax.numpy as jnp, numpy as np
  from jax.sharding import Mesh
  from ldm_jax.imle import search
  assert jax.device_count() == 8
  rng = np.random.default_rng(1)
  data = rng.normal(size=(100, 8)).astype(np.float32); data /= np.linalg.norm(data, axis=1, keepdims=True)
  pool = rng.normal(size=(1600, 8)).astype(np.float32); pool /= np.linalg.norm(pool, axis=1, keepdims=True)
  pool[1500] = pool[3]                                   # a tie across two shards: index 3 must win
  data[0] = pool[3] * 0.999 + 0.001 * data[0]
  mesh = Mesh(np.array(jax.devices()), ("pool",))
  out = {{}}
  for eps in (0.0, 0.6, 2.5):
    one = search.rejection_nearest(jnp.asarray(data), jnp.asarray(pool), eps, 32, 64)
    many = search.sharded_rejection_nearest(jnp.asarray(data), jnp.asarray(pool), eps, mesh, "pool", 32, 64)
    assert len(many[2].sharding.device_set) == 8
    out[str(eps)] = [bool(np.array_equal(np.asarray(a), np.asarray(b))) for a, b in zip(one, many)]
  out["tie"] = int(search.sharded_rejection_nearest(
      jnp.asarray(data), jnp.asarray(pool), 0.0, mesh, "pool")[0][0])
  print(json.dumps(out))
""")


def test_pool_sharded_over_eight_devices_equals_one_device():
  import json
  out = subprocess.run([sys.executable, "-c", SHARDED.format(repo=str(REPO))], cwd=REPO, capture_output=True,
                       text=True, timeout=600, env={**os.environ,
                                                    "XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result.pop("tie") == 3
  assert all(all(v) for v in result.values()), result
