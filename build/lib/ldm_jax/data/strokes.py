"""Stroke formats shared by every dataset: absolute polylines, stroke-3 and stroke-5, and a host rasteriser.

Conventions:
  * absolute: [N, 3] rows (x, y, pen_end) in image coordinates (y grows downwards); pen_end = 1 on the last point
    of each stroke.
  * stroke-3: [N, 3] rows (dx, dy, pen_lift) with the offsets from the previous point (the first from the origin),
    pen_lift = 1 on the last point of each stroke (sketch-rnn convention).
  * stroke-5: [N, 5] rows (dx, dy, p_down, p_up, p_end) with one-hot pen states and a final end-of-sketch row.

The host rasteriser (PIL) is for building datasets; the differentiable jit kernel is `ldm_jax.raster`. The
sketch-model preparation (RDP simplification, scale normalisation, padding to T) is here too, one function per step.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def absolute_to_stroke3(points: np.ndarray) -> np.ndarray:
  points = np.asarray(points, np.float32)
  out = points.copy()
  out[1:, :2] = points[1:, :2] - points[:-1, :2]
  return out


def stroke3_to_absolute(strokes: np.ndarray) -> np.ndarray:
  strokes = np.asarray(strokes, np.float32)
  out = strokes.copy()
  out[:, :2] = np.cumsum(strokes[:, :2], axis=0)
  return out


def stroke3_to_stroke5(strokes: np.ndarray, max_len: int | None = None) -> np.ndarray:
  """Stroke-3 → stroke-5 with an end-of-sketch row, zero-padded (p_end = 1) up to `max_len` rows if given."""
  n = len(strokes)
  length = n + 1 if max_len is None else max_len
  if length < n + 1:
    raise ValueError(f"drawing of {n} points does not fit max_len={max_len}")
  out = np.zeros((length, 5), np.float32)
  out[:n, :2] = strokes[:, :2]
  out[:n, 3] = strokes[:, 2]
  out[:n, 2] = 1 - strokes[:, 2]
  out[n:, 4] = 1
  return out


def stroke5_to_stroke3(strokes5: np.ndarray) -> np.ndarray:
  strokes5 = np.asarray(strokes5, np.float32)
  end = np.argmax(strokes5[:, 4] > 0) if np.any(strokes5[:, 4] > 0) else len(strokes5)
  body = strokes5[:end]
  return np.stack([body[:, 0], body[:, 1], body[:, 3]], axis=1).astype(np.float32)


def polylines_to_absolute(polylines: list[np.ndarray]) -> np.ndarray:
  """A list of [n_i, 2] point arrays → absolute [N, 3] with pen_end on each stroke's last point."""
  rows = []
  for line in polylines:
    line = np.asarray(line, np.float32).reshape(-1, 2)
    if len(line) == 0:
      continue
    end = np.zeros((len(line), 1), np.float32)
    end[-1] = 1
    rows.append(np.concatenate([line, end], axis=1))
  return np.concatenate(rows, axis=0) if rows else np.zeros((0, 3), np.float32)


def split_strokes(absolute: np.ndarray) -> list[np.ndarray]:
  """Absolute [N, 3] → list of [n_i, 2] polylines."""
  ends = np.flatnonzero(absolute[:, 2] > 0) + 1
  return [s[:, :2] for s in np.split(absolute, ends) if len(s)]


def fit_to_box(absolute: np.ndarray, size: float = 255.0) -> np.ndarray:
  """Translate to the top-left and scale uniformly so that the longer side spans [0, size] (QuickDraw's rule)."""
  out = absolute.astype(np.float32).copy()
  if len(out) == 0:
    return out
  lo = out[:, :2].min(axis=0)
  extent = max(float((out[:, :2].max(axis=0) - lo).max()), 1e-6)
  out[:, :2] = (out[:, :2] - lo) * (size / extent)
  return out


def rasterize_host(absolute: np.ndarray, size: int, canvas: int = 256, line_width: int = 12,
                   margin: int = 16) -> np.ndarray:
  """Draws a drawing (absolute coordinates, any extent) as strokes = 255 on 0, antialiased down to size×size.

  The drawing is fitted into [margin, canvas - margin] keeping its aspect, drawn with round-ish thick lines on a
  canvas, then resized with PIL's antialiasing filter: the same convention as the Omniglot images.
  """
  img = Image.new("L", (canvas, canvas), 0)
  draw = ImageDraw.Draw(img)
  fitted = fit_to_box(absolute, canvas - 1 - 2 * margin)
  if len(fitted):
    extent = fitted[:, :2].max(axis=0)
    offset = margin + (canvas - 1 - 2 * margin - extent) / 2  # centre
    for line in split_strokes(np.concatenate([fitted[:, :2] + offset, fitted[:, 2:]], axis=1)):
      pts = [tuple(map(float, p)) for p in line]
      if len(pts) == 1:
        pts = pts * 2
      draw.line(pts, fill=255, width=line_width, joint="curve")
      r = line_width / 2
      for x, y in (pts[0], pts[-1]):
        draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
  return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), np.uint8)


