"""The differentiable rasteriser kernel: known renders, invariances, gradients, and agreement with the dense one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ldm_jax import raster


def strokes5(points, pen_down):
  """Absolute points [n, 2] and per-point pen-down flags → one stroke-5 drawing [1, n, 5] starting at points[0]."""
  points = np.asarray(points, np.float32)
  rows = np.zeros((len(points), 5), np.float32)
  rows[1:, :2] = np.diff(points, axis=0)
  rows[:, 2] = pen_down
  rows[:, 3] = 1 - np.asarray(pen_down)
  rows[0, :2] = points[0]
  return jnp.asarray(rows[None])


def render_atol(size: int) -> float:
  """How far two equivalent float32 renders may differ (e.g. with and without FMA contraction, or another segment
  order). Near a stroke d² = cross² / |ab|², and cross = ab × ap cancels two products of size ≈ |ab|·|ap|, so d is
  off by ≈ √2·ε·|ap| ≤ √2·ε·size and d² by ≈ 2·d·√2·ε·size; the intensity σ(2 − 5d²) has slope ≤ 1.25 per unit of
  d², where d ≲ 0.7. That is ≈ 2.5·ε·size per pixel; ×3 for the rounding of the fit (Eq. 8–9) and the sums."""
  return 8 * float(np.finfo(np.float32).eps) * size


def test_horizontal_segment_renders_the_expected_row_profile():
  size = 28
  s = strokes5([[0, 0], [10, 0]], [1, 0])
  img = np.asarray(raster.render(s, size))[0]
  # the segment spans the fitted width (28 - 6 px of margin) on the middle row (y extent 0 → centred at 14)
  row = size // 2
  on = np.asarray(raster.intensity(0.0))
  np.testing.assert_allclose(img[row, 3:25], on, rtol=1e-6)
  for off in (1, 2):
    np.testing.assert_allclose(img[row + off, 3:25], raster.intensity(float(off) ** 2), rtol=1e-5)
    np.testing.assert_allclose(img[row - off, 3:25], raster.intensity(float(off) ** 2), rtol=1e-5)
  assert img[row, 0] < 0.01 and img[row, 27] < 0.01


def test_pen_up_segments_render_nothing():
  pts = [[0, 0], [10, 0], [10, 10], [0, 10]]
  drawn = np.asarray(raster.render(strokes5(pts, [1, 0, 1, 0]), 28))[0]      # the middle segment is a pen-up jump
  full = np.asarray(raster.render(strokes5(pts, [1, 1, 1, 0]), 28))[0]
  jump_column = 25                                 # x = 10 → column 3 + 10 · 22/10 after fitting (Eq. 8–9)
  assert drawn[8:20, jump_column].max() < 0.2 and full[8:20, jump_column].min() > 0.85
  assert np.asarray(raster.render(strokes5(pts, [0, 0, 0, 0]), 28)).max() < 1e-6


def test_rendering_is_invariant_to_stroke_order_and_direction():
  a = [[0, 0], [10, 0]]
  b = [[3, 4], [8, 12], [1, 9]]
  forward = strokes5(a + b, [1, 0, 1, 1, 0])
  swapped = strokes5(b + a, [1, 1, 0, 1, 0])
  reversed_ = strokes5(b[::-1] + a[::-1], [1, 1, 0, 1, 0])
  img = raster.render(forward, 28)
  np.testing.assert_allclose(raster.render(swapped, 28), img, atol=render_atol(28))
  np.testing.assert_allclose(raster.render(reversed_, 28), img, atol=render_atol(28))


def test_zero_length_segment_is_a_dot_not_the_whole_canvas():
  img = np.asarray(raster.render(strokes5([[5, 5], [5, 5], [9, 9]], [1, 1, 0]), 28))[0]
  assert (img > 0.5).mean() < 0.1


@pytest.mark.real_data
def test_kernel_matches_dense_forward_and_gradient_on_real_strokes():
  from ldm_jax.data.sketches import load_sketches
  s = jnp.asarray(load_sketches("omniglot", max_examples=16)["strokes"])
  key = jax.random.PRNGKey(0)
  pred = s.at[:, 1:, :2].add(0.05 * jax.random.normal(key, s[:, 1:, :2].shape))
  for size in (28, 48):
    np.testing.assert_allclose(raster.render(pred, size, reference=s), raster.render_dense(pred, size, reference=s),
                               atol=render_atol(size))
    w = jax.random.uniform(key, (16, size, size))
    g_kernel = jax.grad(lambda x: jnp.sum(w * raster.render(x, size, reference=s)))(pred)
    g_dense = jax.grad(lambda x: jnp.sum(w * raster.render_dense(x, size, reference=s)))(pred)
    np.testing.assert_allclose(g_kernel, g_dense, atol=1e-4 * float(jnp.abs(g_dense).max()))
    assert float(jnp.abs(g_kernel[..., :2]).max()) > 0 and float(jnp.abs(g_kernel[..., 2:]).max()) == 0


def test_gradient_matches_finite_differences():
  with jax.enable_x64(True):   # central differences of a sum over 784 pixels need float64
    s = strokes5([[0, 0], [6, 1], [9, 7], [2, 9]], [1, 1, 1, 0]).astype(jnp.float64)
    w = jax.random.uniform(jax.random.PRNGKey(1), (1, 28, 28), jnp.float64)
    f = lambda x: jnp.sum(w * raster.render(x, 28, reference=s))
    g = np.asarray(jax.grad(f)(s))
    h = 1e-5
    for t in (1, 2, 3):
      for c in (0, 1):
        e = jnp.zeros_like(s).at[0, t, c].set(h)
        fd = (float(f(s + e)) - float(f(s - e))) / (2 * h)
        assert abs(fd - g[0, t, c]) <= 1e-4 * abs(fd) + 1e-6, (t, c, fd, g[0, t, c])


def test_blur_keeps_mass_away_from_borders_and_pixel_loss_prefers_the_truth():
  img = jnp.zeros((1, 28, 28)).at[0, 14, 14].set(1.0)
  b = raster.blur(img)
  np.testing.assert_allclose(float(b.sum()), 1.0, rtol=1e-5)
  assert float(b[0, 14, 14]) == pytest.approx(float(b.max()))
  truth = raster.render(strokes5([[0, 0], [10, 0], [10, 10]], [1, 1, 0]), 28)
  other = raster.render(strokes5([[0, 0], [0, 10], [10, 10]], [1, 1, 0]), 28)
  assert float(raster.pixel_loss(truth, truth)[0]) < float(raster.pixel_loss(other, truth)[0])
