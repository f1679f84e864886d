"""The sweep trainer: vmapped members equal separate runs; sharded equals unsharded; NaN isolation."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import rae as rae_config
from ldm_jax.data import pipeline
from ldm_jax.train import rae, sweep
from conftest import REPO

pytestmark = pytest.mark.real_data


def small_setup(omniglot_test, regs=("prototype",), n=256, batch=32):
  cfg = rae_config.get_config("omniglot,tiny")
  cfg.rae.regularizers = regs
  cfg.train.batch_size = batch
  d = {"images": omniglot_test["images"][:n], "labels": omniglot_test["labels"][:n]}
  from ldm_jax import data
  d["exemplar_index"] = data.select_exemplars(d["images"], d["labels"])
  model = rae.build_model(cfg, int(d["labels"].max()) + 1)
  tx = rae.make_optimizer(cfg, n // batch)
  init_fn = lambda key: model.init(key, jnp.zeros((2, 48, 48, 1)), False)
  return cfg, model, tx, init_fn, pipeline.to_device(d)


def test_vmapped_sweep_equals_separate_runs(omniglot_test):
  cfg, model, tx, init_fn, data = small_setup(omniglot_test)
  k = 3
  keys = sweep.member_keys(0, k)
  betas = jnp.array([[0, 0, 0, b, 0, 0] for b in (0.0, 1.0, 10.0)], jnp.float32)
  epoch = sweep.make_epoch_fn(rae.make_loss_fn(model, cfg), tx, cfg.train.batch_size)
  together, _ = epoch(sweep.init_sweep(init_fn, tx, keys), {"beta": betas}, data)
  for i in range(k):
    alone, _ = epoch(sweep.init_sweep(init_fn, tx, keys[i:i + 1]), {"beta": betas[i:i + 1]}, data)
    for a, b in zip(jax.tree.leaves(sweep.take_member(together.params, i)), jax.tree.leaves(alone.params)):
      np.testing.assert_allclose(a, b[0], rtol=2e-4, atol=2e-5)
  # members really differ (own β, own data stream)
  p0, p1 = (jax.tree.leaves(sweep.take_member(together.params, i))[0] for i in (0, 1))
  assert not np.allclose(p0, p1)


def test_nan_in_one_member_leaves_the_others_untouched(omniglot_test):
  cfg, model, tx, init_fn, data = small_setup(omniglot_test)
  keys = sweep.member_keys(0, 2)
  betas = jnp.array([[0, 0, 0, 1.0, 0, 0], [0, 0, 0, jnp.nan, 0, 0]], jnp.float32)
  epoch = sweep.make_epoch_fn(rae.make_loss_fn(model, cfg), tx, cfg.train.batch_size)
  init = sweep.init_sweep(init_fn, tx, keys)
  init_params = jax.tree.map(np.asarray, init.params)
  states, metrics = epoch(init, {"beta": betas}, data)
  steps = data.num_examples // cfg.train.batch_size
  np.testing.assert_array_equal(states.nonfinite_steps, [0, steps])
  np.testing.assert_array_equal(metrics["nonfinite_steps"], [0, steps])
  # the NaN member keeps its last finite parameters; the healthy one trained
  for a, b in zip(jax.tree.leaves(sweep.take_member(states.params, 1)), jax.tree.leaves(
      sweep.take_member(init_params, 1))):
    np.testing.assert_array_equal(a, b)
  alone, _ = epoch(sweep.init_sweep(init_fn, tx, keys[:1]), {"beta": betas[:1]}, data)
  for a, b in zip(jax.tree.leaves(sweep.take_member(states.params, 0)), jax.tree.leaves(alone.params)):
    np.testing.assert_allclose(a, b[0], rtol=2e-4, atol=2e-5)


SHARDED_SCRIPT = textwrap.dedent("""
  import os, sys, json
  os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
  sys.path.insert(0, {repo!r}); sys.path.insert(0, {tests!r})
  import jax, jax.numpy as jnp, numpy as np
  from ldm_jax import data as data_lib, sharding
  from ldm_jax.train import sweep
  from test_sweep import small_setup
  assert jax.device_count() == 8
  test = data_lib.load("omniglot", "paper_test")
  cfg, model, tx, init_fn, data = small_setup(test)
  from ldm_jax.train import rae
  keys = sweep.member_keys(0, 4)
  betas = jnp.array([[0, 0, 0, b, 0, 0] for b in (0.0, 0.5, 1.0, 2.0)], jnp.float32)
  loss_fn = rae.make_loss_fn(model, cfg)
  one, _ = sweep.make_epoch_fn(loss_fn, tx, 32)(sweep.init_sweep(init_fn, tx, keys, None), {{"beta": betas}}, data)
  mesh = sharding.make_mesh(4, 32)  # 4 on 'sweep' x 2 on 'data'
  assert dict(mesh.shape) == {{"sweep": 4, "data": 2}}
  states = sweep.init_sweep(init_fn, tx, keys, mesh)
  fn = sweep.make_epoch_fn(loss_fn, tx, 32, mesh)
  many, _ = fn(states, sharding.shard_members({{"beta": betas}}, mesh), jax.device_put(data, sharding.replicated(mesh)))
  leaf = jax.tree.leaves(many.params)[0]
  assert len(leaf.sharding.device_set) == 8, leaf.sharding
  diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in
             zip(jax.tree.leaves(one.params), jax.tree.leaves(many.params)))
  print(json.dumps({{"max_abs_diff": diff}}))
""")


def test_eight_device_sharded_sweep_equals_one_device():
  script = SHARDED_SCRIPT.format(repo=str(REPO), tests=str(REPO / "tests"))
  out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=900,
                       env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert out.returncode == 0, out.stderr[-3000:]
  import json
  diff = json.loads(out.stdout.strip().splitlines()[-1])["max_abs_diff"]
  assert diff < 1e-4
