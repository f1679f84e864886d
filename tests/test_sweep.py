"""The sweep trainer: vmapped members equal separate runs; sharded equals unsharded; NaN isolation."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO

from configs import rae as rae_config
from ldm_jax import rae
from ldm_jax.data import pipeline
from ldm_jax.jobs import rae as rae_job
from ldm_jax.train import sweep

pytestmark = pytest.mark.real_data


def small_setup(omniglot_test, regs=("prototype",), n=256, batch=32):
  cfg = rae_config.get_config("omniglot,tiny")
  cfg.rae.regularizers = regs
  cfg.train.batch_size = batch
  labels = np.unique(omniglot_test["labels"][:n], return_inverse=True)[1].astype(np.int32)
  d = {"images": omniglot_test["images"][:n], "labels": labels}
  from ldm_jax import data
  d["exemplar_index"] = data.select_exemplars(d["images"], d["labels"])
  model = rae.build_model(cfg, int(d["labels"].max()) + 1)
  # Plain SGD: Adam divides by √v, so float-rounding differences in near-zero gradients (batched vs single
  # matmuls) become full-size steps and parameter comparisons say nothing about the sweep mechanics.
  import optax
  tx = optax.sgd(0.05)
  init_fn = lambda key: model.init(key, jnp.zeros((2, 48, 48, 1)), False)
  return cfg, model, tx, init_fn, pipeline.to_device(d)


def assert_trees_close(a, b, rel=1e-2, atol=1e-3):
  """Equal up to float32 rounding: batched and single matmuls round differently, and 8 steps through BatchNorm
  amplify that to ~1e-3 relative, more in near-zero leaves (XLA builds differ: jaxlib 0.10.2's CPU matmuls left
  4.6e-4 on a leaf of norm 0.027), hence the absolute floor; a different β or data stream gives O(1) differences."""
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    x, y = np.asarray(x), np.asarray(y)
    assert x.shape == y.shape
    assert np.linalg.norm(x - y) <= rel * np.linalg.norm(y) + atol, (np.linalg.norm(x - y), np.linalg.norm(y))


def test_vmapped_sweep_equals_separate_runs(omniglot_test):
  # KL: a well-conditioned regularizer. (The prototype loss's gradient is a near-cancelling difference once samples
  # sit by their exemplars, so batched vs single matmul rounding shows up at ~1e-3 relative in its small leaves.)
  cfg, model, tx, init_fn, data = small_setup(omniglot_test, regs=("kl",))
  k = 3
  keys = sweep.member_keys(0, k)
  betas = jnp.array([[b, 0, 0, 0, 0, 0] for b in (0.0, 0.1, 1.0)], jnp.float32)
  epoch = sweep.make_epoch_fn(rae_job.make_loss_fn(model, cfg), tx, cfg.train.batch_size)
  together, _ = epoch(sweep.init_sweep(init_fn, tx, keys), {"beta": betas}, data)
  for i in range(k):
    alone, _ = epoch(sweep.init_sweep(init_fn, tx, keys[i:i + 1]), {"beta": betas[i:i + 1]}, data)
    assert_trees_close(sweep.take_member(together.params, i), sweep.take_member(alone.params, 0))
  # members really differ (own β, own data stream, own init), far beyond the tolerance above
  p0, p1 = (np.asarray(jax.tree.leaves(sweep.take_member(together.params, i))[0]) for i in (0, 1))
  assert np.linalg.norm(p0 - p1) > 0.5 * np.linalg.norm(p1)


@pytest.mark.parametrize("mode", ["unroll", "sequential"])
def test_every_sweep_mode_trains_the_members_that_map_trains(omniglot_test, mode):
  """'unroll' (all members' steps in one scan body) and 'sequential' compute the same members as 'map': same
  data order, same step noise, same updates, same epoch metrics, up to float rounding of different fusions."""
  cfg, model, tx, init_fn, data = small_setup(omniglot_test, regs=("kl",))
  keys = sweep.member_keys(0, 3)
  hp = {"beta": jnp.array([[b, 0, 0, 0, 0, 0] for b in (0.0, 0.1, 1.0)], jnp.float32)}
  loss_fn = rae_job.make_loss_fn(model, cfg)
  want, m_want = sweep.make_epoch_fn(loss_fn, tx, cfg.train.batch_size, None, "map")(
      sweep.init_sweep(init_fn, tx, keys), hp, data)
  got, m_got = sweep.make_epoch_fn(loss_fn, tx, cfg.train.batch_size, None, mode)(
      sweep.init_sweep(init_fn, tx, keys), hp, data)
  assert_trees_close(got.params, want.params, rel=1e-4, atol=1e-5)
  np.testing.assert_array_equal(got.step, want.step)
  for key in m_want:
    np.testing.assert_allclose(m_got[key], m_want[key], rtol=1e-4, atol=1e-6)
  assert float(jnp.abs(m_want["loss"][0] - m_want["loss"][2])) > 1e-3   # the members really differ


def test_a_mixed_sweep_trains_each_member_as_its_own_regularizers_sweep_would(omniglot_test):
  """One program, members with different regularizers (KL samples, VQ quantises, prototype adds the exemplar view,
  'none' is a plain autoencoder): each member's parameters equal those of a sweep of its regularizers alone (same
  key), under lax.map (only the member's forward pass runs) and under vmap (every pass runs, select keeps one)."""
  import functools

  import optax
  cfg = rae_config.get_config("omniglot,tiny")
  cfg.rae.regularizers, cfg.sweep.betas = ("kl", "vq", "prototype"), ()
  cfg.sweep.members = ("kl=0.1", "vq=1", "prototype=1", "none")
  # im2col convs: VQ's nearest code is an argmin over a near-zero initial codebook, so any rounding difference between
  # the programs compared here flips near-tied codes and grows to O(10 %) of VQ's leaves in 4 steps. Under im2col the
  # map, vmap and single-member programs round alike; the output-side GEMM ('matmul' for C_out < C_in) fuses
  # differently in each (~1e-7, 25 of 512 codes flipped by step 4). This test is about the sweep's mechanics; the
  # convolution forms have their own tests against autodiff and XLA (test_models).
  cfg.rae.conv_impl = "im2col"
  # And 16 codes, not 512: the near-zero initial codebook's near ties grow with the number of codes, and on some
  # CPUs even the im2col programs flipped enough of 512 to move VQ's codebook by 7 % between map and vmap (a Xeon,
  # 2026-12-07). Fewer codes change nothing this test is about.
  cfg.rae.vq_codes = 16
  n, batch = 128, 32
  labels = np.unique(omniglot_test["labels"][:n], return_inverse=True)[1].astype(np.int32)
  d = {"images": omniglot_test["images"][:n], "labels": labels}
  from ldm_jax import data as data_lib
  d["exemplar_index"] = data_lib.select_exemplars(d["images"], d["labels"])
  # SGD (see small_setup) at a step VQ's and the prototype's large first losses survive (0.05 diverges them).
  data, nc, tx = pipeline.to_device(d), int(labels.max()) + 1, optax.sgd(1e-3)
  members = rae.sweep_members(cfg)[0]
  assert [rae.member_regularizers(cfg, m) for m in members] == [("kl",), ("vq",), ("prototype",), ()]
  np.testing.assert_array_equal(rae.sweep_hparams(cfg)["branch"], [0, 1, 2, 3])
  model = rae.build_model(cfg, nc)
  keys = sweep.member_keys(0, len(members))
  init = lambda: sweep.init_sweep(functools.partial(rae.init_variables, model, cfg), tx, keys)  # epochs donate
  run = lambda mode: sweep.make_epoch_fn(rae_job.make_loss_fn(model, cfg), tx, batch, None, mode)(
      init(), rae.sweep_hparams(cfg), data)[0]
  mapped, vmapped = run("map"), run("vmap")
  assert_trees_close(vmapped.params, mapped.params)
  for i, m in enumerate(members):
    mcfg, own, v = rae.member_model(cfg, m, nc, {"params": sweep.take_member(mapped.params, i),
                                                 "batch_stats": sweep.take_member(mapped.batch_stats, i)})
    assert tuple(mcfg.rae.regularizers) == rae.member_regularizers(cfg, m) and own.regularizers == mcfg.rae.regularizers
    alone_init = sweep.init_sweep(functools.partial(rae.init_variables, own, mcfg), tx, keys[i:i + 1])
    alone, _ = sweep.make_epoch_fn(rae_job.make_loss_fn(own, mcfg), tx, batch, None, "map")(
        alone_init, rae.sweep_hparams(mcfg), data)
    assert jax.tree.structure(v["params"]) == jax.tree.structure(sweep.take_member(alone.params, 0))
    assert_trees_close(v["params"], sweep.take_member(alone.params, 0), rel=1e-4, atol=1e-5)
    assert_trees_close(v["batch_stats"], sweep.take_member(alone.batch_stats, 0), rel=1e-4, atol=1e-5)


def test_nan_in_one_member_leaves_the_others_untouched(omniglot_test):
  cfg, model, tx, init_fn, data = small_setup(omniglot_test, regs=("kl",))
  keys = sweep.member_keys(0, 2)
  betas = jnp.array([[0.1, 0, 0, 0, 0, 0], [jnp.nan, 0, 0, 0, 0, 0]], jnp.float32)
  epoch = sweep.make_epoch_fn(rae_job.make_loss_fn(model, cfg), tx, cfg.train.batch_size)
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
  # The healthy member is bit-identical to its twin in a sweep whose other member stayed finite: nothing leaks.
  healthy, _ = epoch(sweep.init_sweep(init_fn, tx, keys), {"beta": betas.at[1, 0].set(0.5)}, data)
  for a, b in zip(jax.tree.leaves(sweep.take_member(states.params, 0)),
                  jax.tree.leaves(sweep.take_member(healthy.params, 0))):
    np.testing.assert_array_equal(a, b)


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
  cfg, model, tx, init_fn, data = small_setup(test, regs=("kl",))
  from ldm_jax.jobs import rae as rae_job
  keys = sweep.member_keys(0, 4)
  betas = jnp.array([[b, 0, 0, 0, 0, 0] for b in (0.0, 0.1, 0.5, 1.0)], jnp.float32)
  loss_fn = rae_job.make_loss_fn(model, cfg)
  one, _ = sweep.make_epoch_fn(loss_fn, tx, 32)(sweep.init_sweep(init_fn, tx, keys, None), {{"beta": betas}}, data)
  mesh = sharding.make_mesh(4, 32)  # 4 on 'sweep' x 2 on 'data'
  assert dict(mesh.shape) == {{"sweep": 4, "data": 2}}
  states = sweep.init_sweep(init_fn, tx, keys, mesh)
  fn = sweep.make_epoch_fn(loss_fn, tx, 32, mesh)
  many, _ = fn(states, sharding.shard_members({{"beta": betas}}, mesh), jax.device_put(data, sharding.replicated(mesh)))
  leaf = jax.tree.leaves(many.params)[0]
  assert len(leaf.sharding.device_set) == 8, leaf.sharding
  diff = max(float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / (np.linalg.norm(np.asarray(a)) + 1e-12))
             for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(many.params)))
  print(json.dumps({{"max_rel_diff": diff}}))
