"""IMLE / RS-IMLE training: the generator, Algorithm 1 on the paper's 2D toy, and the distribution metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ldm_jax.eval import distribution
from ldm_jax.imle import generator, toy


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


@pytest.mark.real_data
def test_imle_job_on_real_drawings_resumes_to_the_same_result(tmp_path):
  """Both members (IMLE, RS-IMLE) train as one vmapped program on 24 QuickDraw cats; 2 iterations + resume to 4
  equals 4 straight; a run over existing checkpoints without --resume is refused."""
  import json
  from configs import imle as imle_config
  from ldm_jax import checkpoint
  from ldm_jax.imle import job
  cfg = imle_config.get_config("tiny")
  straight = job.train_and_evaluate(cfg, str(tmp_path / "straight"))
  assert [m["method"] for m in straight["members"]] == ["IMLE", "RS-IMLE"]
  for m in straight["members"]:
    assert 0.0 <= m["precision"] <= 1.0 and 0.0 <= m["recall"] <= 1.0 and m["frechet_distance"] >= 0.0
    assert m["loss_last"] < m["loss_first"]
  half = imle_config.get_config("tiny")
  half.train.iterations = 2
  job.train_and_evaluate(half, str(tmp_path / "resumed"))
  with pytest.raises(checkpoint.ExistingRunError):
    job.train_and_evaluate(cfg, str(tmp_path / "resumed"))
  resumed = job.train_and_evaluate(cfg, str(tmp_path / "resumed"), resume=True)
  assert resumed["members"] == straight["members"]
  lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(line)["iteration"] for line in lines] == [1, 1, 2, 2, 3, 3, 4, 4]
  assert (tmp_path / "resumed" / "samples.png").exists()
