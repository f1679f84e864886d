"""Mixed precision: float32 parameters and optimizer state, the forward and backward pass in bfloat16.

Parameters are cast inside the differentiated loss, so gradients come back in float32 and the optimizer never sees
bf16. Batch statistics and running averages stay float32 (flax reduces them in ≥ f32); loss terms are cast to float32
before they are reduced. The switch is `train.compute_dtype`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

COMPUTE_DTYPES = ("float32", "bfloat16")


def compute_dtype(name: str) -> jnp.dtype:
  if name not in COMPUTE_DTYPES:
    raise ValueError(f"train.compute_dtype must be one of {COMPUTE_DTYPES}, got {name!r}")
  return jnp.dtype(name)


def cast_floating(tree, dtype):
  """Every floating-point leaf of `tree` as `dtype` (integer leaves, e.g. labels and steps, untouched)."""
  return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(jnp.result_type(x), jnp.floating) else x, tree)
