"""The differentiable rasteriser of SketchEmbedNet (its Appendix A) as a memory-bounded jit kernel.

A drawing is a stroke-5 sequence [T + 1, 5] (row 0 the start token): its points are the cumulative offsets, segment t
joins points t and t + 1 and is drawn when the pen-down state of row t exceeds 0.5. Pixel (i, j) (row i = y, column
j = x, pixel centres on the integer grid) gets p_ij = σ(2 − 5 · min_t d²_t(i, j)) with d²_t the squared distance to
segment t, plus 10⁶ for pen-up segments (Eq. 10 as the authors' code computes it).

`min_sq_distance` never materialises B × H·W × T: the forward pass scans over chunks of segments keeping the running
minimum and its argmin, and a custom VJP sends each pixel's cotangent to its nearest segment only (the gradient of a
min), so the backward pass is O(B · H·W). `render_dense` is the straightforward version kept as the reference.
One fix over the authors' distance: a zero-length segment is a point (their formula gives it distance 0 to every
pixel, lighting the whole canvas).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

PEN_UP_PENALTY = 1e6
_EPS = 1e-4


def pad_pixels(size: int) -> int:
  """The margin of the fitted drawing: 10 % of the canvas on each side, rounded (6 px at 28², 10 at 48²)."""
  return int(round(size / 10)) * 2


def segment_sq_distance(pixels: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
  """Squared distance of points [..., 2] to segments a→b [..., 2] (broadcast together)."""
  ab, ap, bp = b - a, pixels - a, pixels - b
  dot = jnp.sum(ap * ab, -1)
  len2 = jnp.sum(ab * ab, -1)
  cross = ab[..., 0] * ap[..., 1] - ab[..., 1] * ap[..., 0]
  return jnp.where(dot <= 0, jnp.sum(ap * ap, -1),
                   jnp.where(dot >= len2, jnp.sum(bp * bp, -1), cross ** 2 / (len2 + _EPS)))


def pixel_grid(size: int) -> jax.Array:
  """[size², 2] (x, y) of every pixel, row-major (x = column)."""
  ys, xs = jnp.meshgrid(jnp.arange(size, dtype=jnp.float32), jnp.arange(size, dtype=jnp.float32), indexing="ij")
  return jnp.stack([xs.ravel(), ys.ravel()], -1)


def _segments(points: jax.Array, penalty: jax.Array):
  return points[:, :-1], points[:, 1:], penalty


def _min_forward(points, penalty, size: int, chunk: int):
  """Running (min d², argmin) over chunks of segments: [B, P] each."""
  a, b, pen = _segments(points, penalty)
  batch, n_seg = a.shape[:2]
  n_chunks = -(-n_seg // chunk)
  pad = n_chunks * chunk - n_seg
  big = jnp.full((batch, pad), 2 * PEN_UP_PENALTY, pen.dtype)
  a = jnp.concatenate([a, jnp.zeros((batch, pad, 2), a.dtype)], 1).reshape(batch, n_chunks, chunk, 2)
  b = jnp.concatenate([b, jnp.zeros((batch, pad, 2), b.dtype)], 1).reshape(batch, n_chunks, chunk, 2)
  pen = jnp.concatenate([pen, big], 1).reshape(batch, n_chunks, chunk)
  grid = pixel_grid(size)[None, :, None, :]                                           # [1, P, 1, 2]

  def body(carry, c):
    best, arg = carry
    d = segment_sq_distance(grid, a[:, c, None], b[:, c, None]) + pen[:, c, None]   # [B, P, chunk]
    local = jnp.argmin(d, -1)
    dmin = jnp.take_along_axis(d, local[..., None], -1)[..., 0]
    better = dmin < best
    return (jnp.where(better, dmin, best), jnp.where(better, (local + c * chunk).astype(arg.dtype), arg)), None

  init = (jnp.full((batch, size * size), jnp.inf, jnp.result_type(points.dtype, jnp.float32)),
          jnp.zeros((batch, size * size), jnp.int32))
  (best, arg), _ = jax.lax.scan(body, init, jnp.arange(n_chunks))
  return best, arg


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def min_sq_distance(points: jax.Array, penalty: jax.Array, size: int, chunk: int = 8) -> jax.Array:
  """min_t (d²_t + penalty_t) for every pixel: points [B, T+1, 2] in pixel units, penalty [B, T] → [B, size²]."""
  return _min_forward(points, penalty, size, chunk)[0]


def _min_fwd(points, penalty, size, chunk):
  best, arg = _min_forward(points, penalty, size, chunk)
  return best, (points, penalty, arg)


def _min_bwd(size, chunk, residuals, g):
  points, penalty, arg = residuals
  a = jnp.take_along_axis(points[:, :-1], arg[..., None], 1)                          # [B, P, 2]
  b = jnp.take_along_axis(points[:, 1:], arg[..., None], 1)
  grid = pixel_grid(size)[None]
  _, vjp = jax.vjp(lambda a_, b_: segment_sq_distance(grid, a_, b_), a, b)
  ga, gb = vjp(g)
  scatter = jax.vmap(lambda v, idx: jax.ops.segment_sum(v, idx, num_segments=points.shape[1] - 1))
  g_points = jnp.zeros_like(points).at[:, :-1].add(scatter(ga, arg)).at[:, 1:].add(scatter(gb, arg))
  return g_points, jnp.zeros_like(penalty)


min_sq_distance.defvjp(_min_fwd, _min_bwd)


def absolute_points(strokes5: jax.Array) -> jax.Array:
  """Stroke-5 [B, T+1, 5] → cumulative positions [B, T+1, 2] (Eq. 6)."""
  return jnp.cumsum(strokes5[..., :2], axis=-2)


def fit_transform(reference_points: jax.Array, size: int) -> tuple[jax.Array, jax.Array]:
  """Scale [B] and shift [B, 2] that centre the reference drawing on the canvas with the 10 % margin (Eq. 8–9)."""
  lo, hi = reference_points.min(-2), reference_points.max(-2)
  scale = (size - pad_pixels(size)) / jnp.maximum((hi - lo).max(-1), 1e-3)
  shift = (size - (lo + hi) * scale[:, None]) / 2
  return scale, shift


def pen_penalty(strokes5: jax.Array) -> jax.Array:
  """[B, T] 10⁶ on segments whose start row has the pen up (p1 ≤ 0.5); a hard threshold, no gradient."""
  return jnp.where(jax.lax.stop_gradient(strokes5[:, :-1, 2]) > 0.5, 0.0, PEN_UP_PENALTY)


def intensity(sq_distance: jax.Array) -> jax.Array:
  return jax.nn.sigmoid(2.0 - 5.0 * sq_distance)


@functools.partial(jax.jit, static_argnames=("size", "chunk"))
def render(strokes5: jax.Array, size: int, reference: jax.Array | None = None, chunk: int = 8) -> jax.Array:
  """Stroke-5 drawings [B, T+1, 5] → images [B, size, size] in [0, 1], scaled and centred by `reference`'s extent
  (the ground truth; default the drawings themselves). Differentiable in the offsets."""
  points = absolute_points(strokes5)
  scale, shift = fit_transform(absolute_points(reference if reference is not None else strokes5), size)
  scale, shift = jax.lax.stop_gradient(scale), jax.lax.stop_gradient(shift)
  canvas = points * scale[:, None, None] + shift[:, None]
  d = min_sq_distance(canvas, pen_penalty(strokes5), size, chunk)
  return intensity(d).reshape(-1, size, size)


@functools.partial(jax.jit, static_argnames=("size",))
def render_dense(strokes5: jax.Array, size: int, reference: jax.Array | None = None) -> jax.Array:
  """The straightforward rasteriser: every pixel against every segment at once (B × size² × T)."""
  points = absolute_points(strokes5)
  scale, shift = fit_transform(absolute_points(reference if reference is not None else strokes5), size)
  canvas = points * jax.lax.stop_gradient(scale)[:, None, None] + jax.lax.stop_gradient(shift)[:, None]
  grid = pixel_grid(size)[None, :, None]
  d = segment_sq_distance(grid, canvas[:, None, :-1], canvas[:, None, 1:]) + pen_penalty(strokes5)[:, None]
  return intensity(d.min(-1)).reshape(-1, size, size)


def gaussian_kernel(sigma: float = 2.0, width: int = 5) -> jax.Array:
  r = jnp.arange(width, dtype=jnp.float32) - (width - 1) / 2
  k = jnp.exp(-r ** 2 / (2 * sigma ** 2))
  k = jnp.outer(k, k)
  return k / k.sum()


def blur(images: jax.Array, sigma: float = 2.0, width: int = 5) -> jax.Array:
  """5×5 Gaussian blur with zero padding of [B, H, W] images (the pixel loss's g_blur)."""
  k = gaussian_kernel(sigma, width)[:, :, None, None]
  out = jax.lax.conv_general_dilated(images[..., None], k, (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return out[..., 0]


def pixel_loss(predicted: jax.Array, target: jax.Array, sigma: float = 2.0) -> jax.Array:
  """Eq. 4 as the authors compute it: binary cross-entropy of the blurred rasters, averaged over pixels → [B]."""
  p = jnp.clip(blur(predicted, sigma), 1e-6, 1 - 1e-6)
  t = blur(target, sigma)
  return -jnp.mean(t * jnp.log(p) + (1 - t) * jnp.log(1 - p), axis=(1, 2))
