"""Figures shared by the jobs: image grids (rows of drawings with a label per row)."""

from __future__ import annotations

import pathlib

import matplotlib
import numpy as np

matplotlib.use("Agg")


def write_grid(path: pathlib.Path, rows: list[np.ndarray], labels: list[str] | None = None,
               title: str | None = None) -> None:
  """rows: each [n, H, W] in [0, 1]; one figure row per entry, ink dark on white like Fig. 2."""
  import matplotlib.pyplot as plt
  n = max(r.shape[0] for r in rows)
  fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.6, len(rows) * 0.65), squeeze=False)
  for r, images in enumerate(rows):
    for c in range(n):
      ax = axes[r, c]
      if c < images.shape[0]:
        ax.imshow(1.0 - images[c], cmap="gray", vmin=0, vmax=1)
      ax.set_xticks([]), ax.set_yticks([])
      for side in ax.spines.values():
        side.set_visible(False)
    if labels:
      axes[r, 0].set_ylabel(labels[r], rotation=0, ha="right", va="center", fontsize=7)
  if title:
    fig.suptitle(title, fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
