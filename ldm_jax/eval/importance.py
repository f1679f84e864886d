"""Feature-importance maps of latent diffusion models (paper Eq. 9, A.8) and their comparison with human maps.

φ(x, y) = Σ_t |J_decoder · s_t| with s_t = −ε̂_t / √(1 − ᾱ_t) the guided score computed AT z_t. Where the decoder's
Jacobian is taken, the paper says two things: Eq. 40–41 apply the chain rule to p_θ ∘ p_ψ, so J_{p_θ} is evaluated
at p_ψ(z_t), the transition's output z_{t−1} (Eq. 37: z_t ↦ z_{t−1}); Eq. 9/43 write it with the subscript
(·|z_t). `jacobian_at='next'` (default) follows Eq. 40–41 (J at the sampler's z_{t−1}, which is also what the
released code pairs with ε at z_t); `'current'` takes J at z_t. The noise scale is indexed by t in forward time (the
released code indexes it in reverse time: not reproduced). Each product is one Jacobian-vector product inside
the sampling `lax.scan`, never a Jacobian (`jvp_by_vjp`: the decoder's fast convolutions define reverse mode
only). `weighting='eps'` uses ε̂_t instead of the score (the authors' code).

A category's map (§4.4, Fig. 5a) is the mean of φ over `variations` sampling runs (10 in the paper) conditioned on
ONE exemplar of the category, each run a different variation x; it is compared with the human click map of the
category (participants and drawings averaged) by Spearman's rank correlation.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from ldm_jax import sampling
from ldm_jax.ldm import LDM
from ldm_jax.models.rae import RAE

WEIGHTINGS = ("score", "eps")
JACOBIAN_AT = ("next", "current")


def jvp_by_vjp(f, x: jax.Array, v: jax.Array) -> jax.Array:
  """J_f(x)·v as the transpose of the (linear) pullback u ↦ J_fᵀ u: works for functions that define only reverse
  mode (`jax.custom_vjp`, as the 'matmul' and 'vjp' convolutions do), where `jax.jvp` raises; same value as jvp."""
  y, pullback = jax.vjp(f, x)
  return jax.linear_transpose(pullback, y)((v,))[0]


def importance_sample(eps_fn, decode_fn, params, schedule, cond: jax.Array, key: jax.Array, guidance,
                      weighting: str = "score", jacobian_at: str = "next"):
  """The ancestral sampler of `sampling.ddpm_sample` (same noise, same x_0) carrying φ.

  Args:
    decode_fn: the sampler's space → images [B, ...] (differentiable; e.g. de-standardise + RAE decoder).
  Returns (x_0 [B, d], φ [B, ...image shape]).
  """
  if weighting not in WEIGHTINGS:
    raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
  if jacobian_at not in JACOBIAN_AT:
    raise ValueError(f"jacobian_at must be one of {JACOBIAN_AT}, got {jacobian_at!r}")
  x_init = sampling.initial_noise(key, cond.shape, cond.dtype)
  image = jax.eval_shape(decode_fn, x_init)

  def body(carry, t):
    x, phi = carry
    eps = sampling.guided_eps(eps_fn, params, x, cond, jnp.full((x.shape[0],), t, jnp.int32), guidance)
    direction = -eps / jnp.sqrt(1.0 - schedule.alpha_bars[t]) if weighting == "score" else eps
    x_next = sampling.ddpm_update(schedule, x, eps, t, key)
    change = jvp_by_vjp(decode_fn, x_next if jacobian_at == "next" else x, direction)
    return (x_next, phi + jnp.abs(change)), None

  (x0, phi), _ = jax.lax.scan(body, (x_init, jnp.zeros(image.shape, image.dtype)),
                              jnp.arange(schedule.timesteps - 1, -1, -1))
  return x0, phi


def ldm_decode_fn(model: LDM):
  """Standardised latents [B, d] → decoded images [B, H, W] (the RAE decoder in eval mode, differentiable)."""
  if model.rae is None:
    raise ValueError("feature-importance maps need a latent LDM (the pixel baseline has no decoder)")
  # No codebook snap: it is piecewise constant (a zero Jacobian), which is why VQ models have no maps (§5.2).
  return lambda x: model.rae.apply(model.rae_variables, x * model.latent_std + model.latent_mean, False,
                                   method=RAE.decode)[..., 0]


@functools.partial(jax.jit, static_argnames=("weighting", "jacobian_at", "variations"))
def ldm_importance_maps(model: LDM, exemplars_u8: jax.Array, key: jax.Array, guidance, weighting: str = "score",
                        jacobian_at: str = "next", variations: int = 1):
  """Per exemplar image, φ averaged over `variations` sampling runs conditioned on it: [N, H, W], with the first
  run's sample [N, H, W]; all runs in one batch. The exemplar is encoded once (one z_y, Eq. 9)."""
  from ldm_jax import ldm as ldm_lib
  cond = ldm_lib.encode(model, exemplars_u8, jax.random.fold_in(key, 1))
  n = cond.shape[0]
  decode = ldm_decode_fn(model)
  x0, phi = importance_sample(model.eps_fn, decode, model.denoiser_params, model.schedule,
                              jnp.repeat(cond, variations, axis=0), key, guidance, weighting, jacobian_at)
  phi = phi.reshape(n, variations, *phi.shape[1:]).mean(1)
  return phi, decode(x0.reshape(n, variations, -1)[:, 0])


# --- comparison with humans ------------------------------------------------------------------------------------

def _average_ranks(x: jax.Array) -> jax.Array:
  """Ranks 1..P of a flat vector, ties given their average rank (as scipy.stats.rankdata)."""
  s = jnp.sort(x)
  lo = jnp.searchsorted(s, x, side="left")
  hi = jnp.searchsorted(s, x, side="right")
  return (lo + hi + 1) / 2.0


@jax.jit
def spearman(a: jax.Array, b: jax.Array) -> jax.Array:
  """Spearman's rank correlation of map pairs [..., H, W] over their pixels, batched: [...]."""
  a = a.reshape(*a.shape[:-2], -1).astype(jnp.float32)
  b = b.reshape(*b.shape[:-2], -1).astype(jnp.float32)
  rank = jnp.vectorize(_average_ranks, signature="(p)->(p)")
  ra, rb = rank(a), rank(b)
  ra = ra - ra.mean(-1, keepdims=True)
  rb = rb - rb.mean(-1, keepdims=True)
  return jnp.sum(ra * rb, -1) / jnp.sqrt(jnp.sum(ra * ra, -1) * jnp.sum(rb * rb, -1))


def category_means(maps: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(categories [K], mean map per category [K, H, W])."""
  cats = np.unique(labels)
  return cats, np.stack([maps[labels == c].mean(0) for c in cats])


def wilcoxon_table(correlations: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
  """One-sided Wilcoxon signed-rank p-values: table[a][b] = p(a's per-category correlations > b's)."""
  from scipy import stats
  table = {a: {} for a in correlations}
  for a, b in itertools.permutations(correlations, 2):
    diff = np.asarray(correlations[a]) - np.asarray(correlations[b])
    table[a][b] = 1.0 if np.all(diff == 0) else float(stats.wilcoxon(diff, alternative="greater").pvalue)
  return table
