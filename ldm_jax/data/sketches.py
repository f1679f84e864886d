"""(image, stroke-5) pairs for the sketch models, from any stroke source through the same functions.

    sketches = load_sketches("omniglot", max_len=64, image_size=28)
    sketches["strokes"]  # float32 [N, 65, 5], row 0 the start token, offsets divided by sketches["scale"]
    sketches["images"]   # uint8 [N, 28, 28], strokes = 255 on 0

Sources:
  * `omniglot`: Lake's labelled stroke subsets (background small1 + small2, 4,840 drawings of background
    characters, all in Vinyals' train classes) paired with their own images.
  * `omniglot_npz`: sketch-rnn's unlabelled stroke-3 set of all Omniglot drawings (`split` train/valid/test).
    Unlabelled and from every alphabet, so its train split may hold drawings of Vinyals' test characters.
  * `quickdraw`: the QuickDraw ndjson drawings (`variant` simplified or raw).
Strokes-only sources get input images rendered by `ldm_jax.raster` (line ≈ 1 px, 10 % margin, as the paper's inputs).
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ldm_jax.data import pipeline, sources
from ldm_jax.data import strokes as S


def _omniglot(split: str, data_dir, build_dir, variant: str):
  from ldm_jax import data
  d = data.load("omniglot", split, image_size=28, with_strokes=True, exemplar_space="", data_dir=data_dir,
                build_dir=build_dir)
  rows = np.flatnonzero([len(s) > 0 for s in d["strokes"]] & (d["rotation"] == 0))
  if not len(rows):
    raise ValueError(f"omniglot split {split!r} has no drawings with strokes (only the background small1/small2 "
                     "subsets have them: use split='background')")
  return [d["strokes"][r] for r in rows], d["images"][rows], d["character"][rows].astype(np.int32)


def _omniglot_npz(split: str, data_dir, build_dir, variant: str):
  path = sources.fetch(sources.OMNIGLOT_NPZ, data_dir)
  table = np.load(path, allow_pickle=True, encoding="latin1")
  if split not in table:
    raise ValueError(f"omniglot_npz split must be one of {sorted(table.files)}, got {split!r}")
  return [S.stroke3_to_absolute(np.asarray(s, np.float32)) for s in table[split]], None, None


def _quickdraw(split: str, data_dir, build_dir, variant: str):
  from ldm_jax import data
  d = data.load("quickdraw", "all", variant=variant, with_strokes=True, exemplar_space="", data_dir=data_dir,
                build_dir=build_dir)
  return [S.stroke3_to_absolute(s) for s in d["strokes"]], None, d["labels"]   # stored as stroke-3


class Source(NamedTuple):
  read: Callable   # (split, data_dir, build_dir, variant) → (absolute drawings, images uint8 [N, 28, 28] or None,
                   #  labels int32 [N] or None)
  rdp_epsilon: float   # default simplification (the npz and QuickDraw are simplified already)
  default_split: str


SOURCES = {"omniglot": Source(_omniglot, 2.0, "background"), "omniglot_npz": Source(_omniglot_npz, 0.0, "train"),
           "quickdraw": Source(_quickdraw, 0.0, "train")}
DEFAULT_RDP = {name: src.rdp_epsilon for name, src in SOURCES.items()}


def _source(name: str) -> Source:
  if name not in SOURCES:
    raise ValueError(f"unknown sketch source {name!r}; choose one of {tuple(SOURCES)}")
  return SOURCES[name]


@functools.partial(jax.jit, static_argnums=(1, 2))
def _render_all(strokes5, size: int, batch: int):
  from ldm_jax import raster
  return pipeline.map_in_chunks(lambda s: raster.render(s, size), strokes5, batch)


def render_images(strokes5: np.ndarray, size: int, batch: int = 512) -> np.ndarray:
  """Input images of strokes-only drawings, rendered by the differentiable kernel → uint8 [N, size, size]."""
  from ldm_jax import raster
  if not len(strokes5):
    return np.zeros((0, size, size), np.uint8)
  images = np.asarray(_render_all(jnp.asarray(strokes5), size, min(batch, len(strokes5))))
  return np.round(np.clip(images / raster.intensity(0.0), 0, 1) * 255).astype(np.uint8)


def load_sketches(source: str, split: str = "", *, max_len: int = 64, image_size: int = 28,
                  rdp_epsilon: Optional[float] = None, scale: Optional[float] = None, variant: str = "simplified",
                  max_examples: int = 0, data_dir: Optional[str] = None,
                  build_dir: Optional[str] = None) -> dict[str, np.ndarray]:
  """Stroke-5 sequences padded to `max_len` (longer ones dropped and counted), their input images, labels where the
  source has them (else −1), and the offset scale (the training set's std unless `scale` is given)."""
  src = _source(source)
  drawings, images, labels = src.read(split or src.default_split, data_dir, build_dir, variant)
  eps = src.rdp_epsilon if rdp_epsilon is None else rdp_epsilon
  stroke3 = [S.offsets_from_start(S.simplify(d, eps)) for d in drawings]
  scale = scale or S.offset_scale(stroke3)
  batch, kept = S.pad_stroke5_batch(stroke3, max_len, scale)
  dropped = len(drawings) - len(kept)
  if max_examples:
    batch, kept = batch[:max_examples], kept[:max_examples]
  if images is None or image_size != images.shape[1]:
    images = render_images(batch, image_size)
  else:
    images = images[kept]
  labels = labels[kept] if labels is not None else np.full(len(kept), -1, np.int32)
  return {"strokes": batch, "images": images, "labels": labels, "scale": np.float32(scale),
          "dropped": np.int64(dropped),
          "source_index": kept}
