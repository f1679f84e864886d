"""A straightforward PyTorch implementation of the Table 1 RAE and its prototype-regularised training step: the
baseline a user would otherwise write (torch is the optional `bench` extra; nothing in the library imports it).

Same network, loss and optimizer as `ldm_jax.jobs.rae`: 4 × [Conv 4×4 s2 (no bias) → BN → ReLU] (paddings
1, 1, 2, 1) → Linear to d; Linear (no bias) → 6×6×128 → BN → ReLU → 3 × [ConvT 4×4 s2 p1 → BN → ReLU] → ZeroPad
(0, 1, 0, 1) → Conv 4×4 p1 → sigmoid; one encoder pass over the batch and its exemplars; the prototype projector
Linear → BN → ReLU → Linear; ℓ2 reconstruction summed over pixels + β · prototypical cross-entropy; Adam with
coupled weight decay 1e-5, lr 1e-4.
"""

from __future__ import annotations

import torch
from torch import nn


class TorchRAE(nn.Module):
  def __init__(self, latent_dim: int = 64):
    super().__init__()
    layers, cin = [], 1
    for c, p in zip((16, 32, 64, 128), (1, 1, 2, 1)):
      layers += [nn.Conv2d(cin, c, 4, 2, p, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
      cin = c
    self.encoder = nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * 3 * 3, latent_dim))
    self.project = nn.Linear(latent_dim, 6 * 6 * 128, bias=False)
    up = [nn.BatchNorm2d(128), nn.ReLU()]
    for cin, c in ((128, 64), (64, 32), (32, 16)):
      up += [nn.ConvTranspose2d(cin, c, 4, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
    self.decoder = nn.Sequential(*up, nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(16, 1, 4, 1, 1), nn.Sigmoid())
    self.projector = nn.Sequential(nn.Linear(latent_dim, latent_dim, bias=False), nn.BatchNorm1d(latent_dim),
                                   nn.ReLU(), nn.Linear(latent_dim, latent_dim, bias=False))

  def decode(self, z):
    return self.decoder(self.project(z).view(-1, 128, 6, 6))


def make_step(model: TorchRAE, beta: float = 1.0):
  opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-5)

  def step(x, exemplar):
    b = x.shape[0]
    z = model.encoder(torch.cat([x, exemplar]))
    x_hat = model.decode(z[:b])
    recon = ((x - x_hat) ** 2).flatten(1).sum(1).mean()
    p = model.projector(z)
    logits = -torch.cdist(p[:b], p[b:]) ** 2
    loss = recon + beta * nn.functional.cross_entropy(logits, torch.arange(b))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss

  return step
