"""Figures shared by the jobs: image grids, the originality–recognizability planes (Fig. 3, 4, A.4–A.9) and the
feature-importance figures (Fig. 5)."""

from __future__ import annotations

import pathlib

import matplotlib
import numpy as np

from ldm_jax import regularizer_registry

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


REGULARIZER_COLORS = {name: r.color for name, r in regularizer_registry.REGISTRY.items()}
# Fig. 3's panels: a) "standard", b) supervised, c) contrastive regularizers.
FIG3_PANELS = tuple((f, regularizer_registry.of_family(f)) for f in regularizer_registry.FAMILIES)


def _color(reg: str) -> str:
  return REGULARIZER_COLORS.get(reg, "tab:olive")


def _draw_fit(ax, xs, ys, color) -> None:
  """A parametric curve in increasing β with a chevron at its high-β end (A.5)."""
  ax.plot(xs, ys, color=color, alpha=0.6, lw=1.2)
  ax.annotate("", xy=(xs[-1], ys[-1]), xytext=(xs[-2], ys[-2]),
              arrowprops={"arrowstyle": "->", "color": color, "alpha": 0.8})


def _draw_plane(ax, points: list[dict], fits: dict) -> None:
  for reg, (_, xs, ys) in fits.items():
    _draw_fit(ax, xs, ys, _color(reg))
  labelled = set()
  for p in points:
    x, y = p["originality_norm"], p["recognizability"]
    if p["kind"] == "human":
      ax.scatter([x], [y], marker="*", s=260, c="gold", edgecolors="k", zorder=5, label="humans")
      continue
    if p.get("diverged"):   # a model whose training diverged: shown, but never as a result
      style = {"marker": "x", "c": "red", "label": "diverged (not a trained model)"}
    elif p["kind"] == "pixel":
      style = {"marker": "X", "c": "gray", "label": "pixel-space DDPM"}
    elif p["regularizer"] == "none":
      style = {"marker": "h", "c": "k", "label": "non-regularised LDM"}
    elif p["kind"] == "samples":
      style = {"marker": "^", "c": "tab:cyan", "label": p["name"]}
    else:
      style = {"marker": "o", "c": _color(p["regularizer"]), "label": p["regularizer"]}
    if style["label"] in labelled:
      style.pop("label")
    else:
      labelled.add(style["label"])
    edge = {} if p.get("diverged") else {"edgecolors": "k", "linewidths": 0.4}
    ax.scatter([x], [y], s=110 if p.get("closest") else 35, zorder=4, **edge, **style)
  ax.set_xlabel("originality (normalised)")
  ax.set_ylabel("recognizability")
  ax.set_xlim(-0.05, 1.05)
  ax.legend(fontsize=6, loc="best")


