"""Samplers as jit-compiled kernels: ancestral DDPM over all T steps (or DDIM over a subsequence) as ONE `lax.scan`.

Classifier-free guidance runs the conditional and the unconditional (null = zero condition) branches as one doubled
batch: ε̂ = (1 + γ) ε_c − γ ε_u (Eq. 8). Step t's noise is `normal(fold_in(key, t))`, so the scanned kernel and a
Python loop of jitted steps (`ddpm_sample_loop`, the benchmark baseline) draw the same numbers; x_T comes from
`split(key)[0]` and the step noise from `split(key)[1]`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ldm_jax.diffusion import EpsFn, Schedule, predict_x0

SAMPLERS = ("ddpm", "ddim")


def guided_eps(eps_fn: EpsFn, params, x: jax.Array, cond: jax.Array, t: jax.Array, guidance) -> jax.Array:
  """(1 + γ) ε(x, cond) − γ ε(x, ∅), both branches in one batch of 2B."""
  b = x.shape[0]
  both = eps_fn(params, jnp.concatenate([x, x]), jnp.concatenate([cond, jnp.zeros_like(cond)]),
                jnp.concatenate([t, t]))
  eps_c, eps_u = both[:b], both[b:]
  return (1.0 + guidance) * eps_c - guidance * eps_u


def _step_noise(key: jax.Array, t, shape, dtype) -> jax.Array:
  return jax.random.normal(jax.random.fold_in(jax.random.split(key)[1], t), shape, dtype)


def ddpm_step(eps_fn: EpsFn, params, schedule: Schedule, x: jax.Array, cond: jax.Array, t, key: jax.Array,
              guidance) -> jax.Array:
  """x_{t−1} ~ N(μ_θ(x_t, t), β̃_t I) with μ_θ = (x_t − β_t/√(1 − ᾱ_t) ε̂) / √α_t (Eq. 26); no noise at t = 0."""
  eps = guided_eps(eps_fn, params, x, cond, jnp.full((x.shape[0],), t, jnp.int32), guidance)
  return ddpm_update(schedule, x, eps, t, key)


def ddpm_update(schedule: Schedule, x: jax.Array, eps: jax.Array, t, key: jax.Array) -> jax.Array:
  """The ancestral update from x_t given the (guided) noise prediction ε̂ at x_t."""
  mean = (x - schedule.betas[t] / jnp.sqrt(1.0 - schedule.alpha_bars[t]) * eps) / jnp.sqrt(schedule.alphas[t])
  sigma = jnp.where(t > 0, jnp.sqrt(schedule.posterior_variance[t]), 0.0)
  return mean + sigma * _step_noise(key, t, x.shape, x.dtype)


def initial_noise(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
  return jax.random.normal(jax.random.split(key)[0], shape, dtype)


def ddpm_sample(eps_fn: EpsFn, params, schedule: Schedule, cond: jax.Array, key: jax.Array, guidance=1.0,
                trajectory: bool = False):
  """Ancestral sampling from x_T ~ N(0, I) down to x_0 as one `lax.scan`; returns x_0 (and every x_t if asked,
  [T, B, ...], the state after each step)."""
  x_init = initial_noise(key, cond.shape, cond.dtype)

  def body(x, t):
    x = ddpm_step(eps_fn, params, schedule, x, cond, t, key, guidance)
    return x, (x if trajectory else None)

  x0, xs = jax.lax.scan(body, x_init, jnp.arange(schedule.timesteps - 1, -1, -1))
  return (x0, xs) if trajectory else x0


def ddpm_sample_loop(step_fn, params, schedule: Schedule, cond: jax.Array, key: jax.Array, guidance=1.0,
                     trajectory: bool = False):
  """The same sampler as a Python loop over a jitted `ddpm_step` (the straightforward baseline)."""
  x = initial_noise(key, cond.shape, cond.dtype)
  xs = []
  for t in range(schedule.timesteps - 1, -1, -1):
    x = step_fn(params, schedule, x, cond, t, key, guidance)
    xs.append(x)
  return (x, jnp.stack(xs)) if trajectory else x


def ddim_timesteps(timesteps: int, steps: int) -> jax.Array:
  """An evenly spaced decreasing subsequence of 0 … T−1 that ends at 0."""
  if not 1 <= steps <= timesteps:
    raise ValueError(f"DDIM steps must be in [1, {timesteps}], got {steps}")
  return jnp.asarray((jnp.arange(steps) * timesteps) // steps)[::-1]


def ddim_sample(eps_fn: EpsFn, params, schedule: Schedule, cond: jax.Array, key: jax.Array, guidance=1.0,
                steps: int = 50, eta: float = 0.0):
  """DDIM (Song et al. 2021) over `steps` time steps; eta = 0 is deterministic, eta = 1 matches DDPM's variance."""
  ts = ddim_timesteps(schedule.timesteps, steps)
  t_prev = jnp.concatenate([ts[1:], jnp.array([-1])])

  def body(x, tt):
    t, tp = tt
    eps = guided_eps(eps_fn, params, x, cond, jnp.full((x.shape[0],), t, jnp.int32), guidance)
    ab, ab_prev = schedule.alpha_bars[t], jnp.where(tp >= 0, schedule.alpha_bars[jnp.maximum(tp, 0)], 1.0)
    x0 = predict_x0(schedule, x, jnp.full((x.shape[0],), t), eps)
    sigma = eta * jnp.sqrt((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev))
    x = (jnp.sqrt(ab_prev) * x0 + jnp.sqrt(jnp.maximum(1.0 - ab_prev - sigma ** 2, 0.0)) * eps
         + sigma * _step_noise(key, t, x.shape, x.dtype))
    return x, None

  x, _ = jax.lax.scan(body, initial_noise(key, cond.shape, cond.dtype), (ts, t_prev))
  return x


def make_sampler(eps_fn: EpsFn, kind: str = "ddpm", ddim_steps: int = 50, ddim_eta: float = 0.0):
  """jit(params, schedule, cond, key, guidance) → x_0: the sampler kernel for one denoiser."""
  if kind == "ddpm":
    fn = functools.partial(ddpm_sample, eps_fn)
  elif kind == "ddim":
    fn = functools.partial(ddim_sample, eps_fn, steps=ddim_steps, eta=ddim_eta)
  else:
    raise ValueError(f"unknown sampler {kind!r}; choose from {SAMPLERS}")
  return jax.jit(fn)


def chunked(sample_fn, params, schedule, cond: jax.Array, key: jax.Array, guidance, chunk: int) -> jax.Array:
  """Runs a sampler over `cond` in chunks of rows (bounded memory for large sample sets); chunk i uses
  fold_in(key, i), so the result depends only on the chunk size, not on the device."""
  n = cond.shape[0]
  if n <= chunk:
    return sample_fn(params, schedule, cond, jax.random.fold_in(key, 0), guidance)
  pad = (-n) % chunk
  conds = jnp.pad(cond, ((0, pad),) + ((0, 0),) * (cond.ndim - 1)).reshape(-1, chunk, *cond.shape[1:])
  outs = [sample_fn(params, schedule, c, jax.random.fold_in(key, i), guidance) for i, c in enumerate(conds)]
  return jnp.concatenate(outs)[:n]

