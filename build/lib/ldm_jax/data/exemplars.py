"""One exemplar per class: the drawing closest to the class centre in a feature space (paper §3 and A.1)."""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np


def select_exemplars(images: np.ndarray, labels: np.ndarray, space: str = "pixels",
                     embed_fn: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> np.ndarray:
  """Row index of each class's most central drawing.

  Args:
    images: [N, H, W] drawings.
    labels: [N] class ids 0..C-1.
    space: 'pixels' (intensities in [0, 1]) or 'embedding' (then `embed_fn` maps [n, H, W] → [n, D]).
  Returns:
    [C] int array: for class c, argmin over its rows of ‖f(x) − mean_c f‖₂.
  """
  if space == "pixels":
    feats = images.reshape(len(images), -1).astype(np.float32) / 255.0
  elif space == "embedding":
    if embed_fn is None:
      raise ValueError("exemplar space 'embedding' needs an embed_fn")
    feats = np.asarray(embed_fn(images), np.float32).reshape(len(images), -1)
  else:
    raise ValueError(f"unknown exemplar space {space!r}; use 'pixels' or 'embedding'")
  n_classes = int(labels.max()) + 1 if len(labels) else 0
  counts = np.bincount(labels, minlength=n_classes).astype(np.float32)
  centres = np.zeros((n_classes, feats.shape[1]), np.float32)
  np.add.at(centres, labels, feats)
  centres /= np.maximum(counts, 1)[:, None]
  dist = np.linalg.norm(feats - centres[labels], axis=1)
  # lexsort: by class, then distance; the first row of each class block is its exemplar
  order = np.lexsort((dist, labels))
  first = np.searchsorted(labels[order], np.arange(n_classes))
  return order[first]
