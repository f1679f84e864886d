"""A straightforward PyTorch implementation of the Omniglot recognizability critic and its training step: the
baseline a user would otherwise write (torch is the optional `bench` extra; nothing in the library imports it).

Same network, input and loss as `ldm_jax.jobs.critics` (protonet): drawings and their exemplars resized to 50×50
(bilinear), min-max scaled and binarised at 0.3; Conv4 = 4 × [Conv 3×3 (64, bias, p1) → BN → ReLU → MaxPool 2],
flatten, ReLU, Linear 576 → 256 → Linear 256 → 128; a B-way 1-shot prototypical task over the batch's exemplars
(cross-entropy over −squared distances); Adam, lr 1e-3.
"""

from __future__ import annotations

import torch
from torch import nn

from ldm_jax.models.critics import BINARY_THRESHOLD


class TorchConv4(nn.Module):
  def __init__(self, channels=(64, 64, 64, 64), features: int = 256, head_dim: int = 128):
    super().__init__()
    layers, cin = [], 1
    for c in channels:
      layers += [nn.Conv2d(cin, c, 3, 1, 1), nn.BatchNorm2d(c, momentum=0.1, eps=1e-5), nn.ReLU(), nn.MaxPool2d(2)]
      cin = c
    self.embedding = nn.Sequential(*layers, nn.Flatten(), nn.ReLU(), nn.Linear(cin * 3 * 3, features))
    self.metric_layer = nn.Linear(features, head_dim)

  def forward(self, x):
    return self.metric_layer(self.embedding(x))


def critic_input(x: torch.Tensor, size: int = 50) -> torch.Tensor:
  x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
  lo = x.amin(dim=(1, 2, 3), keepdim=True)
  hi = x.amax(dim=(1, 2, 3), keepdim=True)
  return ((x - lo) / (hi - lo).clamp_min(1e-6) > BINARY_THRESHOLD).float()


def make_step(model: TorchConv4):
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)

  def step(x, exemplar):
    b = x.shape[0]
    head = model(critic_input(torch.cat([x, exemplar])))
    logits = -torch.cdist(head[:b], head[b:]) ** 2
    loss = nn.functional.cross_entropy(logits, torch.arange(b))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss

  return step
