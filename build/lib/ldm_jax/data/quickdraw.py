"""QuickDraw (Google, CC BY 4.0): ndjson drawings, 28×28 bitmaps, and the QuickDraw-FS npz of the paper.

* `QuickdrawStrokes` (configs `raw`, `simplified`): every drawing of the ndjson files with its stroke-3 sequence
  (QuickDraw's own normalisation: top-left aligned, longer side scaled to 255) and a 48×48 rasterisation with the
  Omniglot convention (strokes = 255 on 0, antialiased).
* `QuickdrawBitmap`: the 28×28 `numpy_bitmap` images of the three bitmap archives (elicorrales' files are shifted by
  one byte: SOURCES.md), duplicates across archives removed.
* `load_quickdraw_fs(path)`: the official QuickDraw-FS file (`data` [665, n, 48, 48], `prototype` [665, 1, 48, 48];
  classes >= 550 are test) for users who have it.
"""

from __future__ import annotations

import hashlib
import io
import json
import pathlib
import tarfile
import zipfile

import numpy as np
import tensorflow_datasets as tfds

from ldm_jax.data import sources
from ldm_jax.data import strokes as strokes_lib
from ldm_jax.data.archive_builder import ArchiveBuilder

RASTER_SIZE = 48
QUICKDRAW_FS_TEST_FROM = 550
# One-shot generation is judged on categories never seen in training. QuickDraw-FS holds out 115 of its 665
# categories (paper §3); the 345 official Quick, Draw! categories (categories.txt) are split in the same proportion
# (60 held out), the held-out ones being the first by SHA-256 of their name: fixed by the official list, never by
# which categories a download happens to hold.
HELD_OUT = (115, 665)
CATEGORY_SPLITS = ("all", "train", "test")   # every category | training categories | held-out categories


def held_out_categories(official: list[str]) -> frozenset[str]:
  ranked = sorted(official, key=lambda c: hashlib.sha256(c.encode("utf-8")).hexdigest())
  return frozenset(ranked[:round(len(official) * HELD_OUT[0] / HELD_OUT[1])])


def category_rows(categories: np.ndarray, split: str, root=None) -> np.ndarray:
  """Rows of `categories` (one name, or index into the official list, per drawing) in a category split: 'all',
  'train' or 'test' (held out)."""
  if split not in CATEGORY_SPLITS:
    raise ValueError(f"unknown QuickDraw split {split!r}; choose one of {CATEGORY_SPLITS} ('train'/'test' are "
                     f"disjoint sets of categories, 'all' is every category: generation of seen categories)")
  if split == "all":
    return np.arange(len(categories))
  official = read_categories(root)
  categories = np.asarray(categories)
  if np.issubdtype(categories.dtype, np.integer):   # the ndjson builder stores indices into the official list
    categories = np.asarray(official)[categories]
  unknown = sorted(set(np.unique(categories).astype(str)) - set(official))
  if unknown:
    raise ValueError(f"categories {unknown[:5]} are not in the official Quick, Draw! list: no train/test side")
  held = held_out_categories(official)
  mask = np.array([c in held for c in np.asarray(categories).astype(str)], bool)
  rows = np.flatnonzero(mask if split == "test" else ~mask)
  if len(rows) == 0:
    raise ValueError(f"QuickDraw split {split!r} holds none of these {len(np.unique(categories))} categories")
  return rows


def read_categories(root=None) -> list[str]:
  return sources.fetch(sources.QUICKDRAW_CATEGORIES, root).read_text().splitlines()


def parse_drawing(drawing: list) -> np.ndarray:
  """ndjson `drawing` (per stroke [xs, ys] or [xs, ys, ts]) → absolute [N, 3] in QuickDraw's 0..255 frame."""
  lines = [np.stack([np.asarray(s[0], np.float32), np.asarray(s[1], np.float32)], axis=1) for s in drawing]
  return strokes_lib.fit_to_box(strokes_lib.polylines_to_absolute(lines), 255.0)


def iter_ndjson(path: pathlib.Path):
  """Yields (category, record dict) for every line of every ndjson file in the tarball, in sorted order."""
  with tarfile.open(path) as tar:
    members = sorted((m for m in tar.getmembers() if m.name.endswith(".ndjson")), key=lambda m: m.name)
    for m in members:
      category = pathlib.PurePath(m.name).stem
      for line in tar.extractfile(m).read().decode().splitlines():
        if line.strip():
          yield category, json.loads(line)


class QuickdrawStrokesConfig(tfds.core.BuilderConfig):

  def __init__(self, *, variant: str, **kwargs):
    super().__init__(name=variant, description=f"QuickDraw {variant} ndjson", **kwargs)
    self.variant = variant


