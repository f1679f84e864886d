"""DDPM: the noise schedule, the forward (noising) process and the ε-prediction loss (paper §4.2, A.4).

Time steps are indices t = 0 … T−1 (t = 0 is the first noising step, x_0 the data); arrays of the schedule are
indexed by t. Everything works on arrays of any trailing shape (latent vectors or images).
"""

from __future__ import annotations

from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

SCHEDULES = ("linear", "scaled_linear")

# eps_fn(params, x_t, cond, t) → ε̂, with x_t and cond [B, ...] and t int32 [B].
EpsFn = Callable[..., jax.Array]


@flax.struct.dataclass
class Schedule:
  betas: jax.Array              # β_t
  alphas: jax.Array             # α_t = 1 − β_t
  alpha_bars: jax.Array         # ᾱ_t = Π_{s≤t} α_s
  alpha_bars_prev: jax.Array    # ᾱ_{t−1}, with ᾱ_{−1} = 1
  posterior_variance: jax.Array  # β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t

  @property
  def timesteps(self) -> int:
    return self.betas.shape[-1]


def make_schedule(timesteps: int = 1000, beta_start: float = 1.5e-3, beta_end: float = 1.95e-2,
                  kind: str = "linear") -> Schedule:
  """β_t linear between the endpoints (the paper), or 'scaled_linear': √β_t linear (the authors' code).

  Computed in float64 on the host, stored as float32.
  """
  if kind == "linear":
    betas = np.linspace(beta_start, beta_end, timesteps, dtype=np.float64)
  elif kind == "scaled_linear":
    betas = np.linspace(beta_start ** 0.5, beta_end ** 0.5, timesteps, dtype=np.float64) ** 2
  else:
    raise ValueError(f"unknown schedule {kind!r}; choose from {SCHEDULES}")
  alphas = 1.0 - betas
  alpha_bars = np.cumprod(alphas)
  alpha_bars_prev = np.concatenate([[1.0], alpha_bars[:-1]])
  posterior_variance = betas * (1.0 - alpha_bars_prev) / (1.0 - alpha_bars)
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  return Schedule(f32(betas), f32(alphas), f32(alpha_bars), f32(alpha_bars_prev), f32(posterior_variance))


def schedule_from_config(dc) -> Schedule:
  return make_schedule(dc.timesteps, dc.beta_start, dc.beta_end, dc.schedule)


def _bcast(values: jax.Array, like: jax.Array) -> jax.Array:
  """[B] → [B, 1, …] to broadcast against `like`."""
  return values.reshape(values.shape + (1,) * (like.ndim - values.ndim))


def q_sample(schedule: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
  """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (Eq. 18)."""
  ab = _bcast(schedule.alpha_bars[t], x0)
  return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * noise


def predict_x0(schedule: Schedule, x_t: jax.Array, t: jax.Array, eps: jax.Array) -> jax.Array:
  """x_0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t (Eq. 24)."""
  ab = _bcast(schedule.alpha_bars[t], x_t)
  return (x_t - jnp.sqrt(1.0 - ab) * eps) / jnp.sqrt(ab)


def drop_condition(key: jax.Array, cond: jax.Array, prob: float) -> jax.Array:
  """Classifier-free guidance training: each row's condition is replaced by the null (zero) condition w.p. prob."""
  keep = jax.random.bernoulli(key, 1.0 - prob, (cond.shape[0],))
  return cond * _bcast(keep.astype(cond.dtype), cond)


def loss(eps_fn: EpsFn, params, schedule: Schedule, x0: jax.Array, cond: jax.Array, key: jax.Array,
         cond_drop_prob: float = 0.1) -> jax.Array:
  """ε-prediction MSE (Eq. 6/29) with t ~ U{0..T−1}, ε ~ N(0, I) and the condition dropped w.p. cond_drop_prob."""
  k_t, k_eps, k_drop = jax.random.split(key, 3)
  t = jax.random.randint(k_t, (x0.shape[0],), 0, schedule.timesteps)
  noise = jax.random.normal(k_eps, x0.shape, x0.dtype)
  eps_hat = eps_fn(params, q_sample(schedule, x0, t, noise), drop_condition(k_drop, cond, cond_drop_prob), t)
  return jnp.mean(jnp.square(eps_hat - noise))
