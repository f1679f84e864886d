"""SketchEmbedNet (Wang et al., ICML 2021): a CNN encoder → Gaussian z → HyperLSTM mixture-density stroke decoder.

Every piece is a pure function of (params, inputs): `SketchEmbedNet.apply` encodes and decodes with teacher forcing
(`lax.scan` over time through `nn.scan`), and `sample` draws sketches autoregressively as one `lax.scan` from the
same parameters. The HyperLSTM is magenta's (Ha et al. 2017) — per-gate layer norm, a 512-unit layer-normed hyper
LSTM whose 64-d embeddings scale (and, for the recurrent terms, shift) the main LSTM's gate pre-activations — not
the released TF cell, which layer-normed all gates at once and mis-wired the hyper cell's output.
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ldm_jax.models.layers import max_pool2x2

ENCODERS = ("conv4", "resnet12")


class Conv4Encoder(nn.Module):
  widths: Sequence[int] = (64, 64, 64, 64)

  @nn.compact
  def __call__(self, x, train: bool):
    for w in self.widths:
      x = nn.Conv(w, (3, 3), padding=1)(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
      x = max_pool2x2(nn.relu(x), padding="SAME")
    return x.mean((1, 2))


class ResNet12Encoder(nn.Module):
  """Four residual blocks of three 3×3 convs (leaky ReLU 0.1), a 1×1 projection shortcut, max-pool 2."""
  widths: Sequence[int] = (64, 128, 256, 512)

  @nn.compact
  def __call__(self, x, train: bool):
    bn = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9)
    for w in self.widths:
      h = x
      for i in range(3):
        h = bn()(nn.Conv(w, (3, 3), padding=1, use_bias=False)(h))
        h = nn.leaky_relu(h, 0.1) if i < 2 else h
      x = nn.leaky_relu(h + bn()(nn.Conv(w, (1, 1), use_bias=False)(x)), 0.1)
      x = max_pool2x2(x, padding="SAME")
    return x.mean((1, 2))


def _layer_norm(x, gamma, beta, eps: float = 1e-3):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + eps) * gamma + beta


class GateLayerNorm(nn.Module):
  """magenta's `layer_norm_all`: each of the 4 gates normalised on its own, one gain/bias per unit."""
  units: int

  @nn.compact
  def __call__(self, gates):
    gamma = self.param("gamma", nn.initializers.ones, (4 * self.units,))
    beta = self.param("beta", nn.initializers.zeros, (4 * self.units,))
    g = gates.reshape(*gates.shape[:-1], 4, self.units)
    return _layer_norm(g, gamma.reshape(4, -1), beta.reshape(4, -1)).reshape(gates.shape)


class LayerNorm(nn.Module):
  @nn.compact
  def __call__(self, x):
    gamma = self.param("gamma", nn.initializers.ones, (x.shape[-1],))
    beta = self.param("beta", nn.initializers.zeros, (x.shape[-1],))
    return _layer_norm(x, gamma, beta)


def _lstm_update(c, gates, units: int, forget_bias: float, ln_c: nn.Module):
  i, j, f, o = jnp.split(gates, 4, -1)
  new_c = c * jax.nn.sigmoid(f + forget_bias) + jax.nn.sigmoid(i) * jnp.tanh(j)
  return new_c, jnp.tanh(ln_c(new_c)) * jax.nn.sigmoid(o)


class LayerNormLSTMCell(nn.Module):
  """The hyper network: magenta's `LSTMCell(use_layer_norm=True)`."""
  units: int
  forget_bias: float = 1.0

  @nn.compact
  def __call__(self, carry, x):
    c, h = carry
    w = self.param("w", nn.initializers.orthogonal(), (x.shape[-1] + self.units, 4 * self.units))
    b = self.param("bias", nn.initializers.zeros, (4 * self.units,))
    gates = GateLayerNorm(self.units, name="ln_all")(jnp.concatenate([x, h], -1) @ w + b)
    return _lstm_update(c, gates, self.units, self.forget_bias, LayerNorm(name="ln_c"))


class HyperNorm(nn.Module):
  """Scales (and optionally shifts) one gate's pre-activation with weights generated from the hyper output."""
  units: int
  embedding: int
  use_bias: bool

  @nn.compact
  def __call__(self, layer, hyper_out):
    zw = nn.Dense(self.embedding, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.ones,
                  name="zw")(hyper_out)
    alpha = nn.Dense(self.units, use_bias=False, name="alpha",
                     kernel_init=nn.initializers.constant(0.1 / self.embedding))(zw)
    out = alpha * layer
    if self.use_bias:
      zb = nn.Dense(self.embedding, use_bias=False, kernel_init=nn.initializers.normal(0.01), name="zb")(hyper_out)
      out = out + nn.Dense(self.units, use_bias=False, kernel_init=nn.initializers.zeros, name="beta")(zb)
    return out


