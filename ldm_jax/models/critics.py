"""The critic networks of the originality-vs-recognizability framework (paper A.6).

`Conv4Critic` (Omniglot, both critics): 4 × [Conv3×3 (64, bias) → BatchNorm → ReLU → MaxPool 2] on 50×50 images
(50→25→12→6→3), flatten in PyTorch's channel-major order, ReLU, Linear 576 → 256 (the features), then a 128-d head:
`metric` (the one-shot prototypical network's metric layer, recognizability) or `projection` (SimCLR's head;
originality uses the features before it). With `channels=(64, 128, 128)` it is QuickDraw's SimCLR extractor.
`ResNetCritic`: the ResNet-18-like QuickDraw prototypical network. `import_torch_state_dict` maps the authors'
PyTorch state dicts (numpy arrays, or a `.pt` file read without torch) onto `Conv4Critic`, BN statistics included.
"""

from __future__ import annotations

import pathlib
from typing import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ldm_jax.data import pipeline
from ldm_jax.models import torch_file
from ldm_jax.models.layers import Conv, max_pool2x2

HEADS = ("metric", "projection")
BINARY_THRESHOLD = 0.3     # the authors binarise min-max scaled images at 0.3 before both critics


def critic_input(images: jnp.ndarray, size: int) -> jnp.ndarray:
  """Float images [N, H, W] or [N, H, W, 1] with strokes bright → the critics' input [N, size, size, 1]: bilinear
  resize, per-image min-max scaling, binarised at 0.3, so generated, real and training drawings look alike."""
  x = images[..., None] if images.ndim == 3 else images
  if x.shape[1:3] != (size, size):
    x = jax.image.resize(x, (x.shape[0], size, size, x.shape[-1]), "bilinear")
  lo = jnp.min(x, axis=(1, 2, 3), keepdims=True)
  hi = jnp.max(x, axis=(1, 2, 3), keepdims=True)
  x = (x - lo) / jnp.maximum(hi - lo, 1e-6)
  return (x > BINARY_THRESHOLD).astype(x.dtype)


class Conv4Critic(nn.Module):
  channels: Sequence[int] = (64, 64, 64, 64)
  features: int = 256
  head_dim: int = 128
  head: str = "metric"
  conv_impl: str = "xla"

  @nn.compact
  def __call__(self, x, train: bool = False):
    """x [B, 50, 50, 1] → (features [B, 256], head output [B, 128])."""
    if self.head not in HEADS:
      raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
    for i, c in enumerate(self.channels):
      x = Conv(c, 3, padding=1, impl=self.conv_impl, name=f"conv{i}")(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=f"bn{i}")(x)
      x = max_pool2x2(nn.relu(x))
    x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)        # channel-major, like torch's Flatten on NCHW
    features = nn.Dense(self.features, name="features")(nn.relu(x))
    return features, nn.Dense(self.head_dim, name=self.head)(features)


class _BasicBlock(nn.Module):
  channels: int
  stride: int

  @nn.compact
  def __call__(self, x, train: bool):
    bn = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)
    y = nn.Conv(self.channels, (3, 3), self.stride, padding=1, use_bias=False, name="conv1")(x)
    y = nn.relu(bn("bn1")(y))
    y = bn("bn2")(nn.Conv(self.channels, (3, 3), padding=1, use_bias=False, name="conv2")(y))
    if self.stride != 1 or x.shape[-1] != self.channels:
      x = bn("bn_skip")(nn.Conv(self.channels, (1, 1), self.stride, use_bias=False, name="skip")(x))
    return nn.relu(x + y)


