"""The 1D UNet of the latent diffusion model (paper A.4.3, Table 2): MLP res-blocks over a latent vector.

ε̂ = UNet(z_t, z_y, t), input = concat(z_y, z_t). Widths go dim → dim/m for each multiplier m (down), a bottleneck,
and back up with two skip connections per level; every level has two time-conditioned ResnetBlocks and a
residual attention over the feature channels (each channel of a 32-channel head is one token). Two named configs:

* `paper`: dim 2048, multipliers (2, 4, 8) → widths 2048/1024/512/256, ~77M parameters at d = 128 (Table 2;
  the table itself is the d = 256 count, reproduced exactly in tests);
* `small`: dim 64, multipliers (1, 2), ~0.5M parameters, the released code's default, for CPU work.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

CONFIGS = {
    "paper": {"dim": 2048, "dim_mults": (2, 4, 8)},
    "small": {"dim": 64, "dim_mults": (1, 2)},
}


def sinusoidal_embedding(t: jax.Array, dim: int, theta: float = 10000.0) -> jax.Array:
  """[B] → [B, dim]: sin of the first half of the frequencies, cos of the second (DDPM's convention)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(theta) * jnp.arange(half) / max(half - 1, 1))
  arg = t.astype(jnp.float32)[:, None] * freqs[None, :]
  return jnp.concatenate([jnp.sin(arg), jnp.cos(arg)], axis=-1)


class RMSNorm(nn.Module):
  """x / ‖x‖ · g · √C over the feature axis."""

  @nn.compact
  def __call__(self, x):
    g = self.param("g", nn.initializers.ones, (x.shape[-1],))
    norm = jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    return x / norm * g * math.sqrt(x.shape[-1])


class ChannelAttention(nn.Module):
  """Softmax attention among the feature channels of one vector: each head's `dim_head` channels are its tokens
  (with scalar queries, keys and values), then Linear → RMSNorm back to the input width."""
  heads: int = 4
  dim_head: int = 32

  @nn.compact
  def __call__(self, x):
    b, c = x.shape
    hidden = self.heads * self.dim_head
    q, k, v = jnp.split(nn.Dense(3 * hidden, use_bias=False, name="to_qkv")(x), 3, axis=-1)
    q, k, v = (a.reshape(b, self.heads, self.dim_head) for a in (q, k, v))
    scores = q[..., :, None] * k[..., None, :] * self.dim_head ** -0.5     # [B, heads, i, j]
    out = jnp.einsum("bhij,bhj->bhi", jax.nn.softmax(scores, axis=-1), v).reshape(b, hidden)
    return RMSNorm(name="out_norm")(nn.Dense(c, name="to_out")(out))


class Block(nn.Module):
  """Linear → GroupNorm → (scale, shift) → SiLU."""
  features: int
  groups: int = 8

  @nn.compact
  def __call__(self, x, scale_shift=None):
    x = nn.GroupNorm(num_groups=self.groups, epsilon=1e-5)(nn.Dense(self.features)(x))
    if scale_shift is not None:
      scale, shift = scale_shift
      x = x * (scale + 1) + shift
    return nn.silu(x)


class ResnetBlock(nn.Module):
  features: int
  groups: int = 8

  @nn.compact
  def __call__(self, x, t_emb):
    scale_shift = jnp.split(nn.Dense(2 * self.features, name="time")(nn.silu(t_emb)), 2, axis=-1)
    h = Block(self.features, self.groups, name="block1")(x, scale_shift)
    h = Block(self.features, self.groups, name="block2")(h)
    skip = x if x.shape[-1] == self.features else nn.Dense(self.features, name="skip")(x)
    return h + skip


class ResidualAttention(nn.Module):
  heads: int = 4
  dim_head: int = 32

  @nn.compact
  def __call__(self, x):
    return x + ChannelAttention(self.heads, self.dim_head, name="attn")(RMSNorm(name="norm")(x))


class UNet1D(nn.Module):
  """ε-prediction network over latent vectors: `(z_t [B, d], cond [B, d], t [B]) → ε̂ [B, d]`."""
  latent_dim: int
  dim: int = 64
  dim_mults: Sequence[int] = (1, 2)
  time_dim: int = 128
  groups: int = 8
  attn_heads: int = 4
  attn_dim_head: int = 32

  @nn.compact
  def __call__(self, z_t, cond, t):
    widths = [self.dim] + [self.dim // m for m in self.dim_mults]
    levels = list(zip(widths[:-1], widths[1:]))
    t_emb = sinusoidal_embedding(t, self.time_dim).astype(z_t.dtype)  # keeps a bf16 forward pass in bf16
    t_emb = nn.Dense(self.time_dim, name="time_in")(t_emb)
    t_emb = nn.Dense(self.time_dim, name="time_out")(nn.gelu(t_emb, approximate=False))

    block = lambda f, name: ResnetBlock(f, self.groups, name=name)
    attn = lambda name: ResidualAttention(self.attn_heads, self.attn_dim_head, name=name)
    x = nn.Dense(self.dim, name="init")(jnp.concatenate([cond, z_t], axis=-1))
    r, skips = x, []
    for i, (w_in, w_out) in enumerate(levels):
      x = block(w_in, f"down{i}_block1")(x, t_emb)
      skips.append(x)
      x = attn(f"down{i}_attn")(block(w_in, f"down{i}_block2")(x, t_emb))
      skips.append(x)
      x = nn.Dense(w_out, name=f"down{i}_out")(x)
    x = block(widths[-1], "mid_block1")(x, t_emb)
    x = block(widths[-1], "mid_block2")(attn("mid_attn")(x), t_emb)
    for i, (w_in, w_out) in enumerate(reversed(levels)):
      x = block(w_out, f"up{i}_block1")(jnp.concatenate([x, skips.pop()], -1), t_emb)
      x = block(w_out, f"up{i}_block2")(jnp.concatenate([x, skips.pop()], -1), t_emb)
      x = nn.Dense(w_in, name=f"up{i}_out")(attn(f"up{i}_attn")(x))
    x = block(self.dim, "final_block")(jnp.concatenate([x, r], -1), t_emb)
    return nn.Dense(self.latent_dim, name="final")(x)


def build_unet(config: str, latent_dim: int, **overrides) -> UNet1D:
  if config not in CONFIGS:
    raise ValueError(f"unknown UNet config {config!r}; choose from {sorted(CONFIGS)}")
  return UNet1D(latent_dim=latent_dim, **{**CONFIGS[config], **overrides})


def param_count(params) -> int:
  return sum(x.size for x in jax.tree.leaves(params))
