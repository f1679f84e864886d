"""Uses of the SketchEmbedding space: decoding codes to rendered sketches, interpolation and vector arithmetic."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ldm_jax import raster
from ldm_jax.sketch.model import SketchEmbedNet, sample


def interpolate(z_a: jax.Array, z_b: jax.Array, steps: int) -> jax.Array:
  """[steps, D] codes on the segment from z_a to z_b (both ends included)."""
  t = jnp.linspace(0.0, 1.0, steps)[:, None]
  return (1 - t) * z_a + t * z_b


def analogy(z_a: jax.Array, z_b: jax.Array, z_c: jax.Array) -> jax.Array:
  """z_a − z_b + z_c: the concept a has and b lacks, added to c (the paper's Fig. 9 arithmetic)."""
  return z_a - z_b + z_c


def draw(model: SketchEmbedNet, variables, z: jax.Array, key: jax.Array, size: int = 28, steps: int = 64,
         temperature: float = 0.1) -> jax.Array:
  """Codes [B, D] → sketches rendered by the rasteriser [B, size, size] in [0, 1] (each fitted to its own extent)."""
  strokes = sample(model, variables, z, key, steps, temperature)
  return raster.render(strokes, size) / raster.intensity(0.0)