""")


def test_eight_device_sharded_sweep_equals_one_device():
  script = SHARDED_SCRIPT.format(repo=str(REPO), tests=str(REPO / "tests"))
  out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=900,
                       env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert out.returncode == 0, out.stderr[-3000:]
  import json
  diff = json.loads(out.stdout.strip().splitlines()[-1])["max_rel_diff"]
  assert diff < 1e-2


MEMBER_DATA_SCRIPT = textwrap.dedent("""
  import os, sys, json
  os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
  sys.path.insert(0, {repo!r})
  import jax, jax.numpy as jnp, numpy as np, optax
  from configs import ldm as ldm_config
  from ldm_jax import data as data_lib, sharding
  from ldm_jax.data import pipeline
  from ldm_jax.models.unet1d import build_unet
  from ldm_jax.jobs import ldm
from ldm_jax.train import sweep
  test = data_lib.load("omniglot", "paper_test")
  n, k = 64, 4   # two steps: enough to route data and update, too few for rounding to grow chaotically
  # Real drawings as 64-d vectors (8x8 average pooling), a different scaling per member: each member its own data.
  x = test["images"][:n].reshape(n, 8, 6, 8, 6).mean((2, 4)).reshape(n, 64) / 255.0
  labels = np.unique(test["labels"][:n], return_inverse=True)[1].astype(np.int32)
  ex = data_lib.select_exemplars(test["images"][:n], labels)
  lat = np.stack([(x - x.mean()) / x.std() * s for s in (1.0, 0.5, 2.0, -1.0)]).astype(np.float32)
  data = pipeline.LatentSplit(jnp.asarray(lat), jnp.tile(jnp.asarray(labels), (k, 1)),
                              jnp.tile(jnp.asarray(ex, jnp.int32), (k, 1)))
  cfg = ldm_config.get_config("omniglot,tiny")
  unet = build_unet("small", 64, dim=32)
  loss_fn = ldm.make_loss_fn(unet, cfg, "latent")
  tx = optax.sgd(2e-3)
  z = jnp.zeros((2, 64))
  init_fn = lambda key: unet.init(key, z, z, jnp.zeros((2,), jnp.int32))
  keys = sweep.member_keys(0, k)
  hp = {{"member": jnp.arange(k)}}
  seq, m_seq = sweep.make_epoch_fn(loss_fn, tx, 32, None, "sequential", member_data=True)(
      sweep.init_sweep(init_fn, tx, keys), hp, data)
  mesh = sharding.make_mesh(k, 32)
  fn = sweep.make_epoch_fn(loss_fn, tx, 32, mesh, "vmap", member_data=True)
  many, m_many = fn(sweep.init_sweep(init_fn, tx, keys, mesh), sharding.shard_members(hp, mesh),
                    sharding.shard_members(data, mesh))
  leaf = jax.tree.leaves(many.params)[0]
  assert len(leaf.sharding.device_set) == 8, leaf.sharding
  flat = lambda tree: np.concatenate([np.asarray(a).reshape(k, -1) for a in jax.tree.leaves(tree)], axis=1)
  a, b = flat(many.params), flat(seq.params)
  diff = float(np.max(np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)))
  init = flat(sweep.init_sweep(init_fn, tx, keys).params)
  step = b - init   # each member's update: different data → different updates
  member_gap = float(np.linalg.norm(step[0] - step[3]) / np.linalg.norm(step[0]))
  print(json.dumps({{"max_rel_diff": diff, "member_gap": member_gap,
                    "loss": np.asarray(m_many["loss"]).tolist(), "loss_seq": np.asarray(m_seq["loss"]).tolist()}}))
""")


@pytest.mark.slow
def test_per_member_data_sweep_sharded_equals_members_trained_alone():
  """Diffusion sweeps give each member its own RAE's latents: an 8-device vmapped epoch over per-member data
  equals each member trained alone on its own data."""
  import json
  out = subprocess.run([sys.executable, "-c", MEMBER_DATA_SCRIPT.format(repo=str(REPO))], cwd=REPO,
                       capture_output=True, text=True, timeout=900,
                       env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert out.returncode == 0, out.stderr[-3000:]
  r = json.loads(out.stdout.strip().splitlines()[-1])
  assert r["max_rel_diff"] < 5e-3, r                     # float32 rounding of batched vs single matmuls
  assert r["member_gap"] > 100 * r["max_rel_diff"], r    # members saw different data
  np.testing.assert_allclose(r["loss"], r["loss_seq"], rtol=1e-3)
