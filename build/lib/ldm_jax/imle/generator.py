"""The RS-IMLE generator (paper appendix; the authors' VDVAE-style decoder), scaled to sketches, and a toy MLP.

`ImleGenerator`: z ~ N(0, I) → PixelNorm → `mapping_layers` × (Linear, LeakyReLU 0.2) → w; a learned constant at
the first resolution, then per resolution: nearest upsampling → `blocks` × [AdaIN (instance norm, γ/β = Linear(w),
γ initialised to 1) → VDVAE residual x + c4(gelu(c3(gelu(c2(gelu(c1(gelu(x))))))))] with 1×1/3×3/3×3/1×1 convs,
the last scaled by √(1/#blocks); a 1×1 head to one channel, tanh (images in [−1, 1]). Only stride-1 convolutions
and nearest upsampling: no transposed convolutions (slow on XLA:CPU).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

CONFIGS = {
    # (latent, mapping layers, width, bottleneck, ((resolution, blocks), ...)); 'paper' = the released widths.
    "paper": (1024, 8, 384, 96, ((1, 1), (3, 2), (6, 3), (12, 3), (24, 3), (48, 2))),
    "small": (128, 2, 64, 16, ((1, 1), (3, 1), (6, 1), (12, 1), (24, 1), (48, 1))),
    "small28": (128, 2, 64, 16, ((1, 1), (7, 2), (14, 1), (28, 1))),
}


class AdaIN(nn.Module):
  @nn.compact
  def __call__(self, x, w):
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    x = (x - mean) / jnp.sqrt(var + 1e-2)
    gamma = 1.0 + nn.Dense(x.shape[-1], name="gamma")(w)          # γ = 1 + Linear(w): the bias starts at 0
    beta = nn.Dense(x.shape[-1], name="beta")(w)
    return x * gamma[:, None, None, :] + beta[:, None, None, :]


class ResBlock(nn.Module):
  bottleneck: int
  scale: float

  @nn.compact
  def __call__(self, x, w):
    x = AdaIN(name="adain")(x, w)
    width = x.shape[-1]
    h = nn.Conv(self.bottleneck, (1, 1), name="c1")(nn.gelu(x))
    h = nn.Conv(self.bottleneck, (3, 3), padding=1, name="c2")(nn.gelu(h))
    h = nn.Conv(self.bottleneck, (3, 3), padding=1, name="c3")(nn.gelu(h))
    h = nn.Conv(width, (1, 1), kernel_init=nn.initializers.variance_scaling(self.scale ** 2, "fan_in", "normal"),
                name="c4")(nn.gelu(h))
    return x + h


class ImleGenerator(nn.Module):
  latent_dim: int = 128
  mapping_layers: int = 2
  width: int = 64
  bottleneck: int = 16
  resolutions: Sequence[tuple[int, int]] = ((1, 1), (3, 1), (6, 1), (12, 1), (24, 1), (48, 1))

  @nn.compact
  def __call__(self, z):
    """z [B, latent] → images [B, H, W] in [−1, 1]."""
    w = z * jax.lax.rsqrt(jnp.mean(z * z, axis=-1, keepdims=True) + 1e-8)       # PixelNorm
    for i in range(self.mapping_layers):
      w = nn.leaky_relu(nn.Dense(self.latent_dim, name=f"map{i}")(w), 0.2)
    first = self.resolutions[0][0]
    const = self.param("const", nn.initializers.normal(1.0), (first, first, self.width))
    x = jnp.broadcast_to(const, (z.shape[0], *const.shape))
    total = sum(b for _, b in self.resolutions)
    for r, (res, blocks) in enumerate(self.resolutions):
      if res != x.shape[1]:
        x = jax.image.resize(x, (x.shape[0], res, res, x.shape[-1]), "nearest")
      for b in range(blocks):
        x = ResBlock(self.bottleneck, (1.0 / total) ** 0.5, name=f"res{res}_{b}")(x, w)
    return jnp.tanh(nn.Conv(1, (1, 1), name="head")(x))[..., 0]


def build_generator(name: str) -> ImleGenerator:
  if name not in CONFIGS:
    raise ValueError(f"unknown generator {name!r}; choose from {sorted(CONFIGS)}")
  latent, mapping, width, bottleneck, res = CONFIGS[name]
  return ImleGenerator(latent, mapping, width, bottleneck, res)


class ToyGenerator(nn.Module):
  """The 2D toy of the paper's Fig. 2/5: an MLP from a 2-d latent to 2-d points."""
  hidden: int = 64
  depth: int = 3

  @nn.compact
  def __call__(self, z):
    x = z
    for i in range(self.depth):
      x = nn.relu(nn.Dense(self.hidden, name=f"h{i}")(x))
    return nn.Dense(2, name="out")(x)