def write_originality_recognizability(path: pathlib.Path, points: list[dict], fits: dict | None = None,
                                      title: str | None = None) -> None:
  """Every point on one plane (Fig. 4 for combinations): normalised originality (x) vs recognizability (y).

  points: dicts with 'name', 'kind' ('human' | 'ldm' | 'pixel' | 'samples'), 'regularizer' ('none' for the
  non-regularised LDM, '+'-joined for combinations), 'originality_norm', 'recognizability', 'closest' (bool: the
  regularizer's model nearest to humans, drawn larger), 'diverged' (bool: a red cross). fits: regularizer →
  (log10 β grid, originality curve, recognizability curve) in increasing β, drawn with a chevron at the high-β end.
  Markers as the paper: a hexagon for the non-regularised LDM, a cross for the pixel-space DDPM.
  """
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5.2, 4.2))
  _draw_plane(ax, points, fits or {})
  if title:
    ax.set_title(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _shared(p: dict) -> bool:
  """Points drawn on every panel: humans, the non-regularised LDM, the pixel baseline, sample files."""
  return p["kind"] in ("human", "pixel", "samples") or p["regularizer"] == "none"


def write_fig3(path: pathlib.Path, points: list[dict], fits: dict, title: str | None = None) -> None:
  """Fig. 3: three originality–recognizability panels, a) KL and VQ, b) classification and prototype, c) SimCLR and
  Barlow, each with its regularizers' points and parametric fits and the shared references."""
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.2), sharey=True)
  for ax, (letter, (family, regs)) in zip(axes, zip("abc", FIG3_PANELS)):
    _draw_plane(ax, [p for p in points if _shared(p) or p["regularizer"] in regs],
                {r: f for r, f in fits.items() if r in regs})
    ax.set_title(f"{letter}) {family}: {' / '.join(regs)}", fontsize=9)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_beta_panels(path: pathlib.Path, regularizer: str, points: list[dict], fit=None) -> None:
  """Fig. A.4–A.9 for one regularizer: a) the originality–recognizability plane with the oriented fit, b) log10 β
  against originality and c) against recognizability, each with its degree-2 fit. points: the regularizer's
  models (β > 0) plus the shared references; fit: (log10 β grid, originality curve, recognizability curve)."""
  import matplotlib.pyplot as plt
  color = _color(regularizer)
  fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.0))
  _draw_plane(axes[0], points, {regularizer: fit} if fit is not None else {})
  axes[0].set_title(f"a) {regularizer}", fontsize=9)
  models = [p for p in points if p["regularizer"] == regularizer and p["kind"] == "ldm" and p["beta"] > 0]
  for ax, key, letter in ((axes[1], "originality_norm", "b"), (axes[2], "recognizability", "c")):
    ok = [p for p in models if not p.get("diverged")]
    ax.scatter([np.log10(p["beta"]) for p in ok], [p[key] for p in ok], c=color, edgecolors="k",
               linewidths=0.4, s=[110 if p.get("closest") else 35 for p in ok], zorder=4)
    bad = [p for p in models if p.get("diverged")]
    ax.scatter([np.log10(p["beta"]) for p in bad], [p[key] for p in bad], marker="x", c="red")
    for p in points:
      if p["kind"] == "human":
        ax.axhline(p[key], color="goldenrod", ls="--", lw=1, label="humans")
      elif p["regularizer"] == "none" and p["kind"] == "ldm":
        ax.axhline(p[key], color="k", ls=":", lw=1, label="non-regularised LDM")
    if fit is not None:
      t, curve = fit[0], fit[1] if key == "originality_norm" else fit[2]
      _draw_fit(ax, t, curve, color)
    ax.set_xlabel(f"log10 β ({regularizer})")
    ax.set_ylabel(key.replace("_norm", " (normalised)"))
    ax.set_title(f"{letter}) β vs {key.replace('_norm', '')}", fontsize=9)
    ax.legend(fontsize=6, loc="best")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_importance_bars(path: pathlib.Path, spearman: dict[str, dict], human_consistency: float,
                          wilcoxon: dict[str, dict[str, float]], baseline: str | None = None) -> None:
  """Fig. 5b: mean Spearman correlation with the human maps per model (error bar: std over categories), the
  human split-half consistency as a dashed line, the non-regularised LDM (`baseline`) as a black line, and stars
  over each bar for the one-sided Wilcoxon test against the baseline (*** p < 1e-3, * p < 5e-2)."""
  import matplotlib.pyplot as plt
  names = [n for n in spearman if n != baseline]
  means = [spearman[n]["mean"] for n in names]
  stds = [spearman[n]["std"] for n in names]
  fig, ax = plt.subplots(figsize=(max(3.0, 0.9 * len(names) + 1.5), 3.6))
  ax.bar(range(len(names)), means, yerr=stds, capsize=3, color="tab:gray", edgecolor="k")
  ax.axhline(human_consistency, color="k", ls="--", lw=1, label=f"human consistency ({human_consistency:.2f})")
  if baseline is not None:
    ax.axhline(spearman[baseline]["mean"], color="k", lw=1.5, label=f"{baseline} (no regularizer)")
    for i, n in enumerate(names):
      p = wilcoxon.get(n, {}).get(baseline)
      stars = "***" if p is not None and p < 1e-3 else "*" if p is not None and p < 5e-2 else ""
      if stars:
        ax.text(i, means[i] + stds[i] + 0.01, stars, ha="center", fontsize=8)
  ax.set_xticks(range(len(names)))
  ax.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
  ax.set_ylabel("Spearman with human maps")
  ax.legend(fontsize=6, loc="lower right")
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
