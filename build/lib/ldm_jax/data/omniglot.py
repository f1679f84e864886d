"""Omniglot (Lake et al. 2015): all 32,460 drawings of the background + evaluation sets as a TF-free TFDS dataset.

Each record holds one drawing resized with antialiasing to the config's size, strokes = 255 on 0, with its
alphabet, global character index (0..1622, from the file name prefix), drawer (1..20), and its strokes
(absolute (x, y, pen_end) in 105-px image coordinates) where the stroke archives have them.

Splits (`SPLITS`): Lake's `background` / `evaluation` (the TFDS splits); the paper's `paper_train` / `paper_test`
(characters 01-03 of every alphabet are test, A.1 and the authors' "weak" split); Vinyals' `vinyals_{train,val,test}`
whose classes are (character, rotation) pairs read from the split files.
"""

from __future__ import annotations

import io
import pathlib
import re
import zipfile

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from ldm_jax.data import sources
from ldm_jax.data.archive_builder import ArchiveBuilder

SIZES = (28, 48, 50, 105)
_MEMBER = re.compile(sources.OMNIGLOT_MEMBER)
N_CHARACTERS = 1623
PAPER_TEST_CHARACTERS = (1, 2, 3)


def _read_stroke_file(text: str) -> np.ndarray:
  """Lake's stroke txt (`START`, rows `x,y,t_ms`, `BREAK` after each stroke) → absolute [N, 3] (x, y_down, end)."""
  strokes, current = [], []
  for line in text.splitlines():
    line = line.strip()
    if line == "BREAK":
      if current:
        strokes.append(np.array(current, np.float32))
      current = []
    elif line and line != "START":
      x, y, _ = line.split(",")
      current.append((float(x), -float(y)))  # files store y upwards
  if current:
    strokes.append(np.array(current, np.float32))
  from ldm_jax.data.strokes import polylines_to_absolute
  return polylines_to_absolute(strokes)


def _load_strokes(root) -> dict[str, np.ndarray]:
  """Stroke arrays keyed by 'XXXX_YY' for every drawing in the stroke archives that are present."""
  out = {}
  for archive in sources.OMNIGLOT_STROKES:
    try:
      path = sources.fetch(archive, root)
    except sources.DataError:
      continue  # strokes are optional: only two labelled subsets exist
    with zipfile.ZipFile(path) as zf:
      for name in zf.namelist():
        if name.endswith(".txt") and "__MACOSX" not in name:
          out[pathlib.PurePath(name).stem] = _read_stroke_file(zf.read(name).decode())
  return out


def decode_png(data: bytes, size: int) -> np.ndarray:
  """Omniglot PNG (mode '1', black strokes on white) → uint8 [size, size], strokes = 255 on 0, antialiased."""
  ink = 255 - np.asarray(Image.open(io.BytesIO(data)).convert("L"), np.uint8)
  img = Image.fromarray(ink)
  if size != img.size[0]:
    img = img.resize((size, size), Image.Resampling.BILINEAR)  # PIL's bilinear filter antialiases when shrinking
  return np.asarray(img, np.uint8)


class OmniglotConfig(tfds.core.BuilderConfig):

  def __init__(self, *, size: int, **kwargs):
    super().__init__(name=f"size{size}", description=f"{size}x{size} images", **kwargs)
    self.size = size