class HyperLSTMCell(nn.Module):
  """Ha et al. (2017) as in magenta: carry = (c, h, hyper_c, hyper_h); input x → (carry, h)."""
  units: int = 1024
  hyper_units: int = 512
  hyper_embedding: int = 64
  forget_bias: float = 1.0

  @nn.compact
  def __call__(self, carry, x):
    c, h, hc, hh = carry
    (hc, hh) = LayerNormLSTMCell(self.hyper_units, name="hyper")((hc, hh), jnp.concatenate([x, h], -1))
    w_xh = self.param("w_xh", nn.initializers.orthogonal(), (x.shape[-1], 4 * self.units))
    w_hh = self.param("w_hh", nn.initializers.orthogonal(), (self.units, 4 * self.units))
    bias = self.param("bias", nn.initializers.zeros, (4 * self.units,))
    xh = jnp.split(x @ w_xh, 4, -1)
    hh_ = jnp.split(h @ w_hh, 4, -1)
    bs = jnp.split(bias, 4)
    gates = [HyperNorm(self.units, self.hyper_embedding, False, name=f"hyper_{g}x")(a, hh)
             + HyperNorm(self.units, self.hyper_embedding, True, name=f"hyper_{g}h")(r, hh) + b_
             for g, a, r, b_ in zip("ijfo", xh, hh_, bs)]
    gates = GateLayerNorm(self.units, name="ln_all")(jnp.concatenate(gates, -1))
    c, h = _lstm_update(c, gates, self.units, self.forget_bias, LayerNorm(name="ln_c"))
    return (c, h, hc, hh), h

  def carry_sizes(self) -> tuple[int, int, int, int]:
    return (self.units, self.units, self.hyper_units, self.hyper_units)


def mixture_params(out: jax.Array, mixtures: int) -> dict[str, jax.Array]:
  """The decoder's 3 + 6M outputs → pen logits [.., 3], log π [.., M], μ [.., M, 2], σ [.., M, 2], ρ [.., M]
  (softmax π, exp σ, tanh ρ, as sketch-rnn)."""
  pen, pi, mx, my, sx, sy, corr = jnp.split(out, [3, 3 + mixtures, 3 + 2 * mixtures, 3 + 3 * mixtures,
                                                  3 + 4 * mixtures, 3 + 5 * mixtures], -1)
  return {"pen_logits": pen, "log_pi": jax.nn.log_softmax(pi, -1), "mu": jnp.stack([mx, my], -1),
          "sigma": jnp.exp(jnp.stack([sx, sy], -1)), "rho": jnp.tanh(corr)}


class SketchEmbedNet(nn.Module):
  encoder: str = "conv4"
  z_dim: int = 256
  units: int = 1024
  hyper_units: int = 512
  hyper_embedding: int = 64
  mixtures: int = 30

  def setup(self):
    if self.encoder not in ENCODERS:
      raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
    self.cnn = Conv4Encoder() if self.encoder == "conv4" else ResNet12Encoder()
    self.to_gaussian = nn.Dense(2 * self.z_dim)
    self.to_carry = nn.Dense(sum(self.cell().carry_sizes()), kernel_init=nn.initializers.normal(0.001))
    self.decoder = nn.scan(HyperLSTMCell, variable_broadcast="params", split_rngs={"params": False},
                           in_axes=1, out_axes=1)(self.units, self.hyper_units, self.hyper_embedding)
    self.head = nn.Dense(3 + 6 * self.mixtures)

  def cell(self) -> HyperLSTMCell:
    return HyperLSTMCell(self.units, self.hyper_units, self.hyper_embedding, parent=None)   # unbound: a function

  def encode(self, images, train: bool = False):
    """uint8 or float images [B, H, W] (strokes bright) → (μ, log σ²) [B, z_dim]."""
    x = images.astype(jnp.float32)[..., None]
    x = x / 255.0 if images.dtype == jnp.uint8 else x
    mu, logvar = jnp.split(self.to_gaussian(self.cnn(x, train)), 2, -1)
    return mu, logvar

  def initial_carry(self, z):
    """tanh(Dense(z)) split into (c, h, hyper_c, hyper_h), as sketch-rnn's conditional decoder."""
    sizes = self.cell().carry_sizes()
    return tuple(jnp.split(jnp.tanh(self.to_carry(z)), [int(v) for v in np.cumsum(sizes[:-1])], -1))

  def decode(self, z, inputs):
    """Teacher forcing: z [B, D], stroke-5 inputs [B, T, 5] (start token first) → outputs [B, T, 3 + 6M]."""
    x = jnp.concatenate([inputs, jnp.broadcast_to(z[:, None], (*inputs.shape[:2], z.shape[-1]))], -1)
    _, h = self.decoder(self.initial_carry(z), x)
    return self.head(h)

  def step(self, z, carry, y_prev):
    """One autoregressive step (used by `sample`): → (carry, outputs [B, 3 + 6M])."""
    carry, h = self.cell().apply({"params": self.decoder.variables["params"]}, carry,
                                 jnp.concatenate([y_prev, z], -1))
    return carry, self.head(h)

  def __call__(self, images, strokes, key=None, train: bool = False):
    """→ (outputs [B, T, 3 + 6M] predicting strokes[:, 1:], μ, log σ²); z is sampled when a key is given."""
    mu, logvar = self.encode(images, train)
    z = mu if key is None else mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape)
    return self.decode(z, strokes[:, :-1]), mu, logvar


