"""The critic networks of the originality-vs-recognizability framework (paper A.6; Omniglot variant).

`Conv4Critic`: 4 × [Conv3×3 (64, bias) → BatchNorm → ReLU → MaxPool 2] on 50×50 images (50→25→12→6→3), flatten in
PyTorch's channel-major order, ReLU, Linear 576 → 256 (the features), then a 128-d head: `metric` (the one-shot
prototypical network's metric layer, recognizability) or `projection` (SimCLR's head; originality uses the
features before it). `import_torch_state_dict` maps the authors' PyTorch state dicts (as numpy arrays: no torch at
run time) onto these parameters, BN running statistics included.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from ldm_jax.models.layers import Conv

HEADS = ("metric", "projection")


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
      x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
    x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)        # channel-major, like torch's Flatten on NCHW
    features = nn.Dense(self.features, name="features")(nn.relu(x))
    return features, nn.Dense(self.head_dim, name=self.head)(features)


def import_torch_state_dict(state_dict: Mapping[str, np.ndarray], num_blocks: int = 4) -> tuple[dict, str]:
  """(variables {'params', 'batch_stats'} for `Conv4Critic`, head name) from a ProtoNet (`metric_layer.*`) or
  SimCLR ImageEmbedding (`projection.0.*`) state dict of numpy arrays (e.g. `{k: v.numpy() for k, v in
  torch.load(path).items()}` saved with `np.savez`)."""
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
