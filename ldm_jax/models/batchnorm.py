"""BatchNorm over NHWC (or [N, C]) batches with the closed-form backward pass: a drop-in for `flax.linen.BatchNorm`.

Same parameters ('scale', 'bias'), batch statistics ('mean', 'var'), momentum and epsilon semantics, the same
float32 statistics (biased variance, E[x²] − E[x]²) and output dtype, so checkpoints and configs do not change.
What differs is the training-mode gradient: autodiff of flax's normalisation differentiates through the mean and
the variance separately (several reductions and broadcasts per layer); here it is the textbook
dx = γ·r·(dy − (Σdy + x̂·Σ(dy·x̂)) / N) with two reductions. On the CI CPU the RAE's scanned epoch ran 3–5 % faster
with it, but the Conv4 critic's 1.5× slower: there XLA:CPU fuses this dx into the transposing copy that feeds the
first convolution's weight-gradient GEMM and reads every operand with a channel-sized stride. So the RAE uses it
and the critics keep flax's (experiments/BENCHMARKS.md, "BatchNorm's closed-form backward"); measure before using
it elsewhere.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def _statistics(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-channel mean and biased variance of x, in float32 (as flax's `use_fast_variance`)."""
  x2 = x.reshape(-1, x.shape[-1]).astype(jnp.promote_types(jnp.float32, x.dtype))
  mean = jnp.mean(x2, axis=0)
  return mean, jnp.maximum(jnp.mean(jnp.square(x2), axis=0) - jnp.square(mean), 0.0)


def _normalize_forward(x, scale, bias, epsilon):
  mean, var = _statistics(x)
  r = jax.lax.rsqrt(var + epsilon)
  y = (x.astype(mean.dtype) - mean) * (r * scale.astype(mean.dtype)) + bias.astype(mean.dtype)
  return (y.astype(jnp.result_type(x, scale, bias)), mean, var), (x, mean, r, scale, bias)


def _normalize_backward(epsilon, res, cotangents):
  del epsilon
  dy = cotangents[0]        # the statistics only feed the running averages (stop_gradient): their cotangents are 0
  x, mean, r, scale, bias = res
  f32 = mean.dtype
  dy2 = dy.reshape(-1, dy.shape[-1]).astype(f32)
  xhat = (x.reshape(dy2.shape).astype(f32) - mean) * r
  dbias = jnp.sum(dy2, axis=0)
  dscale = jnp.sum(dy2 * xhat, axis=0)
  dx = (scale.astype(f32) * r) * (dy2 - (dbias + xhat * dscale) / dy2.shape[0])
  return dx.reshape(x.shape).astype(x.dtype), dscale.astype(scale.dtype), dbias.astype(bias.dtype)


_normalize = jax.custom_vjp(lambda x, scale, bias, epsilon: _normalize_forward(x, scale, bias, epsilon)[0],
                            nondiff_argnums=(3,))
_normalize.defvjp(_normalize_forward, _normalize_backward)


def batch_normalize(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float = 1e-5):
  """Training-mode BatchNorm: (γ·(x − μ)/√(σ² + ε) + β, μ, σ²) over every axis but the last."""
  return _normalize(x, scale, bias, epsilon)


class BatchNorm(nn.Module):
  """`flax.linen.BatchNorm(use_running_average, momentum, epsilon, use_scale, use_bias)` over the last axis."""
  use_running_average: bool
  momentum: float = 0.99
  epsilon: float = 1e-5
  use_scale: bool = True
  use_bias: bool = True

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
    scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32) if self.use_scale else jnp.ones((c,))
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32) if self.use_bias else jnp.zeros((c,))
    if self.use_running_average:
      r = jax.lax.rsqrt(ra_var.value + self.epsilon)
      y = (x.astype(jnp.float32) - ra_mean.value) * (r * scale.astype(jnp.float32)) + bias.astype(jnp.float32)
      return y.astype(jnp.result_type(x, scale, bias))
    y, mean, var = batch_normalize(x, scale, bias, self.epsilon)
    if not self.is_initializing():
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * jax.lax.stop_gradient(mean)
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * jax.lax.stop_gradient(var)
    return y
