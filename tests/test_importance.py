"""Feature-importance maps (Eq. 9) against a full-Jacobian reference, and the human-comparison statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from ldm_jax import diffusion, sampling
from ldm_jax.eval import importance


def _toy_model(d=3, side=4, seed=0):
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
  params = {"w": jax.random.normal(k1, (d, d)) * 0.3, "c": jax.random.normal(k2, (d, d)) * 0.3}
  eps_fn = lambda p, x, cond, t: jnp.tanh(x @ p["w"] + cond @ p["c"]) * (1.0 + t[:, None] / 100.0)
  w_dec = jax.random.normal(k3, (d, side * side))
  decode = lambda x: jnp.tanh(x @ w_dec).reshape(x.shape[0], side, side)
  return eps_fn, decode, params


@pytest.mark.parametrize("weighting,jacobian_at", [("score", "next"), ("eps", "next"), ("score", "current")])
def test_jvp_map_equals_full_jacobian_map_and_sampler_output(weighting, jacobian_at):
  eps_fn, decode, params = _toy_model()
  schedule = diffusion.make_schedule(timesteps=20)
  cond = jax.random.normal(jax.random.PRNGKey(1), (2, 3))
  key, guidance = jax.random.PRNGKey(2), 1.5
  x0, phi = jax.jit(importance.importance_sample, static_argnums=(0, 1, 7, 8))(
      eps_fn, decode, params, schedule, cond, key, guidance, weighting, jacobian_at)

  # Reference: a Python loop that builds each sample's full decoder Jacobian at z_{t−1} (Eq. 40) or z_t.
  x = sampling.initial_noise(key, cond.shape)
  want = np.zeros((2, 4, 4))
  for t in range(19, -1, -1):
    eps = sampling.guided_eps(eps_fn, params, x, cond, jnp.full((2,), t), guidance)
    s = -eps / jnp.sqrt(1.0 - schedule.alpha_bars[t]) if weighting == "score" else eps
    x_next = sampling.ddpm_update(schedule, x, eps, t, key)
    at = x_next if jacobian_at == "next" else x
    for b in range(2):
      jac = jax.jacobian(lambda z: decode(z[None])[0])(at[b])          # [4, 4, d]
      want[b] += np.abs(np.einsum("hwd,d->hw", jac, s[b]))
    x = x_next
  np.testing.assert_allclose(phi, want, rtol=1e-4, atol=1e-5)
  # The same T = 20 updates computed by three programs: each step rounds x (|x| ≲ 3) to a few ε, carried on by the
  # next (1/√ᾱ ≈ 1), so the outputs agree to ≈ 4·T·ε·max|x|.
  atol = 4 * 20 * float(np.finfo(np.float32).eps) * float(np.abs(x).max())
  np.testing.assert_allclose(x0, sampling.ddpm_sample(eps_fn, params, schedule, cond, key, guidance), atol=atol)
  np.testing.assert_allclose(x0, x, atol=atol)


def test_spearman_matches_scipy_with_ties_and_batches():
  rng = np.random.default_rng(0)
  a = rng.integers(0, 5, (3, 6, 6)).astype(np.float32)       # many ties, like blank pixels of a click map
  b = a + rng.normal(0, 2.0, a.shape).astype(np.float32)
  b[1] = rng.integers(0, 3, (6, 6))
  got = np.asarray(importance.spearman(jnp.asarray(a), jnp.asarray(b)))
  want = [stats.spearmanr(a[i].ravel(), b[i].ravel()).statistic for i in range(3)]
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert float(importance.spearman(jnp.asarray(a[0]), jnp.asarray(a[0]))) == pytest.approx(1.0)
  assert float(importance.spearman(jnp.asarray(a[0]), -jnp.asarray(a[0]))) == pytest.approx(-1.0)


def test_wilcoxon_table_is_one_sided_scipy():
  rng = np.random.default_rng(0)
  base = rng.uniform(0.1, 0.5, 25)
  corr = {"better": base + 0.2 + rng.normal(0, 0.02, 25), "worse": base, "same": base.copy()}
  table = importance.wilcoxon_table(corr)
  assert table["better"]["worse"] == pytest.approx(stats.wilcoxon(corr["better"] - corr["worse"],
                                                                  alternative="greater").pvalue)
  assert table["better"]["worse"] < 1e-3 < 0.99 < table["worse"]["better"]
  assert table["worse"]["same"] == 1.0 and set(table["better"]) == {"worse", "same"}


def test_category_means():
  maps = np.arange(4 * 2 * 2, dtype=np.float32).reshape(4, 2, 2)
  cats, means = importance.category_means(maps, np.array([1, 0, 1, 0]))
  np.testing.assert_array_equal(cats, [0, 1])
  np.testing.assert_array_equal(means[0], (maps[1] + maps[3]) / 2)


@pytest.mark.real_data
def test_clickme_human_maps_agree_across_halves_of_the_participants():
  from ldm_jax import data
  d = data.load("clickme", "all", exemplar_space="")
  _, half_a = importance.category_means(d["heatmap_half_a"], d["labels"])
  _, half_b = importance.category_means(d["heatmap_half_b"], d["labels"])
  _, whole = importance.category_means(d["heatmap"], d["labels"])
  consistency = np.asarray(importance.spearman(jnp.asarray(half_a), jnp.asarray(half_b)))
  assert consistency.shape == (25,)
  # Two halves of the participants agree far more than a category's map agrees with another category's.
  shuffled = np.asarray(importance.spearman(jnp.asarray(whole), jnp.asarray(np.roll(whole, 1, axis=0))))
  print("human split-half consistency", consistency.mean(), "across categories", shuffled.mean())
  assert consistency.mean() > 0.6 and consistency.mean() > shuffled.mean() + 0.1


@pytest.mark.parametrize("impl", ["matmul", "vjp"])
def test_jvp_by_vjp_equals_jvp_through_reverse_mode_only_convolutions(impl):
  """The RAE decoder's 'matmul'/'vjp' convolutions are `custom_vjp` (jax.jvp raises on them): the product through
  the pullback's transpose equals jax.jvp of the same layer written with XLA convolutions."""
  from ldm_jax.models import layers
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.normal(k1, (2, 9, 9, 16))
  v = jax.random.normal(k2, x.shape)
  kernel = jax.random.normal(k3, (3, 3, 16, 4)) * 0.1          # C_out < C_in: the output-side GEMM form
  f = lambda impl: lambda z: jnp.tanh(layers.conv_valid(z, kernel, impl))
  with pytest.raises(TypeError, match="custom_vjp"):
    jax.jvp(f(impl), (x,), (v,))
  want = jax.jvp(f("xla"), (x,), (v,))[1]
  np.testing.assert_allclose(importance.jvp_by_vjp(f(impl), x, v), want, rtol=1e-5, atol=1e-5)
