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


REGULARIZER_COLORS = {"kl": "tab:blue", "vq": "tab:orange", "classification": "tab:green",
                      "prototype": "tab:red", "simclr": "tab:purple", "barlow": "tab:brown"}


def write_originality_recognizability(path: pathlib.Path, points: list[dict], fits: dict | None = None,
                                      title: str | None = None) -> None:
  """Fig. 3/4 layout: normalised originality (x) vs recognizability (y), one point per model.

  points: dicts with 'name', 'kind' ('human' | 'ldm' | 'pixel' | 'samples'), 'regularizer' ('none' for the
  non-regularised LDM, '+'-joined for combinations), 'originality_norm', 'recognizability', 'closest' (bool: the
  regularizer's model nearest to humans, drawn larger), 'diverged' (bool: drawn as a red cross). fits: regularizer → (originality curve, recognizability
  curve) in increasing β, drawn as a line with an arrow at the high-β end.
  """
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5.2, 4.2))
  for reg, (xs, ys) in (fits or {}).items():
    color = REGULARIZER_COLORS.get(reg, "gray")
    ax.plot(xs, ys, color=color, alpha=0.6, lw=1.2)
    ax.annotate("", xy=(xs[-1], ys[-1]), xytext=(xs[-2], ys[-2]),
                arrowprops={"arrowstyle": "->", "color": color, "alpha": 0.8})
  labelled = set()
  for p in points:
    x, y = p["originality_norm"], p["recognizability"]
    if p["kind"] == "human":
      ax.scatter([x], [y], marker="*", s=260, c="gold", edgecolors="k", zorder=5, label="humans")
      continue
    if p.get("diverged"):   # a model whose training diverged: shown, but never as a result
      style = {"marker": "x", "c": "red", "label": "diverged (not a trained model)"}
    elif p["kind"] == "pixel":
      style = {"marker": "s", "c": "gray", "label": "pixel-space DDPM"}
    elif p["regularizer"] == "none":
      style = {"marker": "D", "c": "k", "label": "non-regularised LDM"}
    elif p["kind"] == "samples":
      style = {"marker": "^", "c": "tab:cyan", "label": p["name"]}
    else:
      reg = p["regularizer"]
      style = {"marker": "o", "c": REGULARIZER_COLORS.get(reg, "tab:olive"), "label": reg}
    if style["label"] in labelled:
      style.pop("label")
    else:
      labelled.add(style["label"])
    edge = {} if p.get("diverged") else {"edgecolors": "k", "linewidths": 0.4}
    ax.scatter([x], [y], s=110 if p.get("closest") else 35, zorder=4, **edge, **style)
  ax.set_xlabel("originality (normalised)")
  ax.set_ylabel("recognizability")
  ax.set_xlim(-0.05, 1.05)
  ax.legend(fontsize=7, loc="best")
  if title:
    ax.set_title(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_importance_overlays(path: pathlib.Path, exemplars: np.ndarray, maps: dict[str, np.ndarray],
                              category_names: list[str]) -> None:
  """Fig. 5a layout: one column per category, one row per source (humans first); each map (min-max scaled) over
  the category's exemplar, hot = important."""
  import matplotlib.pyplot as plt
  rows, cols = len(maps), len(category_names)
  fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.8, rows * 0.85), squeeze=False)
  for r, (name, m) in enumerate(maps.items()):
    for c in range(cols):
      ax = axes[r, c]
      ax.imshow(1.0 - exemplars[c], cmap="gray", vmin=0, vmax=1)
      v = m[c] - m[c].min()
      ax.imshow(v / max(v.max(), 1e-12), cmap="jet", alpha=0.5)
      ax.set_xticks([]), ax.set_yticks([])
      if r == 0:
        ax.set_title(category_names[c], fontsize=5)
    axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
