"""SketchEmbedNet: stroke preparation on real drawings, the HyperLSTM mixture-density decoder, the losses, few-shot
episodes, and the job end to end with resume."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.stats

from ldm_jax.data import strokes as S
from ldm_jax.sketch import fewshot, losses
from ldm_jax.sketch import model as M

TINY = dict(z_dim=16, units=32, hyper_units=16, hyper_embedding=8, mixtures=3)


@pytest.fixture(scope="module")
def omniglot_sketches():
  from ldm_jax.data.sketches import load_sketches
  return load_sketches("omniglot", max_len=64)


@pytest.mark.real_data
def test_stroke_conversions_round_trip_on_real_drawings():
  from ldm_jax import data
  qd = data.load("quickdraw", "all", with_strokes=True, exemplar_space="")["strokes"][:300]
  og = data.load("omniglot", "background", image_size=28, with_strokes=True, exemplar_space="")["strokes"]
  og = [s for s in og if len(s)][:300]
  for s3 in qd:                                                 # stroke-3 ↔ stroke-5 ↔ padded batch: exact
    np.testing.assert_array_equal(S.stroke5_to_stroke3(S.stroke3_to_stroke5(s3)), s3)
    np.testing.assert_array_equal(S.stroke5_to_stroke3(S.stroke3_to_stroke5(s3, max_len=len(s3) + 9)), s3)
  kept = [s for s in qd if len(s) <= 200]
  batch, rows = S.pad_stroke5_batch(kept, 200, scale=1.0)
  for s3, back in zip(kept, S.stroke5_batch_to_stroke3(batch)):
    np.testing.assert_array_equal(back, s3)
  for absolute in og:                                           # absolute ↔ stroke-3 ↔ polylines
    np.testing.assert_allclose(S.stroke3_to_absolute(S.absolute_to_stroke3(absolute)), absolute, atol=1e-4)
    np.testing.assert_array_equal(S.polylines_to_absolute(S.split_strokes(absolute)), absolute)


def test_rdp_keeps_corners_and_drops_points_within_epsilon():
  line = np.stack([np.arange(11.0), np.zeros(11)], 1)
  np.testing.assert_array_equal(S.rdp(line, 0.5), [[0, 0], [10, 0]])
  corner = np.array([[0, 0], [5, 0.4], [10, 0], [10, 10]], np.float32)
  np.testing.assert_array_equal(S.rdp(corner, 0.5), [[0, 0], [10, 0], [10, 10]])
  np.testing.assert_array_equal(S.rdp(corner, 0.3), corner)


@pytest.mark.real_data
def test_rdp_on_omniglot_strokes_stays_within_epsilon(omniglot_sketches):
  from ldm_jax import data
  og = data.load("omniglot", "background", image_size=28, with_strokes=True, exemplar_space="")["strokes"]
  before = after = 0
  for absolute in [s for s in og if len(s)][:200]:
    for stroke in S.split_strokes(absolute):
      kept = np.flatnonzero(S.rdp_mask(stroke, 2.0))
      before, after = before + len(stroke), after + len(kept)
      for lo, hi in zip(kept[:-1], kept[1:]):   # every dropped point lies within ε of its span's chord line
        a, b, inner = stroke[lo], stroke[hi], stroke[lo + 1:hi]
        ab = b - a
        dist = np.abs(ab[0] * (inner[:, 1] - a[1]) - ab[1] * (inner[:, 0] - a[0])) / max(np.hypot(*ab), 1e-9)
        assert np.all(dist <= 2.0 + 1e-4)
  assert after < 0.5 * before                     # Lake's densely sampled trajectories shrink a lot
  s = omniglot_sketches["strokes"]
  np.testing.assert_array_equal(s[:, 0], np.tile([0, 0, 1, 0, 0], (len(s), 1)))     # start token
  assert omniglot_sketches["dropped"] == 0 and len(s) == 4840
  assert np.all(np.diff(s[:, 1:, 4], axis=1) >= 0)                                   # padding only at the end
  np.testing.assert_array_equal(s[:, 1, :2], 0)                                       # drawings start at the origin
  body = s[:, 1:][s[:, 1:, 4] == 0]
  np.testing.assert_allclose(body[:, :2].std(), 1.0, rtol=0.05)                       # unit offset scale


def test_padding_drops_and_counts_overlong_drawings():
  drawings = [np.ones((n, 3), np.float32) for n in (3, 10, 11, 0)]
  batch, kept = S.pad_stroke5_batch(drawings, 10, scale=2.0)
  np.testing.assert_array_equal(kept, [0, 1])
  assert batch.shape == (2, 11, 5)
  np.testing.assert_allclose(batch[0, 1:4, :2], 0.5)
  np.testing.assert_array_equal(batch[0, 4:, 4], 1)
  assert batch[1, :, 4].sum() == 0


def test_stroke_loss_is_the_bivariate_normal_likelihood():
  rng = np.random.default_rng(0)
  out = jnp.asarray(rng.normal(size=(1, 1, 3 + 6 * 2)).astype(np.float32))
  p = M.mixture_params(out, 2)
  target = jnp.asarray([[[0.3, -0.7, 1, 0, 0]]], jnp.float32)
  density = 0.0
  for k in range(2):
    s1, s2, r = (float(p["sigma"][0, 0, k, 0]), float(p["sigma"][0, 0, k, 1]), float(p["rho"][0, 0, k]))
    cov = [[s1 ** 2, r * s1 * s2], [r * s1 * s2, s2 ** 2]]
    density += np.exp(float(p["log_pi"][0, 0, k])) * scipy.stats.multivariate_normal(
        np.asarray(p["mu"][0, 0, k]), cov).pdf([0.3, -0.7])
  np.testing.assert_allclose(float(losses.stroke_loss(p, target)[0]), -np.log(density + 1e-6), rtol=1e-4)
  assert float(losses.stroke_loss(p, target.at[..., 4].set(1.0))[0]) == 0.0     # end rows carry no offset loss
  np.testing.assert_allclose(float(losses.pen_loss(p, target)[0]),
                             -float(jax.nn.log_softmax(p["pen_logits"][0, 0])[0]), rtol=1e-6)


def test_curriculum_alpha():
  steps = jnp.array([0, 9_999, 10_000, 25_000, 10 ** 6])
  np.testing.assert_allclose(losses.curriculum_alpha(steps), [0, 0, 0.05, 0.1, 0.5], atol=1e-7)


def test_hyper_norm_starts_as_a_fixed_0_1_gain():
  hn = M.HyperNorm(units=6, embedding=4, use_bias=True)
  layer, hyper = jnp.arange(12.0).reshape(2, 6), jnp.ones((2, 5))
  v = hn.init(jax.random.PRNGKey(0), layer, hyper)
  np.testing.assert_allclose(hn.apply(v, layer, hyper), 0.1 * layer, rtol=1e-6)


@pytest.mark.real_data
def test_teacher_forced_step_is_finite_and_the_pixel_loss_reaches_the_encoder(omniglot_sketches):
  m = M.SketchEmbedNet(**TINY)
  images = jnp.asarray(omniglot_sketches["images"][:8])
  strokes = jnp.asarray(omniglot_sketches["strokes"][:8])
  v = jax.jit(m.init)(jax.random.PRNGKey(0), images, strokes)

  def part(params, name, key=jax.random.PRNGKey(1)):
    (out, _, _), _ = m.apply({"params": params, "batch_stats": v["batch_stats"]}, images, strokes, key,
                             train=True, mutable=["batch_stats"])
    total, parts = losses.sketch_losses(out, strokes, key, m.mixtures, 28, 0.5)
    return parts[name] if name else total

  total = jax.jit(part, static_argnums=1)(v["params"], "")
  assert np.isfinite(float(total))
  g = jax.jit(jax.grad(part), static_argnums=1)(v["params"], "pixel")
  encoder_grad = jax.tree.leaves(jax.tree.map(lambda x: float(jnp.abs(x).max()), g["cnn"]))
  assert max(encoder_grad) > 0 and all(np.isfinite(encoder_grad))
  # the autoregressive step reproduces teacher forcing, and sampling ends with end rows
  out, mu, _ = jax.jit(m.apply)(v, images, strokes)
  step = jax.jit(lambda c, y: m.apply(v, mu, c, y, method=M.SketchEmbedNet.step))
  carry = m.apply(v, mu, method=M.SketchEmbedNet.initial_carry)
  for t in range(2):
    carry, o = step(carry, strokes[:, t])
    np.testing.assert_allclose(o, out[:, t], atol=1e-5)
  drawn = np.asarray(M.sample(m, v, mu, jax.random.PRNGKey(2), steps=20, temperature=0.5))
  assert drawn.shape == (8, 21, 5)
  np.testing.assert_array_equal(drawn[:, :, 2:].sum(-1), 1)
  for d in drawn:
    end = np.flatnonzero(d[:, 4])
    if len(end):
      assert np.all(d[end[0]:, 4] == 1)


def test_a_non_finite_training_step_is_skipped_and_counted(omniglot_sketches):
  """As in the sweep trainer: a step whose loss is NaN (a poisoned drawing) leaves the state as it was (only the
  step counter moves, so the batch schedule and curriculum stay aligned) and reports nonfinite_steps = 1."""
  from configs import sketch as sketch_config
  from ldm_jax.jobs import sketch as job
  cfg = sketch_config.get_config("tiny")
  model, tx = job.build_model(cfg.model), job.make_optimizer(cfg.train)
  step = job.make_train_step(model, tx, cfg.train, 28)
  images = jnp.asarray(omniglot_sketches["images"][:16])
  strokes = jnp.asarray(omniglot_sketches["strokes"][:16])
  fresh = lambda: job.init_state(model, tx, jax.random.PRNGKey(0), images, strokes)
  before = jax.tree.map(np.asarray, fresh())
  rows = jnp.arange(8)
  poisoned, m = step(fresh(), images, strokes.at[0, 0, 0].set(jnp.nan), rows, jax.random.PRNGKey(1))
  assert int(m["nonfinite_steps"]) == 1 and not np.isfinite(float(m["loss"])) and int(poisoned["step"]) == 1
  for a, b in zip(jax.tree.leaves(poisoned["params"]), jax.tree.leaves(before["params"])):
    np.testing.assert_array_equal(a, b)
  trained, m = step(fresh(), images, strokes, rows, jax.random.PRNGKey(1))
  assert int(m["nonfinite_steps"]) == 0
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(trained["params"]),
                                                      jax.tree.leaves(before["params"])))


def test_latent_interpolation_and_arithmetic_known_values():
  from ldm_jax.sketch import latent
  a, b = jnp.array([0.0, 2.0]), jnp.array([4.0, -2.0])
  np.testing.assert_allclose(latent.interpolate(a, b, 5), [[0, 2], [1, 1], [2, 0], [3, -1], [4, -2]])
  np.testing.assert_allclose(latent.analogy(a, b, jnp.array([1.0, 1.0])), [-3.0, 5.0])


def test_logistic_head_solves_sklearns_objective():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(20, 8)).astype(np.float32)
  y = np.repeat(np.arange(4), 5)

  def objective(flat):
    w, b = flat[:32].reshape(8, 4), flat[32:]
    logits = x @ w + b
    return -np.sum(logits[np.arange(20), y] - scipy.special.logsumexp(logits, 1)) + 0.5 * np.sum(w ** 2)

  reference = scipy.optimize.minimize(objective, np.zeros(36), method="L-BFGS-B", options={"gtol": 1e-9}).x
  w, b = fewshot.fit_logistic(jnp.asarray(x), jnp.asarray(y), 4)
  np.testing.assert_allclose(np.concatenate([np.ravel(w), b]), reference, atol=1e-3)


def test_episodes_on_separable_and_random_features():
  rng = np.random.default_rng(2)
  centres = rng.normal(size=(30, 1, 16))
  clustered = jnp.asarray(centres + 0.01 * rng.normal(size=(30, 20, 16)), jnp.float32)
  acc = fewshot.episode_accuracies(clustered, jax.random.PRNGKey(0), 5, 1, 64)
  assert float(acc.min()) == 1.0
  noise = jnp.asarray(rng.normal(size=(30, 20, 16)), jnp.float32)
  mean, ci = fewshot.mean_ci(fewshot.episode_accuracies(noise, jax.random.PRNGKey(0), 5, 1, 200))
  assert abs(mean - 0.2) < 3 * ci + 0.01
  np.testing.assert_allclose(fewshot.mean_ci([0.0, 1.0]), (0.5, 1.96 * 0.5 / np.sqrt(2)))
  with pytest.raises(ValueError, match="different numbers"):
    fewshot.by_class(np.zeros((5, 2)), np.array([0, 0, 1, 1, 1]))


@pytest.mark.slow
@pytest.mark.real_data
def test_sketch_job_end_to_end_and_resume_gives_the_same_result(tmp_path):
  from configs import sketch as sketch_config
  from ldm_jax import checkpoint
  from ldm_jax.jobs import sketch as job
  cfg = sketch_config.get_config("tiny")
  summary = job.train_and_evaluate(cfg, str(tmp_path / "full"))
  assert set(summary["losses"]) == {"pen", "stroke", "pixel", "loss"}
  for name in ("trained", "random_init"):
    for way, shot in cfg.eval.settings:
      mean, ci = summary["few_shot"][name][f"{way}way{shot}shot"]
      assert 1.0 / way < mean <= 1.0 and 0 < ci < 0.1       # even a random conv4 beats chance on Omniglot
  for f in ("one_shot.png", "interpolation.png", "arithmetic.png", "summary.json", "one_shot.npz"):
    assert (tmp_path / "full" / f).exists()
  shots = np.load(tmp_path / "full" / "one_shot.npz")
  assert shots["samples"].shape == (4, 2, 28, 28) and shots["exemplars"].shape == (4, 28, 28)

  with pytest.raises(checkpoint.ExistingRunError):
    job.train_and_evaluate(cfg, str(tmp_path / "full"))
  half = sketch_config.get_config("tiny")
  half.train.steps = 3                                   # an interrupted run, then resumed to the full length
  job.train(half, str(tmp_path / "resumed"))
  with open(tmp_path / "resumed" / "metrics.jsonl", "a") as f:    # a run killed after step 4, before its checkpoint
    f.write(json.dumps({"step": 4, "member": 0, "loss": -1.0}) + "\n")
  _, resumed, _, _ = job.train(cfg, str(tmp_path / "resumed"), resume=True)
  _, full, _, _ = job.train(cfg, str(tmp_path / "full"), resume=True)    # restores the finished run
  jax.tree.map(np.testing.assert_array_equal, resumed, full)
  untimed = lambda run: [{k: v for k, v in json.loads(line).items() if k != "step_seconds"}
                         for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
  # the uninterrupted run's lines, plus the 3-step run's last step; the killed run's line past its checkpoint is gone
  assert [r for r in untimed("resumed") if r["step"] != 3] == untimed("full") and untimed("full")[-1]["step"] == 6
  other = sketch_config.get_config("tiny")
  other.model.units = 48
  with pytest.raises(checkpoint.ConfigMismatchError, match="model.units"):
    job.train_and_evaluate(other, str(tmp_path / "full"), resume=True)
