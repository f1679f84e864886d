"""DDPM math, the sampler kernels and the 1D UNet: closed forms, known values, and step-for-step equalities."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ldm_jax import diffusion, sampling
from ldm_jax.models.pixel_denoiser import PixelDenoiser
from ldm_jax.models.unet1d import build_unet, param_count, sinusoidal_embedding

TABLE2 = [16512, 16512, 1050624, 21011456, 5787136, 1713920, 198656, 131840, 198656, 1316608, 4730368, 17849344,
          21514240, 524544]  # the Param # column of Table 2


def _count(name, d):
  m = build_unet(name, d)
  shapes = jax.eval_shape(lambda: m.init(jax.random.PRNGKey(0), jnp.zeros((2, d)), jnp.zeros((2, d)),
                                         jnp.zeros((2,), jnp.int32)))
  return param_count(shapes["params"])


def test_paper_unet_reproduces_table2_exactly():
  # Table 2's rows (input 512 = concat of two 256-d vectors, output 256) are the d = 256 instance of the family.
  assert _count("paper", 256) == sum(TABLE2) == 76_060_416


def test_paper_unet_parameter_count_for_quickdraw_latents():
  n = _count("paper", 128)
  assert abs(n - sum(TABLE2)) / sum(TABLE2) < 0.02, n       # "~77M for d = 128"
  assert n == 75_273_856


def test_small_unet_is_the_released_half_million():
  assert 0.4e6 < _count("small", 128) < 0.55e6
  assert 0.4e6 < _count("small", 64) < 0.55e6


def test_schedule_matches_closed_form():
  s = diffusion.make_schedule(1000, 1.5e-3, 1.95e-2, "linear")
  betas = np.linspace(1.5e-3, 1.95e-2, 1000)
  np.testing.assert_allclose(s.betas, betas, rtol=1e-6)
  np.testing.assert_allclose(s.alpha_bars[-1], np.prod(1 - betas), rtol=1e-5)
  t = np.array([1, 10, 500, 999])
  ab = np.cumprod(1 - betas)
  np.testing.assert_allclose(s.posterior_variance[t], (1 - ab[t - 1]) / (1 - ab[t]) * betas[t], rtol=1e-5)
  assert s.posterior_variance[0] == 0.0                       # β̃_0 = 0: nothing is added at the last step
  scaled = diffusion.make_schedule(1000, 1.5e-3, 1.95e-2, "scaled_linear")
  np.testing.assert_allclose([scaled.betas[0], scaled.betas[-1]], [1.5e-3, 1.95e-2], rtol=1e-6)
  np.testing.assert_allclose(np.sqrt(scaled.betas), np.linspace(1.5e-3 ** .5, 1.95e-2 ** .5, 1000), rtol=1e-5)
  assert scaled.betas[500] < s.betas[500]                     # √β linear is convex in β
  with pytest.raises(ValueError, match="cosine"):
    diffusion.make_schedule(kind="cosine")


def test_q_sample_and_predict_x0_round_trip():
  s = diffusion.make_schedule()
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
  x0 = jax.random.normal(k1, (16, 64))
  eps = jax.random.normal(k2, (16, 64))
  t = jax.random.randint(k3, (16,), 0, 1000)
  xt = diffusion.q_sample(s, x0, t, eps)
  np.testing.assert_allclose(diffusion.predict_x0(s, xt, t, eps), x0, atol=2e-4)
  # the marginal variance is preserved for unit-variance data
  big = diffusion.q_sample(s, jax.random.normal(k1, (20000, 4)), jnp.full((20000,), 700),
                          jax.random.normal(k2, (20000, 4)))
  assert abs(float(big.var()) - 1.0) < 0.03


def _oracle(schedule, x_star):
  """The exact ε-predictor of a data distribution concentrated on x_star (ignores the condition)."""
  def eps_fn(params, x, cond, t):
    ab = schedule.alpha_bars[t][:, None]
    return (x - jnp.sqrt(ab) * x_star) / jnp.sqrt(1.0 - ab)
  return eps_fn


@pytest.mark.parametrize("kind", ["ddpm", "ddim"])
def test_samplers_recover_a_point_mass_with_the_exact_score(kind):
  s = diffusion.make_schedule(200)
  x_star = jnp.linspace(-2, 2, 8)
  sampler = sampling.make_sampler(_oracle(s, x_star), kind, ddim_steps=20)
  out = sampler(None, s, jnp.zeros((5, 8)), jax.random.PRNGKey(1), 1.0)
  np.testing.assert_allclose(out, jnp.broadcast_to(x_star, (5, 8)), atol=1e-3)


def test_ddim_with_eta_one_over_all_steps_is_the_ancestral_ddpm_sampler():
  """η = 1 gives DDIM DDPM's posterior variance: over all T steps (same noise) the two samplers agree, which is
  what makes strided η = 1 DDIM a cheaper version of the same stochastic sampler (the cpu-scale study's)."""
  s = diffusion.make_schedule(60)
  params = None
  eps_fn = lambda p, x, c, t: jnp.sin(3.0 * x) + 0.3 * c + 1e-3 * t[:, None]   # smooth, condition- and t-dependent
  cond, key = jax.random.normal(jax.random.PRNGKey(2), (6, 8)), jax.random.PRNGKey(3)
  ddpm = sampling.make_sampler(eps_fn, "ddpm")(params, s, cond, key, 2.0)
  ddim = sampling.make_sampler(eps_fn, "ddim", ddim_steps=60, ddim_eta=1.0)(params, s, cond, key, 2.0)
  np.testing.assert_allclose(ddim, ddpm, rtol=1e-4, atol=1e-4)
  strided = sampling.make_sampler(eps_fn, "ddim", ddim_steps=12, ddim_eta=1.0)(params, s, cond, key, 2.0)
  assert np.isfinite(strided).all() and np.abs(np.asarray(strided) - np.asarray(ddpm)).max() > 1e-2


def test_loss_of_the_exact_score_is_zero():
  s = diffusion.make_schedule(100)
  x_star = jnp.ones((4,))
  value = diffusion.loss(_oracle(s, x_star), None, s, jnp.broadcast_to(x_star, (32, 4)), jnp.zeros((32, 4)),
                         jax.random.PRNGKey(0))
  assert float(value) < 1e-8


def _tiny_unet(d=8, dim=16):
  m = build_unet("small", d, dim=dim, dim_mults=(1, 2))
  params = m.init(jax.random.PRNGKey(0), jnp.zeros((2, d)), jnp.zeros((2, d)), jnp.zeros((2,), jnp.int32))["params"]
  return (lambda p, x, c, t: m.apply({"params": p}, x, c, t)), params


def test_scanned_sampler_equals_python_loop_step_for_step():
  eps_fn, params = _tiny_unet()
  s = diffusion.make_schedule(30)
  cond = jax.random.normal(jax.random.PRNGKey(2), (6, 8))
  key = jax.random.PRNGKey(3)
  scanned = jax.jit(functools.partial(sampling.ddpm_sample, eps_fn, trajectory=True))
  x0, xs = scanned(params, s, cond, key, 1.0)
  step = jax.jit(functools.partial(sampling.ddpm_step, eps_fn))
  y0, ys = sampling.ddpm_sample_loop(step, params, s, cond, key, 1.0, trajectory=True)
  assert xs.shape == (30, 6, 8)
  np.testing.assert_allclose(xs, ys, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(x0, y0, rtol=1e-5, atol=1e-5)


def _reference_ddpm(eps_fn, params, s, cond, key):
  """Algorithm 2 of Ho et al. written out with the conditional model only (batch B, no guidance)."""
  x = sampling.initial_noise(key, cond.shape)
  for t in range(s.timesteps - 1, -1, -1):
    eps = eps_fn(params, x, cond, jnp.full((cond.shape[0],), t))
    x = (x - s.betas[t] / jnp.sqrt(1 - s.alpha_bars[t]) * eps) / jnp.sqrt(s.alphas[t])
    if t > 0:
      noise = jax.random.normal(jax.random.fold_in(jax.random.split(key)[1], t), x.shape)
      x = x + jnp.sqrt(s.posterior_variance[t]) * noise
  return x


def test_zero_guidance_is_the_conditional_model():
  eps_fn, params = _tiny_unet(dim=64)  # 8 channels per GroupNorm group: rounding is not amplified chaotically
  s = diffusion.make_schedule(20)
  cond = jax.random.normal(jax.random.PRNGKey(2), (4, 8))
  key = jax.random.PRNGKey(5)
  guided = sampling.make_sampler(eps_fn)(params, s, cond, key, 0.0)
  np.testing.assert_allclose(guided, _reference_ddpm(eps_fn, params, s, cond, key), rtol=1e-4, atol=1e-4)
  # and guidance changes the samples when the model depends on the condition
  strong = sampling.make_sampler(eps_fn)(params, s, cond, key, 3.0)
  assert float(jnp.abs(strong - guided).max()) > 1e-3


def test_guided_eps_combines_branches():
  eps_fn = lambda p, x, c, t: x + 10.0 * c
  x, c = jnp.ones((3, 2)), jnp.full((3, 2), 0.5)
  out = sampling.guided_eps(eps_fn, None, x, c, jnp.zeros((3,), jnp.int32), 1.0)
  np.testing.assert_allclose(out, 2 * (1 + 5.0) - 1 * 1.0)   # (1+γ)ε_c − γ ε_u


def test_condition_dropout_rate():
  cond = jnp.ones((20000, 3))
  dropped = diffusion.drop_condition(jax.random.PRNGKey(0), cond, 0.1)
  rows_dropped = float(jnp.mean(jnp.all(dropped == 0, -1)))
  assert abs(rows_dropped - 0.1) < 0.01
  assert set(np.unique(np.asarray(dropped))) <= {0.0, 1.0}


def test_unet_gradients_are_finite_and_depend_on_time_and_condition():
  eps_fn, params = _tiny_unet()
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 8))
  c = jax.random.normal(jax.random.PRNGKey(1), (4, 8))
  t = jnp.array([0, 10, 100, 999])
  out = eps_fn(params, x, c, t)
  assert out.shape == (4, 8)
  assert not np.allclose(out, eps_fn(params, x, c, t + 1))
  assert not np.allclose(out, eps_fn(params, x, jnp.zeros_like(c), t))
  grads = jax.grad(lambda p: jnp.sum(eps_fn(p, x, c, t) ** 2))(params)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  emb = sinusoidal_embedding(jnp.array([0, 1]), 128)
  np.testing.assert_allclose(emb[0, :64], 0.0), np.testing.assert_allclose(emb[0, 64:], 1.0)


def test_pixel_denoiser_maps_images_to_noise_images():
  m = PixelDenoiser(unet="small", conv_impl="xla")
  x = jnp.zeros((2, 48, 48, 1))
  params = m.init(jax.random.PRNGKey(0), x, x, jnp.zeros((2,), jnp.int32))["params"]
  out = m.apply({"params": params}, x + 0.1, x, jnp.array([3, 400]))
  assert out.shape == (2, 48, 48, 1) and bool(jnp.all(jnp.isfinite(out)))


def test_ddim_timesteps():
  ts = np.asarray(sampling.ddim_timesteps(1000, 50))
  assert ts[0] == 980 and ts[-1] == 0 and len(ts) == 50 and np.all(np.diff(ts) < 0)
  with pytest.raises(ValueError):
    sampling.ddim_timesteps(10, 11)
