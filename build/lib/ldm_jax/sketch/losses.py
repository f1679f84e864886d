"""SketchEmbedNet's objective: L = L_pen + (1 − α) L_stroke + α L_pixel (Eq. 2–4) with the α curriculum."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ldm_jax import raster
from ldm_jax.sketch.model import bivariate_transform, mixture_params

_NLL_EPS = 1e-6


def curriculum_alpha(step, increment: float = 0.05, every: int = 10_000, alpha_max: float = 0.5):
  """α = 0 at the start, + `increment` every `every` steps, capped at `alpha_max` (App. B)."""
  return jnp.minimum(alpha_max, increment * (step // every))


def pen_loss(params, target):
  """Softmax cross-entropy of the 3 pen states over every step (padding included, as sketch-rnn trains) → [B]."""
  return -jnp.mean(jnp.sum(target[..., 2:] * jax.nn.log_softmax(params["pen_logits"], -1), -1), -1)


def stroke_loss(params, target):
  """Negative log-likelihood of the offsets under the bivariate mixture, on steps before the end (Eq. 3) → [B]."""
  d = target[..., None, :2] - params["mu"]                                             # [B, T, M, 2]
  s1, s2, rho = params["sigma"][..., 0], params["sigma"][..., 1], params["rho"]
  z1, z2 = d[..., 0] / s1, d[..., 1] / s2
  one_m_r2 = 1 - rho ** 2
  log_n = (-(z1 ** 2 + z2 ** 2 - 2 * rho * z1 * z2) / (2 * one_m_r2)
           - jnp.log(2 * jnp.pi * s1 * s2 * jnp.sqrt(one_m_r2)))
  likelihood = jnp.exp(jax.nn.logsumexp(params["log_pi"] + log_n, -1))
  nll = -jnp.log(likelihood + _NLL_EPS) * (1 - target[..., 4])
  return jnp.mean(nll, -1)


def predicted_strokes(params, key):
  """The drawing the pixel loss sees: per step the likeliest component (no gradient to π), a reparameterised
  sample from it (Eq. 5), the pen states as probabilities; the start token prepended → [B, T + 1, 5]."""
  comp = jax.lax.stop_gradient(jnp.argmax(params["log_pi"], -1))
  pick = lambda v: jnp.take_along_axis(v, comp.reshape(comp.shape + (1,) * (v.ndim - comp.ndim)), comp.ndim)
  mu, sigma, rho = pick(params["mu"])[..., 0, :], pick(params["sigma"])[..., 0, :], pick(params["rho"])[..., 0]
  offsets = bivariate_transform(mu, sigma, rho, jax.random.normal(key, mu.shape))
  rows = jnp.concatenate([offsets, jax.nn.softmax(params["pen_logits"], -1)], -1)
  start = jnp.zeros_like(rows[:, :1]).at[..., 2].set(1.0)
  return jnp.concatenate([start, rows], 1)


def sketch_losses(outputs, strokes, key, mixtures: int, image_size: int, alpha):
  """Per-example pen, stroke and pixel losses and the weighted total (means over the batch)."""
  params = mixture_params(outputs, mixtures)
  target = strokes[:, 1:]
  pen, stroke = pen_loss(params, target), stroke_loss(params, target)
  truth = raster.render(strokes, image_size)
  drawn = raster.render(predicted_strokes(params, key), image_size, reference=strokes)
  pixel = raster.pixel_loss(drawn, truth)
  parts = {"pen": pen.mean(), "stroke": stroke.mean(), "pixel": pixel.mean()}
  total = parts["pen"] + (1 - alpha) * parts["stroke"] + alpha * parts["pixel"]
  return total, {**parts, "alpha": alpha, "loss": total}
