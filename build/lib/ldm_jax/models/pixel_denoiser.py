"""The pixel-space baseline's denoiser (the cross marker of Fig. 3): ε̂ = D(UNet1D(E(x_t), E(y), t)).

As in the authors' code, a conv encoder shaped like the RAE's (here with GroupNorm instead of BatchNorm, since a
denoiser must not depend on batch statistics) maps the noisy image and the exemplar to vectors, the 1D UNet
denoises there, and a conv decoder shaped like the RAE's returns a feature map. Unlike the authors' wrapper, a
full-resolution skip (x_t and the exemplar concatenated to that map, then two 3×3 convs) gives the output a
per-pixel path: through the 256-d bottleneck alone ε̂ cannot represent 2304-d noise, and the loss stays near 1
(measured). Trained end to end on 48×48 pixels, with the same loss and sampler kernel as the latent models.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from ldm_jax.models.layers import Conv, StridedConv, UpConv
from ldm_jax.models.unet1d import build_unet


class PixelDenoiser(nn.Module):
  features: int = 256
  unet: str = "small"
  channels: Sequence[int] = (16, 32, 64, 128)
  paddings: Sequence[int] = (1, 1, 2, 1)
  groups: int = 8
  conv_impl: str = "s2d"

  @nn.compact
  def __call__(self, x_t, cond, t):
    """x_t, cond [B, 48, 48, 1] → ε̂ [B, 48, 48, 1]."""
    b = x_t.shape[0]
    h = jnp.concatenate([x_t, cond])                      # one pass through the shared encoder
    for c, p in zip(self.channels, self.paddings):
      h = nn.silu(nn.GroupNorm(self.groups)(StridedConv(c, p, self.conv_impl)(h)))
    h = nn.Dense(self.features, name="to_vector")(h.reshape(2 * b, -1))
    v = build_unet(self.unet, self.features, name="unet")(h[:b], h[b:], t)
    c0 = self.channels[-1]
    y = nn.Dense(6 * 6 * c0, name="from_vector")(v).reshape(b, 6, 6, c0)
    y = nn.silu(nn.GroupNorm(self.groups)(y))
    for c in reversed(self.channels[:-1]):
      y = nn.silu(nn.GroupNorm(self.groups)(UpConv(c, self.conv_impl)(y)))
    y = jnp.pad(y, ((0, 0), (0, 1), (0, 1), (0, 0)))
    y = Conv(self.channels[0], 4, padding=1, impl=self.conv_impl, name="to_pixels")(y)
    y = jnp.concatenate([y, x_t, cond], axis=-1)           # the full-resolution skip
    y = nn.silu(nn.GroupNorm(self.groups)(Conv(self.channels[0], 3, padding=1, impl=self.conv_impl, name="skip")(y)))
    return Conv(1, 3, padding=1, impl=self.conv_impl, name="out")(y)
