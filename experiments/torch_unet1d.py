"""A straightforward PyTorch implementation of the latent DDPM's 1D UNet and its training step: the baseline a
user would otherwise write (torch is the optional `bench` extra; nothing in the library imports it).

Same network as `ldm_jax.models.unet1d.UNet1D` (Table 2's layout; `small` = dim 64, multipliers (1, 2)): MLP
ResnetBlocks (Linear → GroupNorm → time scale/shift → SiLU, twice, plus a skip), residual channel attention with
RMSNorm, two skips per level. Same step as `ldm_jax.jobs.ldm` (latent space): t ~ U{0..T−1}, x_t = √ᾱ_t x_0 +
√(1 − ᾱ_t) ε, the exemplar's latent dropped to zero w.p. 0.1, ε-MSE; AdamW (eps 1e-5, weight decay 0.01).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def sinusoidal_embedding(t: torch.Tensor, dim: int, theta: float = 10000.0) -> torch.Tensor:
  half = dim // 2
  freqs = torch.exp(-math.log(theta) * torch.arange(half) / max(half - 1, 1))
  arg = t.float()[:, None] * freqs[None, :]
  return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


class RMSNorm(nn.Module):
  def __init__(self, dim: int):
    super().__init__()
    self.g = nn.Parameter(torch.ones(dim))

  def forward(self, x):
    return F.normalize(x, dim=-1) * self.g * math.sqrt(x.shape[-1])


class ChannelAttention(nn.Module):
  def __init__(self, dim: int, heads: int = 4, dim_head: int = 32):
    super().__init__()
    self.heads, self.dim_head = heads, dim_head
    self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
    self.to_out = nn.Linear(heads * dim_head, dim)
    self.out_norm = RMSNorm(dim)

  def forward(self, x):
    b = x.shape[0]
    q, k, v = (a.reshape(b, self.heads, self.dim_head) for a in self.to_qkv(x).chunk(3, dim=-1))
    scores = q[..., :, None] * k[..., None, :] * self.dim_head ** -0.5
    out = torch.einsum("bhij,bhj->bhi", scores.softmax(dim=-1), v).reshape(b, -1)
    return self.out_norm(self.to_out(out))


class ResidualAttention(nn.Module):
  def __init__(self, dim: int):
    super().__init__()
    self.norm, self.attn = RMSNorm(dim), ChannelAttention(dim)

  def forward(self, x):
    return x + self.attn(self.norm(x))


class Block(nn.Module):
  def __init__(self, cin: int, cout: int, groups: int = 8):
    super().__init__()
    self.proj, self.norm = nn.Linear(cin, cout), nn.GroupNorm(groups, cout, eps=1e-5)

  def forward(self, x, scale_shift=None):
    x = self.norm(self.proj(x))
    if scale_shift is not None:
      scale, shift = scale_shift
      x = x * (scale + 1) + shift
    return F.silu(x)


class ResnetBlock(nn.Module):
  def __init__(self, cin: int, cout: int, time_dim: int):
    super().__init__()
    self.time = nn.Linear(time_dim, 2 * cout)
    self.block1, self.block2 = Block(cin, cout), Block(cout, cout)
    self.skip = nn.Linear(cin, cout) if cin != cout else nn.Identity()

  def forward(self, x, t_emb):
    h = self.block1(x, self.time(F.silu(t_emb)).chunk(2, dim=-1))
    return self.block2(h) + self.skip(x)


class TorchUNet1D(nn.Module):
  def __init__(self, latent_dim: int, dim: int = 64, dim_mults=(1, 2), time_dim: int = 128):
    super().__init__()
    widths = [dim] + [dim // m for m in dim_mults]
    levels = list(zip(widths[:-1], widths[1:]))
    self.time_dim = time_dim
    self.time_in, self.time_out = nn.Linear(time_dim, time_dim), nn.Linear(time_dim, time_dim)
    self.init = nn.Linear(2 * latent_dim, dim)
    self.downs = nn.ModuleList(nn.ModuleList([ResnetBlock(w_in, w_in, time_dim), ResnetBlock(w_in, w_in, time_dim),
                                              ResidualAttention(w_in), nn.Linear(w_in, w_out)])
                               for w_in, w_out in levels)
    mid = widths[-1]
    self.mid1, self.mid_attn, self.mid2 = (ResnetBlock(mid, mid, time_dim), ResidualAttention(mid),
                                           ResnetBlock(mid, mid, time_dim))
    self.ups = nn.ModuleList(nn.ModuleList([ResnetBlock(w_out + w_in, w_out, time_dim),
                                            ResnetBlock(w_out + w_in, w_out, time_dim), ResidualAttention(w_out),
                                            nn.Linear(w_out, w_in)])
                             for w_in, w_out in reversed(levels))
    self.final_block = ResnetBlock(2 * dim, dim, time_dim)
    self.final = nn.Linear(dim, latent_dim)

  def forward(self, z_t, cond, t):
    t_emb = self.time_out(F.gelu(self.time_in(sinusoidal_embedding(t, self.time_dim))))
    x = self.init(torch.cat([cond, z_t], dim=-1))
    r, skips = x, []
    for block1, block2, attn, out in self.downs:
      x = block1(x, t_emb)
      skips.append(x)
      x = attn(block2(x, t_emb))
      skips.append(x)
      x = out(x)
    x = self.mid2(self.mid_attn(self.mid1(x, t_emb)), t_emb)
    for block1, block2, attn, out in self.ups:
      x = block1(torch.cat([x, skips.pop()], dim=-1), t_emb)
      x = block2(torch.cat([x, skips.pop()], dim=-1), t_emb)
      x = out(attn(x))
    return self.final(self.final_block(torch.cat([x, r], dim=-1), t_emb))


def linear_alpha_bars(timesteps: int = 1000, beta_start: float = 1.5e-3, beta_end: float = 1.95e-2):
  betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
  return torch.cumprod(1.0 - betas, dim=0).float()


def make_step(model: TorchUNet1D, lr: float = 1e-4, cond_drop_prob: float = 0.1):
  opt = torch.optim.AdamW(model.parameters(), lr=lr, eps=1e-5, weight_decay=0.01)
  alpha_bars = linear_alpha_bars()

  def step(x0, cond):
    b = x0.shape[0]
    t = torch.randint(0, len(alpha_bars), (b,))
    noise = torch.randn_like(x0)
    ab = alpha_bars[t][:, None]
    x_t = ab.sqrt() * x0 + (1.0 - ab).sqrt() * noise
    keep = (torch.rand(b) >= cond_drop_prob).float()[:, None]
    loss = F.mse_loss(model(x_t, cond * keep, t), noise)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss

  return step
