"""ClickMe-QuickDraw (Serre lab, MIT): 250 QuickDraw sketches (25 classes × 10) with human click maps.

A human feature-importance map is the density of all participants' clicks on an image: clicks are accumulated on
the 256×256 canvas, blurred with a Gaussian (σ = `CLICK_SIGMA` px, about the ClickMe brush) and scaled to max 1.
The two halves of the click sessions (even / odd) give the maps for split-half consistency.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import re
import zipfile
from collections import Counter, defaultdict

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from ldm_jax.data import sources
from ldm_jax.data.archive_builder import ArchiveBuilder

CANVAS = 256
SIZE = 48
CLICK_SIGMA = 12.0
_IMAGE = re.compile(r"images/(\d+)_(\d+)\.jpg$")


def _gaussian_kernel(sigma: float) -> np.ndarray:
  radius = int(3 * sigma)
  x = np.arange(-radius, radius + 1, dtype=np.float64)
  k = np.exp(-0.5 * (x / sigma) ** 2)
  return k / k.sum()


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
  """Separable Gaussian blur with zero padding (same size)."""
  k = _gaussian_kernel(sigma)
  out = np.apply_along_axis(np.convolve, 0, image.astype(np.float64), k, mode="same")
  return np.apply_along_axis(np.convolve, 1, out, k, mode="same")


def click_map(points: np.ndarray, canvas: int = CANVAS, size: int = SIZE, sigma: float = CLICK_SIGMA) -> np.ndarray:
  """[n, 2] click (x, y) positions on the canvas → float32 [size, size] density in [0, 1] (zeros if no click)."""
  counts = np.zeros((canvas, canvas))
  if len(points):
    xy = np.clip(np.rint(points).astype(int), 0, canvas - 1)
    np.add.at(counts, (xy[:, 1], xy[:, 0]), 1.0)
  blurred = gaussian_blur(counts, sigma)
  small = np.asarray(Image.fromarray(blurred.astype(np.float32)).resize((size, size), Image.Resampling.BILINEAR))
  peak = small.max()
  return (small / peak if peak > 0 else small).astype(np.float32)


def read_click_sessions(root=None) -> tuple[dict[str, list[np.ndarray]], dict[int, str]]:
  """Image path → list of per-session [n, 2] click arrays (all dumps), and class index → class name."""
  table = json.load(gzip.open(sources.fetch(sources.CLICKME_TABLE, root)))["dumps"]
  sessions: dict[str, list[np.ndarray]] = defaultdict(list)
  names: dict[int, Counter] = defaultdict(Counter)
  for dump in sorted(table):
    for row in table[dump]:
      path = row["image_path"]
      names[int(_IMAGE.search(path).group(1))][row["syn_name"]] += 1
      cp = row["click_path"]
      if isinstance(cp, str):
        cp = ast.literal_eval(cp)
      for xs, ys in zip((cp or {}).get("x", []), (cp or {}).get("y", [])):
        if xs:
          sessions[path].append(np.stack([np.asarray(xs, float), np.asarray(ys, float)], axis=1))
  return sessions, {k: c.most_common(1)[0][0] for k, c in names.items()}


class ClickmeQuickdraw(ArchiveBuilder):
  """ClickMe-QuickDraw sketches with human click heatmaps (whole, and two halves of the sessions)."""


  HOMEPAGE = "https://github.com/serre-lab/click_draw"

  def features(self):
    return tfds.features.FeaturesDict({
        "image": tfds.features.Tensor(shape=(SIZE, SIZE), dtype=np.uint8),
        "image_full": tfds.features.Tensor(shape=(CANVAS, CANVAS), dtype=np.uint8),
        "label": tfds.features.Tensor(shape=(), dtype=np.int32),
        "category": tfds.features.Text(),
        "heatmap": tfds.features.Tensor(shape=(SIZE, SIZE), dtype=np.float32),
        "heatmap_half_a": tfds.features.Tensor(shape=(SIZE, SIZE), dtype=np.float32),
        "heatmap_half_b": tfds.features.Tensor(shape=(SIZE, SIZE), dtype=np.float32),
        "n_sessions": tfds.features.Tensor(shape=(), dtype=np.int32),
        "n_clicks": tfds.features.Tensor(shape=(), dtype=np.int32),
    })

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(sources.fetch(sources.CLICKME_IMAGES, self._raw_dir))}

  def _generate_examples(self, images_zip):
    sessions, names = read_click_sessions(self._raw_dir)
    empty = np.zeros((0, 2))
    with zipfile.ZipFile(images_zip) as zf:
      for name in sorted(zf.namelist()):
        m = _IMAGE.search(name)
        if not m:
          continue
        gray = np.asarray(Image.open(io.BytesIO(zf.read(name))).convert("L").resize((CANVAS, CANVAS)), np.uint8)
        ink = gray if gray.mean() < 128 else 255 - gray  # the library's convention is strokes = 255 on 0
        s = sessions.get(name, [])
        label = int(m.group(1))
        yield name, {
            "image": np.asarray(Image.fromarray(ink).resize((SIZE, SIZE), Image.Resampling.BILINEAR), np.uint8),
            "image_full": ink,
            "label": np.int32(label),
            "category": names.get(label, str(label)),
            "heatmap": click_map(np.concatenate(s) if s else empty),
            "heatmap_half_a": click_map(np.concatenate(s[0::2]) if s[0::2] else empty),
            "heatmap_half_b": click_map(np.concatenate(s[1::2]) if s[1::2] else empty),
            "n_sessions": np.int32(len(s)),
            "n_clicks": np.int32(sum(len(x) for x in s)),
        }