class OmniglotFull(ArchiveBuilder):
  """Full Omniglot, images at one size per config, strokes where available."""

  BUILDER_CONFIGS = [OmniglotConfig(size=s) for s in SIZES]
  DEFAULT_CONFIG_NAME = "size48"

  HOMEPAGE = "https://github.com/brendenlake/omniglot"

  def features(self):
    s = self.builder_config.size
    return tfds.features.FeaturesDict({
        "image": tfds.features.Tensor(shape=(s, s), dtype=np.uint8),
        "alphabet": tfds.features.Text(),
        "character": tfds.features.Tensor(shape=(), dtype=np.int32),
        "character_in_alphabet": tfds.features.Tensor(shape=(), dtype=np.int32),
        "drawer": tfds.features.Tensor(shape=(), dtype=np.int32),
        "strokes": tfds.features.Tensor(shape=(None, 3), dtype=np.float32),
    })

  def _split_generators(self, dl_manager):
    del dl_manager  # archives come from the data dir (and are downloaded there by `sources.fetch`)
    strokes = _load_strokes(self._raw_dir)
    return {
        "background": self._generate_examples(sources.fetch(sources.OMNIGLOT_BACKGROUND, self._raw_dir), strokes),
        "evaluation": self._generate_examples(sources.fetch(sources.OMNIGLOT_EVALUATION, self._raw_dir), strokes),
    }

  def _generate_examples(self, path, strokes):
    size = self.builder_config.size
    empty = np.zeros((0, 3), np.float32)
    with zipfile.ZipFile(path) as zf:
      for name in sorted(zf.namelist()):
        m = _MEMBER.search(name)
        if not m:
          continue
        _, alphabet, char_in_alpha, char, drawer = m.groups()
        stem = f"{char}_{drawer}"
        yield stem, {
            "image": decode_png(zf.read(name), size),
            "alphabet": alphabet,
            "character": np.int32(int(char) - 1),
            "character_in_alphabet": np.int32(int(char_in_alpha)),
            "drawer": np.int32(int(drawer)),
            "strokes": strokes.get(stem, empty),
        }


# ---------------------------------------------------------------------------------------------------------------
# Splits derived from the metadata of the full set.

SPLITS = ("all", "background", "evaluation", "paper_train", "paper_test", "vinyals_train", "vinyals_val",
          "vinyals_test")


def _vinyals_classes(split: str, root) -> list[tuple[str, int, int]]:
  """(alphabet, character_in_alphabet, rotation°) per class, in file order."""
  path = sources.fetch(sources.VINYALS_SPLITS[split], root)
  out = []
  for line in path.read_text().split():
    alphabet, char, rot = line.split("/")
    out.append((alphabet, int(char.removeprefix("character")), int(rot.removeprefix("rot"))))
  return out


def select_split(meta: dict[str, np.ndarray], split: str, root=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Rows, class labels (0..C-1 in the split) and rotations (k·90°) of a named split.

  Args:
    meta: per-drawing arrays `alphabet` (str), `character`, `character_in_alphabet`, `lake_set` (0 background,
      1 evaluation).
  """
  if split not in SPLITS:
    raise ValueError(f"unknown omniglot split {split!r}; choose one of {SPLITS}")
  char = meta["character"]
  if split.startswith("vinyals_"):
    key_to_rows: dict[tuple[str, int], np.ndarray] = {}
    for i, key in enumerate(zip(meta["alphabet"], meta["character_in_alphabet"])):
      key_to_rows.setdefault((str(key[0]), int(key[1])), []).append(i)
    rows, labels, rots = [], [], []
    for label, (alphabet, c, rot) in enumerate(_vinyals_classes(split.removeprefix("vinyals_"), root)):
      r = key_to_rows[(alphabet, c)]
      rows += r
      labels += [label] * len(r)
      rots += [rot // 90] * len(r)
    return np.array(rows), np.array(labels, np.int32), np.array(rots, np.int32)
  if split == "all":
    mask = np.ones_like(char, bool)
  elif split in ("background", "evaluation"):
    mask = meta["lake_set"] == (split == "evaluation")
  else:
    is_test = np.isin(meta["character_in_alphabet"], PAPER_TEST_CHARACTERS)
    mask = is_test if split == "paper_test" else ~is_test
  rows = np.flatnonzero(mask)
  _, labels = np.unique(char[rows], return_inverse=True)
  return rows, labels.astype(np.int32), np.zeros(len(rows), np.int32)
