"""The data layer: TF-free TFDS datasets built from the raw archives, and numpy views of their splits.

    from ldm_jax import data
    split = data.load("omniglot", "paper_train", image_size=48)   # dict of numpy arrays
    split["images"].shape, split["labels"].shape, split["exemplar_index"].shape

Datasets: `omniglot` (options: image_size, with_strokes), `quickdraw` (variant='raw'|'simplified'),
`quickdraw_bitmap`, `clickme`, `quickdraw_fs` (the paper's npz, official or built by `python -m ldm_jax.data
quickdraw_fs`, at <data dir>/quickdraw_fs/all_qd_fs_shuffled.npz): one `Dataset` row each in `REGISTRY` (its
builder, splits, reader and few-shot sets). The device-resident pipeline is in `ldm_jax.data.pipeline`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import logging
import pathlib
from typing import Any, Callable, Optional

import numpy as np

from ldm_jax.data import sources
from ldm_jax.data.exemplars import select_exemplars
from ldm_jax.data.sources import DataError

QUICKDRAW_FS_FILE = "quickdraw_fs/all_qd_fs_shuffled.npz"   # the official file's name, under the data dir
_READ_CHUNK = 4096


def tfds_quiet() -> None:
  """TFDS progress bars would drown the logs of a build that takes seconds."""
  import tensorflow_datasets as tfds
  tfds.disable_progress_bar()


def builder(name: str, *, data_dir: Optional[str] = None, build_dir: Optional[str] = None, image_size: int = 48,
            variant: str = "simplified"):
  """The TFDS builder of a dataset (not yet prepared)."""
  ds = dataset(name)
  if ds.tfds_builder is None:
    raise ValueError(f"{name} is a file, not a TFDS dataset")
  kwargs = dict(raw_dir=data_dir, data_dir=str(sources.build_dir(build_dir)), file_format="array_record")
  return ds.tfds_builder(image_size=image_size, variant=variant, **kwargs)


def data_source(name: str, **options):
  """`as_data_source()` of the prepared dataset (built from the raw archives on first use).

  Concurrent processes (test workers, hosts) build a dataset once: the build holds a file lock in the build dir,
  and the builder is made only once the lock is held, so a process that waited reads the finished dataset (a
  builder made before the build would keep the empty split list it saw). A build killed part-way leaves
  `incomplete.*` directories; they are removed before the next build, under the same lock.
  """
  import fcntl
  tfds_quiet()
  root = sources.build_dir(options.get("build_dir"))
  root.mkdir(parents=True, exist_ok=True)
  with open(root / ".build.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      b = builder(name, **options)
      _remove_incomplete(pathlib.Path(b.data_dir).parent)
      if not pathlib.Path(b.data_dir, "dataset_info.json").exists():
        logging.getLogger(__name__).info("building %s into %s (once)", name, b.data_dir)
      with contextlib.redirect_stdout(io.StringIO()):   # TFDS prints "Downloading ... Unknown size" for local builds
        b.download_and_prepare()
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)
  return b.as_data_source()


def _remove_incomplete(version_parent: pathlib.Path) -> None:
  """Deletes what a killed TFDS build left beside the version directory (`incomplete.<id>_<version>`)."""
  import shutil
  if version_parent.is_dir():
    for debris in version_parent.glob("incomplete.*"):
      shutil.rmtree(debris, ignore_errors=True)


def _read_all(source, keys: tuple[str, ...]) -> dict[str, list]:
  out = {k: [] for k in keys}
  for start in range(0, len(source), _READ_CHUNK):
    for rec in source.__getitems__(list(range(start, min(start + _READ_CHUNK, len(source))))):
      for k in keys:
        out[k].append(rec[k])
  return out


def _stack(values: list) -> np.ndarray:
  if values and isinstance(values[0], bytes):
    return np.array([v.decode() for v in values])
  return np.stack(values) if values else np.zeros((0,))


def _ragged(values: list) -> np.ndarray:
  out = np.empty(len(values), dtype=object)
  out[:] = values
  return out


@functools.lru_cache(maxsize=8)
def _omniglot_table(data_dir, build_dir, image_size, with_strokes):
  ds = data_source("omniglot", data_dir=data_dir, build_dir=build_dir, image_size=image_size)
  keys = ("image", "alphabet", "character", "character_in_alphabet", "drawer") + (("strokes",) if with_strokes else ())
  parts = []
  for lake_set, split in enumerate(("background", "evaluation")):
    cols = _read_all(ds[split], keys)
    table = {k: (_ragged(v) if k == "strokes" else _stack(v)) for k, v in cols.items()}
    table["lake_set"] = np.full(len(cols["image"]), lake_set, np.int32)
    parts.append(table)
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _finish(images, labels, extra: dict[str, Any], exemplar_space: str) -> dict[str, Any]:
  out = {"images": images, "labels": labels.astype(np.int32), **extra}
  if exemplar_space:
    out["exemplar_index"] = select_exemplars(images, labels, space=exemplar_space)
  return out


def _load_omniglot(split, *, data_dir, build_dir, image_size, with_strokes, exemplar_space, **_):
  from ldm_jax.data import omniglot
  table = _omniglot_table(data_dir, build_dir, image_size, with_strokes)
  rows, labels, rotations = omniglot.select_split(table, split, data_dir)
  images = table["image"][rows]
  for k in (1, 2, 3):  # Vinyals' rotated classes; np.rot90 turns counter-clockwise like PIL.rotate
    sel = rotations == k
    images[sel] = np.rot90(images[sel], k=k, axes=(1, 2))
  extra = {k: table[k][rows] for k in ("alphabet", "character", "character_in_alphabet", "drawer")}
  extra["rotation"] = rotations * 90
  if with_strokes:
    extra["strokes"] = table["strokes"][rows]
  return _finish(images, labels, extra, exemplar_space)


def _load_quickdraw_fs(split, *, data_dir, exemplar_space, **_):
  from ldm_jax.data import quickdraw
  path = sources.data_dir(data_dir) / QUICKDRAW_FS_FILE
  if not path.exists():
    raise DataError(f"no QuickDraw-FS file at {path}: put the official all_qd_fs_shuffled.npz there, or build one "
                    f"with `python -m ldm_jax.data quickdraw_fs --critics_workdir=<SimCLR critics>`")
  fs = quickdraw.load_quickdraw_fs(path, split)
  classes = len(fs["exemplars"])
  # The prototypes are drawings of their class: one more row per class, which is the class's exemplar.
  images = np.concatenate([fs["images"], fs["exemplars"]])
  labels = np.concatenate([fs["labels"], np.arange(classes, dtype=np.int32)])
  out = {"images": images, "labels": labels, "class_names": fs["classes"]}
  if exemplar_space:
    out["exemplar_index"] = len(fs["images"]) + np.arange(classes)
  return out


def _tfds_table_loader(name: str, keys: tuple[str, ...], category_key: str, by_category_split: bool):
  """A loader for the QuickDraw-family TFDS tables (one TFDS split; the paper's splits are sets of categories)."""
  def load_table(split, *, data_dir, build_dir, variant, with_strokes, exemplar_space, **_):
    src = data_source(name, data_dir=data_dir, build_dir=build_dir, variant=variant)["train"]
    cols = _read_all(src, keys + (("strokes",) if with_strokes and name == "quickdraw" else ()))
    table = {k: (_ragged(v) if k == "strokes" else _stack(v)) for k, v in cols.items()}
    if by_category_split and split != "all":
      from ldm_jax.data import quickdraw
      rows = quickdraw.category_rows(table["category"], split, data_dir)
      table = {k: v[rows] for k, v in table.items()}
    names, labels = np.unique(table[category_key], return_inverse=True)
    images = table.pop("image")
    table["class_names"] = names
    return _finish(images, labels, table, exemplar_space)
  return load_table


def _omniglot_splits():
  from ldm_jax.data import omniglot
  return omniglot.SPLITS


def _category_splits():
  from ldm_jax.data import quickdraw
  return quickdraw.CATEGORY_SPLITS


def _omniglot_builder(image_size, variant, **kwargs):
  from ldm_jax.data import omniglot
  if image_size not in omniglot.SIZES:
    raise ValueError(f"omniglot image_size must be one of {omniglot.SIZES}, got {image_size}")
  return omniglot.OmniglotFull(config=f"size{image_size}", **kwargs)


def _quickdraw_builder(image_size, variant, **kwargs):
  from ldm_jax.data import quickdraw
  return quickdraw.QuickdrawStrokes(config=variant, **kwargs)


def _quickdraw_bitmap_builder(image_size, variant, **kwargs):
  from ldm_jax.data import quickdraw
  return quickdraw.QuickdrawBitmap28(**kwargs)


def _clickme_builder(image_size, variant, **kwargs):
  from ldm_jax.data import clickme
  return clickme.ClickmeQuickdraw(**kwargs)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """One dataset of the data layer: how it is built, which splits it has, how a split is read, and what a
  few-shot set of it is (IMLE trains on one: a column whose value names the set, or a class name)."""
  name: str
  splits: Callable[[], tuple[str, ...]]
  read: Callable[..., dict[str, Any]]            # (split, **options) → the arrays of `load`
  tfds_builder: Optional[Callable[..., Any]]     # (image_size, variant, **TFDS kwargs) → builder; None: a file
  set_column: str = ""                           # e.g. 'alphabet'; '' = a class (by `class_names`)


REGISTRY: dict[str, Dataset] = {d.name: d for d in (
    Dataset("omniglot", _omniglot_splits, _load_omniglot, _omniglot_builder, set_column="alphabet"),
    Dataset("quickdraw", _category_splits,
            _tfds_table_loader("quickdraw", ("image", "category", "key_id", "recognized"), "category", True),
            _quickdraw_builder),
    Dataset("quickdraw_bitmap", _category_splits,
            _tfds_table_loader("quickdraw_bitmap", ("image", "category"), "category", True), _quickdraw_bitmap_builder),
    Dataset("clickme", lambda: ("all",),
            _tfds_table_loader("clickme", ("image", "label", "category", "heatmap", "heatmap_half_a",
                                           "heatmap_half_b", "n_sessions", "n_clicks"), "label", False),
            _clickme_builder),
    Dataset("quickdraw_fs", lambda: ("all", "train", "test"), _load_quickdraw_fs, None),
)}
DATASETS = tuple(REGISTRY)


def dataset(name: str) -> Dataset:
  if name not in REGISTRY:
    raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
  return REGISTRY[name]


def load(name: str, split: str = "all", *, data_dir: Optional[str] = None, build_dir: Optional[str] = None,
         image_size: int = 48, variant: str = "simplified", with_strokes: bool = False,
         exemplar_space: str = "pixels") -> dict[str, Any]:
  """Numpy arrays of one split: `images` uint8 [N, H, W] (strokes = 255 on 0), `labels` int32 [N] (0..C-1),
  `exemplar_index` [C] (row of each class's exemplar, or absent when exemplar_space=''), plus per-dataset metadata.
  """
  ds = dataset(name)
  splits = ds.splits()
  if split not in splits:   # before any build or read
    raise ValueError(f"unknown {name} split {split!r}; choose one of {splits}")
  return ds.read(split, data_dir=data_dir, build_dir=build_dir, image_size=image_size, variant=variant,
                 with_strokes=with_strokes, exemplar_space=exemplar_space)


def splits_of(name: str) -> tuple[str, ...]:
  return dataset(name).splits()


def set_rows(name: str, d: dict[str, Any], set_name: str) -> tuple[np.ndarray, list[str]]:
  """(rows of `d` in the few-shot set `set_name`, every set name of `d`): an Omniglot alphabet, a QuickDraw class."""
  column = dataset(name).set_column
  if column:
    return np.flatnonzero(d[column] == set_name), sorted(set(d[column].tolist()))
  names = [str(x) for x in d["class_names"]]
  rows = np.flatnonzero(d["labels"] == names.index(set_name)) if set_name in names else np.array([], np.int64)
  return rows, names


def info(name: str, split: Optional[str] = None, **options) -> dict[str, Any]:
  """Counts of a dataset: drawings, classes, and per split (or of one split)."""
  names = (split,) if split else splits_of(name)
  per_split = {}
  for s in names:
    d = load(name, s, exemplar_space="", **options)
    per_split[s] = {"drawings": int(len(d["labels"])), "classes": int(len(np.unique(d["labels"])))}
  top = per_split[split] if split else per_split.get("all", per_split[names[0]])
  return {"dataset": name, **top, "splits": per_split}


__all__ = ["DATASETS", "REGISTRY", "DataError", "Dataset", "builder", "data_source", "dataset", "info", "load",
           "select_exemplars", "set_rows", "splits_of"]


def load_split(cfg, split: str, limit: int = 0) -> dict[str, Any]:
  """`load` as a job config names it (`cfg.data`): the first `limit` drawings rounded to whole classes (0 = all),
  exemplars re-selected within the subset."""
  dc = cfg.data
  d = load(dc.name, split, data_dir=dc.data_dir or None, build_dir=dc.build_dir or None,
                    image_size=dc.image_size)
  if limit and limit < len(d["labels"]):
    # A prefix of whole classes keeps every kept class complete (exemplars stay inside the subset).
    keep_classes = np.unique(d["labels"][:limit])
    rows = np.flatnonzero(np.isin(d["labels"], keep_classes))
    _, labels = np.unique(d["labels"][rows], return_inverse=True)
    d = {"images": d["images"][rows], "labels": labels.astype(np.int32)}
    d["exemplar_index"] = select_exemplars(d["images"], d["labels"])
  return d
