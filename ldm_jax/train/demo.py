"""The demo job: RAE sweep → one-shot scores → a figure of test exemplars and their reconstructions."""

from __future__ import annotations

import json
import logging
import pathlib

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

from ldm_jax.data import pipeline
from ldm_jax.models.rae import RAE
from ldm_jax.train import rae

matplotlib.use("Agg")
log = logging.getLogger(__name__)


def reconstruct(model: RAE, variables, images_u8: np.ndarray) -> np.ndarray:
  x = pipeline.to_float(jnp.asarray(images_u8))
  mean, _ = model.apply(variables, x, False, method=RAE.encode)
  return np.asarray(model.apply(variables, mean, False, method=RAE.decode))[..., 0]


def write_grid(path: pathlib.Path, rows: list[np.ndarray], labels: list[str]) -> None:
  import matplotlib.pyplot as plt
  n = rows[0].shape[0]
  fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.6, len(rows) * 0.7), squeeze=False)
  for r, (images, label) in enumerate(zip(rows, labels)):
    for c in range(n):
      ax = axes[r, c]
      ax.imshow(images[c], cmap="gray", vmin=0, vmax=1)
      ax.set_xticks([]), ax.set_yticks([])
    axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def train_and_evaluate(cfg, workdir: str, resume: bool = False):
  summary = rae.train_and_evaluate(cfg, workdir, resume=resume)
  test = rae.load_split(cfg, cfg.data.eval_split)
  exemplars = test["images"][test["exemplar_index"][: cfg.demo.grid_classes]]
  rows, labels = [exemplars / 255.0], ["exemplar"]
  for i, member in enumerate(summary["members"]):
    model, variables, _ = rae.load_member(workdir, i)
    rows.append(reconstruct(model, variables, exemplars))
    labels.append(member["name"])
  out = pathlib.Path(workdir)
  write_grid(out / "reconstructions.png", rows, labels)
  (out / "demo_metrics.json").write_text(json.dumps(summary, indent=1))
  log.info("wrote %s and %s", out / "reconstructions.png", out / "demo_metrics.json")
  print(json.dumps({m["name"]: round(m["oneshot_accuracy"], 4) for m in summary["members"]}))
  return summary
