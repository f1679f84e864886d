"""QuickDraw-FS from any Quick, Draw! download (paper A.1 and its reference [30]).

A Quick, Draw! category can hold several visual concepts (analogue and digital alarm clocks, Fig. A.1). QuickDraw-FS
re-forms categories by clustering each category's drawings in the latent space of a contrastive network, one visual
concept per new category, with the drawing at the cluster centre as its exemplar ("prototype").

What [30] leaves open is chosen here and exposed as arguments: k-means (scipy's `kmeans2`, k-means++ seeding) on
L2-normalised embeddings (a contrastive space compares directions); per category the number of clusters k in
2..`max_clusters` with the best mean silhouette, or one cluster when no k reaches `min_silhouette`; clusters of
fewer than `per_class` drawings are dropped; the exemplar is the member nearest the centroid; `per_class` members are
drawn at random (seeded) into the new category. New categories whose source category is held out
(`quickdraw.held_out_categories`, the 60 of 345 matching the paper's 115 of 665) come last, so the file splits like
the official one: classes `[0, test_from)` train, `[test_from, C)` test. `write` saves the official layout
(`data` [C, n, H, W], `prototype` [C, 1, H, W]) plus `test_from`, `source_category`, `rows` and `exemplar_row`,
readable by `quickdraw.load_quickdraw_fs`.
"""

from __future__ import annotations

import pathlib
from typing import Callable

import numpy as np
from scipy.cluster import vq

from ldm_jax.data import quickdraw


def _normalise(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float64)
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def silhouette(features: np.ndarray, labels: np.ndarray) -> float:
  """Mean silhouette (Rousseeuw 1987) with Euclidean distances; singletons score 0."""
  d = np.linalg.norm(features[:, None] - features[None], axis=-1)
  clusters = np.unique(labels)
  if len(clusters) < 2:
    return 0.0
  same = labels[:, None] == labels[None]
  sizes = same.sum(1)
  a = np.where(sizes > 1, (d * same).sum(1) / np.maximum(sizes - 1, 1), 0.0)
  b = np.min(np.stack([np.where(labels == c, np.inf, d[:, labels == c].mean(1)) for c in clusters]), axis=0)
  s = np.where(sizes > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
  return float(s.mean())


def cluster_category(features: np.ndarray, max_clusters: int, min_silhouette: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(labels [n], centroids [k, D]) of one category's normalised embeddings."""
  f = _normalise(features)
  best = (np.zeros(len(f), np.int64), f.mean(0, keepdims=True), min_silhouette)
  for k in range(2, min(max_clusters, len(f) - 1) + 1):
    centroids, labels = vq.kmeans2(f, k, minit="++", seed=np.random.default_rng(seed + k))
    score = silhouette(f, labels)
    if score > best[2]:
      best = (labels, centroids, score)
  return best[0], best[1]


def build(images: np.ndarray, categories: np.ndarray, embed_fn: Callable[[np.ndarray], np.ndarray], *,
          per_class: int = 500, max_clusters: int = 4, min_silhouette: float = 0.1, seed: int = 0,
          held_out: frozenset[str] | None = None, category_names=None) -> dict[str, np.ndarray]:
  """QuickDraw-FS arrays from drawings `images` [N, H, W] uint8 with their category (name or index) [N].

  embed_fn: images [n, H, W] uint8 → embeddings [n, D] (e.g. a trained SimCLR critic's features). held_out: the
  category names whose clusters form the test classes (default: the official held-out list). category_names maps
  integer categories to names (default: the official list).
  """
  categories = np.asarray(categories)
  if np.issubdtype(categories.dtype, np.integer):
    names = np.asarray(category_names if category_names is not None else quickdraw.read_categories())
    categories = names[categories]
  categories = categories.astype(str)
  if held_out is None:
    held_out = quickdraw.held_out_categories(quickdraw.read_categories())
  features = np.asarray(embed_fn(images), np.float64).reshape(len(images), -1)
  rng = np.random.default_rng(seed)
  new = {"train": [], "test": []}
  for ci, cat in enumerate(np.unique(categories)):
    rows = np.flatnonzero(categories == cat)
    if len(rows) < per_class:
      continue
    labels, centroids = cluster_category(features[rows], max_clusters, min_silhouette, seed + 1000 * ci)
    f = _normalise(features[rows])
    for k in range(len(centroids)):
      members = rows[labels == k]
      if len(members) < per_class:
        continue
      centre = np.argmin(np.linalg.norm(f[labels == k] - centroids[k], axis=1))
      chosen = np.sort(rng.choice(members, per_class, replace=False))
      new["test" if cat in held_out else "train"].append((cat, chosen, members[centre]))
  classes = new["train"] + new["test"]
  if not classes:
    raise ValueError(f"no cluster holds per_class={per_class} drawings: lower per_class or add drawings")
  rows = np.stack([c[1] for c in classes])
  exemplar_row = np.array([c[2] for c in classes])
  return {"data": images[rows], "prototype": images[exemplar_row][:, None], "rows": rows,
          "exemplar_row": exemplar_row, "source_category": np.array([c[0] for c in classes]),
          "test_from": np.int64(len(new["train"]))}


def write(path: str | pathlib.Path, built: dict[str, np.ndarray]) -> pathlib.Path:
  """Save as the official npz layout (plus provenance); written to a temporary name first, then renamed."""
  path = pathlib.Path(path)
  tmp = path.with_name(path.name + ".partial.npz")
  np.savez_compressed(tmp, **built)
  tmp.replace(path)
  return path