class QuickdrawStrokes(ArchiveBuilder):
  """QuickDraw ndjson drawings: stroke-3 sequences and 48×48 rasters (strokes = 255 on 0)."""

  BUILDER_CONFIGS = [QuickdrawStrokesConfig(variant=v) for v in ("raw", "simplified")]
  DEFAULT_CONFIG_NAME = "simplified"

  HOMEPAGE = "https://github.com/googlecreativelab/quickdraw-dataset"

  def features(self):
    return tfds.features.FeaturesDict({
        "image": tfds.features.Tensor(shape=(RASTER_SIZE, RASTER_SIZE), dtype=np.uint8),
        "strokes": tfds.features.Tensor(shape=(None, 3), dtype=np.float32),  # stroke-3
        "category": tfds.features.ClassLabel(names=read_categories(self._raw_dir)),
        "key_id": tfds.features.Tensor(shape=(), dtype=np.int64),
        "recognized": tfds.features.Tensor(shape=(), dtype=np.bool_),
    })

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(sources.fetch(sources.QUICKDRAW_NDJSON[self.builder_config.variant],
                                                           self._raw_dir))}

  def _generate_examples(self, path):
    for category, rec in iter_ndjson(path):
      absolute = parse_drawing(rec["drawing"])
      yield f"{category}/{rec['key_id']}", {
          "image": strokes_lib.rasterize_host(absolute, RASTER_SIZE),
          "strokes": strokes_lib.absolute_to_stroke3(absolute),
          "category": category,
          "key_id": np.int64(int(rec["key_id"])),
          "recognized": bool(rec.get("recognized", True)),
      }


def read_bitmap_member(name: str, data: bytes) -> np.ndarray:
  """One bitmap file → uint8 [n, 28, 28] (strokes = 255 on 0, as in numpy_bitmap)."""
  if name.endswith(".npy"):
    return np.load(io.BytesIO(data)).reshape(-1, 28, 28).astype(np.uint8)
  raw = np.frombuffer(data, np.uint8)
  if "elicorrales" in name:
    raw = np.concatenate([raw[1:], np.zeros(1, np.uint8)])  # those files are shifted by one byte (SOURCES.md)
  return raw.reshape(-1, 28, 28)


def _bitmap_category(name: str) -> str:
  stem = pathlib.PurePath(name).name.split(".")[0]
  stem = stem.removesuffix("1000")
  return {"cats": "cat", "rainbows": "rainbow", "trains": "train"}.get(stem, stem)


def read_bitmaps(root=None) -> dict[str, np.ndarray]:
  """Category → unique 28×28 bitmaps over the three archives (first occurrence kept, archive order)."""
  per_cat: dict[str, list[np.ndarray]] = {}
  for archive in sources.QUICKDRAW_BITMAPS:
    with zipfile.ZipFile(sources.fetch(archive, root)) as zf:
      for name in sorted(zf.namelist()):
        if name.endswith((".npy", ".bin")):
          per_cat.setdefault(_bitmap_category(name), []).append(read_bitmap_member(name, zf.read(name)))
  out = {}
  for cat, arrays in sorted(per_cat.items()):
    images = np.concatenate(arrays)
    _, first = np.unique(images.reshape(len(images), -1), axis=0, return_index=True)
    out[cat] = images[np.sort(first)]
  return out


class QuickdrawBitmap28(ArchiveBuilder):
  """28×28 QuickDraw numpy_bitmap images of the three bitmap archives, duplicates removed."""

  def features(self):
    return tfds.features.FeaturesDict({
        "image": tfds.features.Tensor(shape=(28, 28), dtype=np.uint8),
        "category": tfds.features.Text(),
    })

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(read_bitmaps(self._raw_dir))}

  def _generate_examples(self, bitmaps):
    for cat, images in bitmaps.items():
      for i, image in enumerate(images):
        yield f"{cat}/{i:05d}", {"image": image, "category": cat}


def load_quickdraw_fs(path: str | pathlib.Path, split: str = "train") -> dict[str, np.ndarray]:
  """The official QuickDraw-FS npz → images [N, 48, 48] uint8, labels [N], exemplars [C, 48, 48] of one split.

  Classes 0..549 are `train`, 550..664 `test` (paper §3); a file built by `quickdraw_fs.build` says where its test
  classes start (`test_from`); `all` keeps every class.
  """
  with np.load(path) as f:
    data, prototype = f["data"], f["prototype"]
    test_from = int(f["test_from"]) if "test_from" in f else QUICKDRAW_FS_TEST_FROM   # built by quickdraw_fs
  if data.ndim != 4 or prototype.shape[0] != data.shape[0] or prototype.shape[1] < 1:
    raise ValueError(f"{path}: expected data [C, n, H, W] and prototype [C, >=1, H, W], got {data.shape} and "
                     f"{prototype.shape}")
  classes = {"train": np.arange(min(test_from, len(data))),
             "test": np.arange(test_from, len(data)), "all": np.arange(len(data))}[split]

  def to_uint8(x):
    return x.astype(np.uint8) if x.dtype == np.uint8 else np.clip(np.rint(x * 255 if x.max() <= 1 else x), 0,
                                                                    255).astype(np.uint8)

  n = data.shape[1]
  return {
      "images": to_uint8(data[classes]).reshape(-1, *data.shape[2:]),
      "labels": np.repeat(np.arange(len(classes), dtype=np.int32), n),
      "exemplars": to_uint8(prototype[classes, 0]),
      "classes": classes,
  }