class ResNetCritic(nn.Module):
  """ResNet-18-like: a 3×3 stem (small sketches, no stem pooling), 4 stages × 2 basic blocks (64/128/256/512,
  stride 2 from the second stage), global average pooling, Linear → 256 features, a 128-d head."""
  stages: Sequence[int] = (64, 128, 256, 512)
  blocks_per_stage: int = 2
  features: int = 256
  head_dim: int = 128
  head: str = "metric"

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.head not in HEADS:
      raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
    x = nn.Conv(self.stages[0], (3, 3), padding=1, use_bias=False, name="stem")(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="stem_bn")(x))
    for s, c in enumerate(self.stages):
      for b in range(self.blocks_per_stage):
        x = _BasicBlock(c, 2 if (s > 0 and b == 0) else 1, name=f"stage{s}_block{b}")(x, train)
    features = nn.Dense(self.features, name="features")(jnp.mean(x, axis=(1, 2)))
    return features, nn.Dense(self.head_dim, name=self.head)(features)


ARCHS = {"conv4": Conv4Critic, "conv3": lambda **kw: Conv4Critic(channels=(64, 128, 128), **kw),
         "resnet18": ResNetCritic}


def build_critic(arch: str, head: str, conv_impl: str = "xla"):
  if arch not in ARCHS:
    raise ValueError(f"unknown critic architecture {arch!r}; choose from {sorted(ARCHS)}")
  return ARCHS[arch](head=head) if arch == "resnet18" else ARCHS[arch](head=head, conv_impl=conv_impl)


def import_torch_state_dict(state_dict: Mapping[str, np.ndarray] | str | pathlib.Path,
                            num_blocks: int = 4) -> tuple[dict, str]:
  """(variables {'params', 'batch_stats'} for `Conv4Critic`, head name) from a ProtoNet (`metric_layer.*`) or
  SimCLR ImageEmbedding (`projection.0.*`) state dict: a mapping of numpy arrays, or the path of the `.pt` file
  itself (read by `torch_file`, no torch needed; a `{'state_dict': ...}` wrapper is looked through)."""
  if isinstance(state_dict, (str, pathlib.Path)):
    state_dict = torch_file.find_state_dict(torch_file.read(state_dict), "embedding.0.0.weight")
  sd = {k: np.asarray(v) for k, v in state_dict.items()}
  params, stats = {}, {}
  for i in range(num_blocks):
    conv, bn = f"embedding.{i}.0", f"embedding.{i}.1"
    params[f"conv{i}"] = {"kernel": sd[f"{conv}.weight"].transpose(2, 3, 1, 0), "bias": sd[f"{conv}.bias"]}
    params[f"bn{i}"] = {"scale": sd[f"{bn}.weight"], "bias": sd[f"{bn}.bias"]}
    stats[f"bn{i}"] = {"mean": sd[f"{bn}.running_mean"], "var": sd[f"{bn}.running_var"]}
  linear = lambda prefix: {"kernel": sd[f"{prefix}.weight"].T, "bias": sd[f"{prefix}.bias"]}
  params["features"] = linear(f"embedding.{num_blocks + 2}")
  if "metric_layer.weight" in sd:
    head, prefix = "metric", "metric_layer"
  elif "projection.0.weight" in sd:
    head, prefix = "projection", "projection.0"
  else:
    raise KeyError("the state dict has neither a 'metric_layer' (ProtoNet) nor a 'projection.0' (SimCLR) head")
  params[head] = linear(prefix)
  as_jnp = lambda tree: {k: {n: jnp.asarray(v, jnp.float32) for n, v in d.items()} for k, d in tree.items()}
  return {"params": as_jnp(params), "batch_stats": as_jnp(stats)}, head


def embed_fn(model, head: bool, size: int):
  """jit: (variables, images [N, H, W], uint8 or float in [0, 1]) → features [N, 256] (head=False) or head outputs
  [N, 128], through `critic_input` at the critic's `size`."""

  def one_chunk(variables, xs):
    xs = pipeline.to_float(xs) if xs.dtype == jnp.uint8 else xs
    return model.apply(variables, critic_input(xs, size), False)[1 if head else 0]

  @jax.jit
  def embed(variables, images):
    return pipeline.map_in_chunks(lambda xs: one_chunk(variables, xs), images)

  return embed
