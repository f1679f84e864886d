"""Originality / recognizability scores: known values, invariants, and the real test drawings in pixel space."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ldm_jax.eval import scores


def _separated(c=30, n=10, d=16, noise=0.0, seed=0):
  rng = np.random.default_rng(seed)
  ex = rng.normal(size=(c, d)).astype(np.float32) * 10
  samples = ex[:, None, :] + noise * rng.normal(size=(c, n, d)).astype(np.float32)
  return jnp.asarray(samples), jnp.asarray(ex)


def test_originality_of_exact_copies_is_zero_and_grows_with_noise():
  copies, ex = _separated()
  assert float(jnp.abs(scores.originality(copies, ex)).max()) < 1e-3
  means = [float(scores.originality(_separated(noise=s)[0], ex).mean()) for s in (0.5, 1.0, 2.0, 4.0)]
  assert all(a < b for a, b in zip(means, means[1:])), means


def test_originality_is_invariant_to_feature_scale():
  s, ex = _separated(noise=1.0)
  np.testing.assert_allclose(scores.originality(3.0 * s, 3.0 * ex), scores.originality(s, ex), rtol=1e-4)


def test_recognizability_perfect_for_copies_and_chance_for_noise():
  copies, ex = _separated(noise=0.1)
  assert float(scores.recognizability(copies, ex, jax.random.PRNGKey(0)).mean()) == 1.0
  rng = np.random.default_rng(1)
  noise = jnp.asarray(rng.normal(size=(60, 50, 16)).astype(np.float32))
  ex = jnp.asarray(rng.normal(size=(60, 16)).astype(np.float32))
  r = float(scores.recognizability(noise, ex, jax.random.PRNGKey(0), tasks_per_class=20).mean())
  assert abs(r - 1 / 20) < 0.015, r


def test_every_class_is_queried_in_the_same_number_of_tasks_and_the_key_fixes_them():
  s, ex = _separated(noise=8.0)
  a = scores.recognizability(s, ex, jax.random.PRNGKey(3), tasks_per_class=7)
  b = scores.recognizability(s, ex, jax.random.PRNGKey(3), tasks_per_class=7)
  assert a.shape == (30, 10)
  np.testing.assert_array_equal(a, b)
  assert np.all(np.isclose(np.asarray(a) * 7, np.round(np.asarray(a) * 7)))   # k/7 per sample
  with pytest.raises(ValueError, match="20-way"):
    scores.recognizability(s[:5], ex[:5], jax.random.PRNGKey(0))


@pytest.mark.real_data
def test_real_test_drawings_are_recognizable_in_pixel_space(omniglot_test):
  """The human point's recognizability with raw pixels as the metric space: far above 20-way chance (a trained
  critic does better); shuffled labels bring it to chance."""
  from ldm_jax.data import pipeline
  split = pipeline.to_device(omniglot_test)
  rows = pipeline.human_rows(omniglot_test["labels"], omniglot_test["exemplar_index"], 19)  # all but the exemplar
  assert rows.shape == (150, 19) and not np.isin(np.asarray(split.exemplar_index), rows).any()
  x = omniglot_test["images"].reshape(len(omniglot_test["labels"]), -1).astype(np.float32) / 255.0
  samples, ex = jnp.asarray(x)[rows], jnp.asarray(x)[split.exemplar_index]
  r = float(scores.recognizability(samples, ex, jax.random.PRNGKey(0)).mean())
  assert r > 0.25, r
  shuffled = samples[np.random.default_rng(0).permutation(samples.shape[0])]
  assert float(scores.recognizability(shuffled, ex, jax.random.PRNGKey(0)).mean()) < 0.1


def test_binning_sorts_by_originality():
  ori = jnp.asarray([[5.0, 1.0, 3.0, 2.0, 4.0, 0.0]])
  rec = jnp.asarray([[0.0, 1.0, 0.0, 1.0, 0.0, 1.0]])
  o, r = scores.binned_by_originality(ori, rec, bins=3)
  np.testing.assert_allclose(o, [[0.5, 2.5, 4.5]])
  np.testing.assert_allclose(r, [[1.0, 0.5, 0.0]])


def test_normalisation_and_distance_to_human_by_hand():
  ori = np.array([2.0, 4.0, 6.0])          # two models and the human point (index 2)
  rec = np.array([0.9, 0.5, 0.8])
  norm = scores.normalise_originality(ori)
  np.testing.assert_allclose(norm, [0.0, 0.5, 1.0])
  np.testing.assert_allclose(scores.distance_to_human(norm, rec, human_index=2),
                             [np.hypot(1.0, 0.1), np.hypot(0.5, 0.3), 0.0])


def test_parametric_fit_recovers_a_quadratic_in_log_beta():
  betas = np.array([1e-3, 1e-2, 1e-1, 1, 10])
  t = np.log10(betas)
  grid, o, r = scores.parametric_fit(betas, 0.5 * t ** 2 + t, 1 - 0.1 * t)
  assert grid[0] == t.min() and grid[-1] == t.max() and np.all(np.diff(grid) > 0)   # oriented by increasing β
  np.testing.assert_allclose(o, 0.5 * grid ** 2 + grid, atol=1e-8)
  np.testing.assert_allclose(r, 1 - 0.1 * grid, atol=1e-8)
  with pytest.raises(ValueError, match="β > 0"):
    scores.parametric_fit([0.0, 1.0, 2.0], [1, 2, 3], [1, 2, 3])


def test_models_are_identified_by_their_full_beta_vector_and_curves_by_the_swept_beta():
  from ldm_jax.jobs import evaluate
  ldm = lambda **betas: {"kind": "ldm", "betas": betas}
  fig4 = [ldm(kl=1e-3, prototype=b) for b in (1.0, 10.0, 100.0)]
  other_partner = [ldm(kl=1e-2, prototype=b) for b in (1.0, 10.0)]
  single = [ldm(vq=b) for b in (1.0, 5.0, 20.0)]
  models = evaluate.assign_curves([*fig4, *other_partner, *single, ldm(), {"kind": "pixel", "betas": {}}])
  assert [m["beta"] for m in fig4] == [1.0, 10.0, 100.0] and {m["swept"] for m in fig4} == {"prototype"}
  assert {m["regularizer"] for m in fig4} == {"kl=0.001+prototype"}           # two KL partners: two curves
  assert {m["regularizer"] for m in other_partner} == {"kl=0.01+prototype"}
  assert [m["beta"] for m in single] == [1.0, 5.0, 20.0] and {m["regularizer"] for m in single} == {"vq"}
  assert models[-2]["regularizer"] == "none" and "swept" not in models[-1]
  alone = evaluate.assign_curves([ldm(kl=1e-3, prototype=b) for b in (1.0, 10.0, 100.0)])
  assert {m["regularizer"] for m in alone} == {"kl+prototype"}                # one partner: the plain label
  results = [{"name": "h", "kind": "human", "regularizer": "", "beta": 0.0, "originality": 0.5,
              "recognizability": 0.9}]
  results += [{**m, "name": str(i), "originality": 0.1 * i, "recognizability": 0.5} for i, m in enumerate(alone)]
  evaluate.place_points(results)
  assert set(evaluate.parametric_fits(results)) == {"kl+prototype"}           # three distinct swept β: a fit


def test_figures_are_regenerated_from_scores_json(tmp_path):
  """Fig. 3 (three family panels), A.4–A.9 (one three-panel figure per single regularizer with a fit) and Fig. 5b
  from a scores.json alone; each fit passes through its points as a least-squares parabola in log10 β."""
  import json

  from ldm_jax.jobs import evaluate
  pt = lambda name, reg, beta, ori, rec, kind="ldm": {"name": name, "kind": kind, "regularizer": reg,
                                                      "beta": beta, "originality": ori, "recognizability": rec}
  results = [pt("humans", "", 0.0, 0.5, 0.9, "human"), pt("none", "none", 0.0, 0.9, 0.3),
             pt("pixel", "", 0.0, 0.8, 0.35, "pixel")]
  results += [pt(f"kl{b}", "kl", b, 0.7 - 0.1 * i, 0.4 + 0.1 * i) for i, b in enumerate((1e-4, 1e-3, 1e-2))]
  results += [pt(f"proto{b}", "prototype", b, 0.6 - 0.1 * i, 0.5 + 0.2 * i - 0.05 * i * i)
              for i, b in enumerate((1.0, 10.0, 100.0, 1000.0))]
  results += [pt("vq5", "vq", 5.0, 0.2, 0.3)]                       # one β: drawn, no fit
  evaluate.place_points(results)
  fits = evaluate.parametric_fits(results)
  assert set(fits) == {"kl", "prototype"}
  t, o, r = fits["prototype"]
  # four β on a parabola in log10 β: the least-squares fit is that parabola
  norm = {p["name"]: p for p in results}
  np.testing.assert_allclose(np.interp(np.log10(100.0), t, r), norm["proto100.0"]["recognizability"], atol=1e-3)
  summary = {"data": "omniglot", "points": [evaluate._jsonable(p) for p in results],
             "importance": {"spearman": {"none": {"mean": 0.2, "std": 0.05}, "proto": {"mean": 0.5, "std": 0.1}},
                            "human_consistency": 0.88, "wilcoxon_greater": {"proto": {"none": 1e-4}},
                            "baseline": "none"}}
  (tmp_path / "scores.json").write_text(json.dumps(summary))
  written = evaluate.replot(tmp_path)
  assert written == ["originality_recognizability.png", "fig3.png", "beta_kl.png", "beta_prototype.png",
                     "beta_vq.png", "importance_spearman.png"]
  assert all((tmp_path / w).stat().st_size > 10_000 for w in written)
