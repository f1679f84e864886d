"""IMLE / RS-IMLE training: the generator, Algorithm 1 on the paper's 2D toy, and the distribution metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ldm_jax.eval import distribution
from ldm_jax.imle import algorithm, generator, toy


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_rs_imle_covers_the_prior_and_lands_closer_to_the_data_on_the_2d_toy(seed):
  """Fig. 2/5: IMLE trains on tight bands of the latent space and leaves gaps that test-time latents fall into;
  rejecting samples already within ε of a data point spreads the training latents over the prior."""
  plain, rejecting = toy.train_toy(0.0, seed=seed), toy.train_toy(0.1, seed=seed)
  imle, imle_gap, imle_off = plain["records"], plain["coverage_gap"], plain["off_data"]
  rs, rs_gap, rs_off = rejecting["records"], rejecting["coverage_gap"], rejecting["off_data"]
  assert all(r["rejected_fraction"] == 0 for r in imle)          # ε = 0 is plain IMLE
  assert rs[-1]["rejected_fraction"] > 0.2
  assert imle[-1]["loss"] < 0.1 * imle[0]["loss"] and rs[-1]["loss"] < 0.2 * rs[0]["loss"]
  assert rs_gap < 0.9 * imle_gap, (rs_gap, imle_gap)            # test latents nearer to a trained-on latent
  assert rs_off < 0.7 * imle_off, (rs_off, imle_off)            # test-time samples nearer to the data


def test_staleness_rule_known_cases():
  s = algorithm.ImleSettings(stale_min=7, stale_max=30)
  current = jnp.array([1.0, 1.0, 1.0, 5.0, 5.0])
  threshold = jnp.array([2.0, 2.0, 0.5, 2.0, 2.0])
  stale = jnp.array([7, 6, 10, 29, 30])
  np.testing.assert_array_equal(algorithm.staleness_update(current, threshold, stale, False, s),
                                [True, False, False, False, True])     # close and stale enough / too fresh / not close
  assert bool(algorithm.staleness_update(current, threshold, stale, True, s).all())   # everyone at the start


def test_adaptive_imle_reassigns_only_points_whose_rule_fires():
  run = toy.train_toy(0.1, iterations=40, adaptive=True)
  reassigned = [r["reassigned"] for r in run["records"]]
  assert reassigned[0] == 20 and all(k == 0 for k in reassigned[1:7])   # nobody before `stale_min` iterations
  assert sum(reassigned[7:]) > 0 and max(reassigned[7:]) <= 20
  assert run["records"][-1]["loss"] < 0.5 * run["records"][0]["loss"]


@pytest.mark.parametrize("name,size", [pytest.param("small", 48, marks=pytest.mark.slow), ("small28", 28)])
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


@pytest.mark.slow
@pytest.mark.real_data
def test_imle_job_on_real_drawings_resumes_to_the_same_result(tmp_path):
  """Both members (IMLE, RS-IMLE) train as one vmapped program on 24 QuickDraw cats; 2 epochs + resume to 4
  equals 4 straight; a run over existing checkpoints without --resume is refused."""
  import json

  from configs import imle as imle_config
  from ldm_jax import checkpoint
  from ldm_jax.jobs import imle as job
  cfg = imle_config.get_config("tiny")
  straight = job.train_and_evaluate(cfg, str(tmp_path / "straight"))
  assert [m["method"] for m in straight["members"]] == ["IMLE", "RS-IMLE"]
  # The reported precision / recall are those of the saved samples, by a plain k-NN-ball reference (k = 3).
  from scipy.spatial.distance import cdist
  saved = np.load(tmp_path / "straight" / "samples.npz")
  _, features = job.feature_fn(cfg)
  real = np.asarray(features(saved["data"]), np.float64)

  def coverage(ref, queries, k):
    radius = np.sort(cdist(ref, ref), axis=1)[:, k]
    return float(np.mean((cdist(queries, ref) <= radius[None, :]).any(axis=1)))

  for i, m in enumerate(straight["members"]):
    fake = np.asarray(features(saved[f"samples_{i}"]), np.float64)
    assert saved[f"samples_{i}"].shape == (cfg.eval.samples, 28, 28)
    assert m["precision"] == pytest.approx(coverage(real, fake, cfg.eval.k), abs=1.5 / len(fake))
    assert m["recall"] == pytest.approx(coverage(fake, real, cfg.eval.k), abs=1.5 / len(real))
    assert m["frechet_distance"] > 0.0 and m["loss_last"] < m["loss_first"] and m["nonfinite_epochs"] == 0
  half = imle_config.get_config("tiny")
  half.train.epochs = 2
  job.train_and_evaluate(half, str(tmp_path / "resumed"))
  with pytest.raises(checkpoint.ExistingRunError):
    job.train_and_evaluate(cfg, str(tmp_path / "resumed"))
  with open(tmp_path / "resumed" / "metrics.jsonl", "a") as f:   # a run killed after epoch 3, before its checkpoint
    f.write(json.dumps({"epoch": 3, "member": 0, "loss": -1.0}) + "\n")
  resumed = job.train_and_evaluate(cfg, str(tmp_path / "resumed"), resume=True)
  assert resumed["members"] == straight["members"]
  lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(line)["epoch"] for line in lines] == [1, 1, 2, 2, 3, 3, 4, 4]
  assert (tmp_path / "resumed" / "samples.png").exists()


def test_a_diverged_member_keeps_its_last_finite_state_and_the_others_train():
  """Pure math on a stacked pytree: per member, the new state where its loss is finite, else the old one."""
  old = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(3)}
  new = {"w": jnp.ones((3, 2)), "b": jnp.ones(3)}
  kept, m = algorithm.keep_finite(old, new, {"loss": jnp.array([1.0, jnp.nan, 2.0])})
  np.testing.assert_array_equal(kept["w"], [[1, 1], [0, 0], [1, 1]])
  np.testing.assert_array_equal(kept["b"], [1, 0, 1])
  np.testing.assert_array_equal(m["nonfinite_steps"], [0, 1, 0])


def test_conditional_imle_learns_each_class_around_its_exemplar():
  """Pure math on synthetic latents: 4 classes of 6 points scattered around their exemplar; conditional IMLE and
  RS-IMLE (one vmapped program) both fit them; only RS-IMLE rejects, and only within a class."""
  from ldm_jax.imle import conditional
  rng = np.random.default_rng(0)
  exemplars = rng.normal(size=(4, 8)).astype(np.float32) * 3
  data = exemplars[:, None] + rng.normal(size=(4, 6, 8)).astype(np.float32)
  model = conditional.ConditionalLatentGenerator(8, noise_dim=4, width=64, depth=2)
  tx = optax.adam(3e-3)
  settings = algorithm.ImleSettings(pool_factor=10, inner_steps=20, batch_size=8)
  gen = lambda p, z, e: model.apply(p, z, e)
  step = jax.jit(jax.vmap(conditional.make_conditional_step(gen, tx, settings, 4), in_axes=(0, None, None, 0, 0)))
  init = lambda k: algorithm.init_state(model.init(k, jnp.zeros((1, 4)), jnp.zeros((1, 8))), tx, 24, 4)
  states = jax.vmap(init)(jax.random.split(jax.random.PRNGKey(0), 2))
  assert float(jnp.abs(gen(jax.tree.map(lambda v: v[0], states.params), jnp.ones((4, 4)), exemplars)
                       - exemplars).max()) == 0.0                  # a fresh generator draws the exemplar itself
  eps = jnp.array([0.0, 0.1])
  records = []
  for it in range(60):
    states, m = step(states, jnp.asarray(data), jnp.asarray(exemplars), jax.random.split(jax.random.PRNGKey(it), 2),
                     eps)
    records.append(jax.device_get(m))
  assert all(r["rejected_fraction"][0] == 0 for r in records)
  assert max(r["rejected_fraction"][1] for r in records) > 0
  for member in (0, 1):
    assert records[-1]["loss"][member] < 0.5 * records[0]["loss"][member]