def rdp_mask(points: np.ndarray, epsilon: float) -> np.ndarray:
  """Ramer–Douglas–Peucker on one polyline [n, 2] → bool mask of the kept points: the end points and every point
  farther than `epsilon` from the line through the ends of its span (iterative: no recursion limit on long strokes)."""
  points = np.asarray(points, np.float32)
  keep = np.zeros(len(points), bool)
  keep[[0, -1]] = len(points) > 0
  stack = [(0, len(points) - 1)]
  while stack:
    lo, hi = stack.pop()
    if hi - lo < 2:
      continue
    a, b, inner = points[lo], points[hi], points[lo + 1:hi]
    ab = b - a
    norm = float(np.hypot(*ab))
    if norm < 1e-9:
      dist = np.hypot(*(inner - a).T)
    else:
      dist = np.abs(ab[0] * (inner[:, 1] - a[1]) - ab[1] * (inner[:, 0] - a[0])) / norm
    k = int(np.argmax(dist))
    if dist[k] > epsilon:
      keep[lo + 1 + k] = True
      stack += [(lo, lo + 1 + k), (lo + 1 + k, hi)]
  return keep


def rdp(points: np.ndarray, epsilon: float) -> np.ndarray:
  """The simplified polyline (see `rdp_mask`)."""
  points = np.asarray(points, np.float32)
  return points[rdp_mask(points, epsilon)]


def simplify(absolute: np.ndarray, epsilon: float) -> np.ndarray:
  """RDP on every stroke of an absolute drawing; `epsilon` ≤ 0 leaves it unchanged."""
  if epsilon <= 0 or len(absolute) == 0:
    return np.asarray(absolute, np.float32)
  return polylines_to_absolute([rdp(s, epsilon) for s in split_strokes(absolute)])


def offsets_from_start(absolute: np.ndarray) -> np.ndarray:
  """Absolute → stroke-3 whose first offset is zero: the drawing starts at the origin, so the start token's
  segment is a point and no spurious line joins the origin to the first point."""
  out = absolute_to_stroke3(absolute)
  if len(out):
    out[0, :2] = 0
  return out


def offset_scale(drawings: list[np.ndarray], clip: float = 1000.0) -> float:
  """The standard deviation of all (clipped) Δx, Δy of a training set (sketch-rnn's normalising factor)."""
  both = np.concatenate([np.clip(d[:, :2], -clip, clip).ravel() for d in drawings if len(d)])
  return float(np.std(both))


def pad_stroke5_batch(drawings: list[np.ndarray], max_len: int, scale: float,
                      clip: float = 1000.0) -> tuple[np.ndarray, np.ndarray]:
  """Stroke-3 drawings → stroke-5 [N_kept, max_len + 1, 5] with the start token [0, 0, 1, 0, 0] in row 0, offsets
  clipped and divided by `scale`, end rows (p3 = 1) as padding; drawings longer than `max_len` are dropped.
  Returns (batch, kept indices)."""
  kept = [i for i, d in enumerate(drawings) if 0 < len(d) <= max_len]
  out = np.zeros((len(kept), max_len + 1, 5), np.float32)
  out[:, 0, 2] = 1
  for row, i in enumerate(kept):
    d = np.asarray(drawings[i], np.float32)
    n = len(d)
    out[row, 1:n + 1, :2] = np.clip(d[:, :2], -clip, clip) / scale
    out[row, 1:n + 1, 3] = d[:, 2]
    out[row, 1:n + 1, 2] = 1 - d[:, 2]
    out[row, n + 1:, 4] = 1
  return out, np.asarray(kept, np.int64)


def stroke5_batch_to_stroke3(batch: np.ndarray, scale: float = 1.0) -> list[np.ndarray]:
  """Inverse of `pad_stroke5_batch` (start token and padding removed, offsets rescaled)."""
  out = []
  for s5 in np.asarray(batch, np.float32):
    s3 = stroke5_to_stroke3(s5[1:])
    s3[:, :2] *= scale
    out.append(s3)
  return out