def sample_step_offsets(params: dict[str, jax.Array], key: jax.Array, temperature: float) -> jax.Array:
  """Draws Δ [B, 2] from the mixture: component from softmax(log π / τ), Gaussian with σ·√τ (sketch-rnn);
  τ = 0 is greedy (the likeliest component's mean)."""
  k_pi, k_eps = jax.random.split(key)
  if temperature == 0:
    comp = jnp.argmax(params["log_pi"], -1)
  else:
    comp = jax.random.categorical(k_pi, params["log_pi"] / temperature)
  pick = lambda v: jnp.take_along_axis(v, comp.reshape(comp.shape + (1,) * (v.ndim - comp.ndim)), comp.ndim)
  mu, sigma, rho = pick(params["mu"])[:, 0], pick(params["sigma"])[:, 0], pick(params["rho"])[:, 0]
  eps = jax.random.normal(k_eps, mu.shape) * jnp.sqrt(temperature)
  return bivariate_transform(mu, sigma, rho, eps)


def bivariate_transform(mu, sigma, rho, eps):
  """μ + L ε with L = [[σx, 0], [ρσy, σy√(1−ρ²)]] (Eq. 5)."""
  dx = mu[..., 0] + sigma[..., 0] * eps[..., 0]
  dy = mu[..., 1] + sigma[..., 1] * (rho * eps[..., 0] + jnp.sqrt(1 - rho ** 2) * eps[..., 1])
  return jnp.stack([dx, dy], -1)


@functools.partial(jax.jit, static_argnames=("model", "steps", "temperature"))
def sample(model: SketchEmbedNet, variables, z: jax.Array, key: jax.Array, steps: int = 64,
           temperature: float = 0.1) -> jax.Array:
  """Sketches of codes z [B, D] as stroke-5 [B, steps + 1, 5] (start token first), one `lax.scan`; rows after the
  first sampled end state are end rows."""
  batch = z.shape[0]
  carry = model.apply(variables, z, method=SketchEmbedNet.initial_carry)
  start = jnp.zeros((batch, 5)).at[:, 2].set(1.0)

  def body(state, k):
    carry, y_prev, done = state
    carry, out = model.apply(variables, z, carry, y_prev, method=SketchEmbedNet.step)
    p = mixture_params(out, model.mixtures)
    k_off, k_pen = jax.random.split(k)
    offsets = sample_step_offsets(p, k_off, temperature)
    pen = (jnp.argmax(p["pen_logits"], -1) if temperature == 0
           else jax.random.categorical(k_pen, p["pen_logits"] / temperature))
    done = done | (pen == 2)
    row = jnp.concatenate([offsets, jax.nn.one_hot(pen, 3)], -1)
    row = jnp.where(done[:, None], jnp.array([0.0, 0, 0, 0, 1]), row)
    return (carry, row, done), row

  _, rows = jax.lax.scan(body, (carry, start, jnp.zeros(batch, bool)), jax.random.split(key, steps))
  return jnp.concatenate([start[:, None], rows.transpose(1, 0, 2)], 1)
