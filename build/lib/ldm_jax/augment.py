"""τ_A, τ_B of the contrastive regularizers (paper A.2.3) as jit-able per-image warps on the device.

Each view of each image draws ONE of: random resized crop, random affine (rotation, translation, zoom, shear),
random perspective (applied with probability p). Every transform is a 3×3 homography from output to input pixel
coordinates; one bilinear resampling (dm-pix, zero fill) applies it. `strength` scales every range: 0 is identity.
"""

from __future__ import annotations

import dataclasses
import math

import dm_pix as pix
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class AugmentParams:
  crop_scale: tuple[float, float] = (0.1, 0.9)     # paper; the authors' code used (0.75, 1.33)
  crop_ratio: tuple[float, float] = (0.8, 1.2)
  rotation_deg: float = 15.0
  translate_px: float = 5.0                        # paper; the code used ±10 % of the size
  zoom: tuple[float, float] = (0.75, 1.25)
  shear_deg: float = 10.0
  perspective_distortion: float = 0.5
  perspective_p: float = 0.5
  strength: float = 1.0


def _centered(m: jax.Array, size: int) -> jax.Array:
  """Conjugate a homography about the image centre."""
  c = (size - 1) / 2.0
  t = jnp.array([[1.0, 0.0, c], [0.0, 1.0, c], [0.0, 0.0, 1.0]])
  t_inv = jnp.array([[1.0, 0.0, -c], [0.0, 1.0, -c], [0.0, 0.0, 1.0]])
  return t @ m @ t_inv


def resized_crop_homography(key: jax.Array, size: int, p: AugmentParams) -> jax.Array:
  """Output → input map of a random crop (area fraction, aspect ratio) resized back to the full image."""
  k_area, k_ratio, k_pos = jax.random.split(key, 3)
  s = p.strength
  lo, hi = (1.0 - s * (1.0 - p.crop_scale[0]), 1.0 - s * (1.0 - p.crop_scale[1]))
  area = jax.random.uniform(k_area, minval=min(lo, hi), maxval=max(lo, hi))
  log_r = jax.random.uniform(k_ratio, minval=s * math.log(p.crop_ratio[0]), maxval=s * math.log(p.crop_ratio[1]))
  w = jnp.minimum(jnp.sqrt(area * jnp.exp(log_r)), 1.0) * size
  h = jnp.minimum(jnp.sqrt(area / jnp.exp(log_r)), 1.0) * size
  u = jax.random.uniform(k_pos, (2,))
  x0, y0 = u[0] * (size - w), u[1] * (size - h)
  # pixel centres: out (i + 0.5) / size ↦ in x0 + (i + 0.5) · w / size
  sx, sy = w / size, h / size
  return jnp.array([[sx, 0.0, x0 + 0.5 * sx - 0.5], [0.0, sy, y0 + 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def affine_homography(key: jax.Array, size: int, p: AugmentParams) -> jax.Array:
  """Output → input map of a random rotation, translation, zoom and shear about the centre."""
  k_rot, k_tr, k_zoom, k_shear = jax.random.split(key, 4)
  s = p.strength
  angle = jnp.deg2rad(jax.random.uniform(k_rot, minval=-s * p.rotation_deg, maxval=s * p.rotation_deg))
  shift = jax.random.uniform(k_tr, (2,), minval=-s * p.translate_px, maxval=s * p.translate_px)
  zoom = jnp.exp(jax.random.uniform(k_zoom, minval=s * math.log(p.zoom[0]), maxval=s * math.log(p.zoom[1])))
  shear = jnp.deg2rad(jax.random.uniform(k_shear, minval=-s * p.shear_deg, maxval=s * p.shear_deg))
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  rot = jnp.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
  sh = jnp.array([[1.0, jnp.tan(shear), 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
  forward = jnp.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]], [0.0, 0.0, 1.0]]) @ rot @ sh @ jnp.diag(
      jnp.array([zoom, zoom, 1.0]))
  return _centered(jnp.linalg.inv(forward), size)


def homography_from_points(src: jax.Array, dst: jax.Array) -> jax.Array:
  """The 3×3 H with H·src_i ∝ dst_i for 4 point pairs ([4, 2] each), by the 8×8 DLT system."""
  x, y = src[:, 0], src[:, 1]
  u, v = dst[:, 0], dst[:, 1]
  zeros, ones = jnp.zeros(4), jnp.ones(4)
  rows_u = jnp.stack([x, y, ones, zeros, zeros, zeros, -u * x, -u * y], axis=1)
  rows_v = jnp.stack([zeros, zeros, zeros, x, y, ones, -v * x, -v * y], axis=1)
  a = jnp.concatenate([rows_u, rows_v])
  h = jnp.linalg.solve(a, jnp.concatenate([u, v]))
  return jnp.append(h, 1.0).reshape(3, 3)


def perspective_homography(key: jax.Array, size: int, p: AugmentParams) -> jax.Array:
  """Output → input map of torchvision's RandomPerspective: each corner moves inwards by up to d·size/2."""
  k_apply, k_corners = jax.random.split(key)
  half = p.strength * p.perspective_distortion * (size - 1) / 2.0
  corners = jnp.array([[0.0, 0.0], [size - 1.0, 0.0], [size - 1.0, size - 1.0], [0.0, size - 1.0]])
  inward = jnp.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
  moved = corners + inward * jax.random.uniform(k_corners, (4, 2)) * half
  h = homography_from_points(corners, moved)  # output pixel (warped corners) ← we need output → input
  h_inv = jnp.linalg.inv(h)
  apply = jax.random.uniform(k_apply) < p.perspective_p
  return jnp.where(apply, h_inv / h_inv[2, 2], jnp.eye(3))


def warp(image: jax.Array, h: jax.Array) -> jax.Array:
  """Resample image [H, W, C] at H·(x, y, 1) for every output pixel; zero outside (bilinear, dm-pix)."""
  size_y, size_x, c = image.shape
  ys, xs = jnp.meshgrid(jnp.arange(size_y, dtype=jnp.float32), jnp.arange(size_x, dtype=jnp.float32), indexing="ij")
  pts = h @ jnp.stack([xs.ravel(), ys.ravel(), jnp.ones(xs.size)])
  src_x, src_y = pts[0] / pts[2], pts[1] / pts[2]
  out = jax.vmap(lambda ch: pix.flat_nd_linear_interpolate_constant(
      image, jnp.stack([src_y, src_x, jnp.full_like(src_x, ch)]), cval=0.0))(jnp.arange(c, dtype=jnp.float32))
  return out.T.reshape(size_y, size_x, c)


def random_view_homography(key: jax.Array, size: int, p: AugmentParams) -> jax.Array:
  """One of the three transforms, uniformly (A.2.3: 'randomly picked among the following')."""
  k_pick, k_crop, k_aff, k_persp = jax.random.split(key, 4)
  hs = jnp.stack([resized_crop_homography(k_crop, size, p), affine_homography(k_aff, size, p),
                  perspective_homography(k_persp, size, p)])
  return hs[jax.random.randint(k_pick, (), 0, 3)]


def augment_batch(key: jax.Array, images: jax.Array, p: AugmentParams = AugmentParams()) -> jax.Array:
  """A random view of every image of [B, H, W, C] (one transform per image), values stay in [0, 1]."""
  keys = jax.random.split(key, images.shape[0])
  hs = jax.vmap(lambda k: random_view_homography(k, images.shape[1], p))(keys)
  return jnp.clip(jax.vmap(warp)(images, hs), 0.0, 1.0)
