"""The 2D toy of the RS-IMLE paper (Fig. 2/5): IMLE vs RS-IMLE on 20 points of a figure 8.

    python experiments/imle_toy.py [--iterations 300] [--out experiments/figures/imle_toy.png]

Prints one JSON line per method (coverage gap: mean distance from fresh prior latents to the nearest latent
trained on in the last 100 selections; off-data: mean distance from fresh samples to the nearest data point) and
draws the data, fresh samples and the selected latents in latent space, as the paper's figures.
"""

from __future__ import annotations

import argparse
import json

import matplotlib
import numpy as np

from ldm_jax.imle import toy

matplotlib.use("Agg")


def train(epsilon: float, iterations: int):
  out = toy.train_toy(epsilon, iterations)
  stats = {"method": "RS-IMLE" if epsilon else "IMLE", "epsilon": epsilon, "iterations": iterations,
           "coverage_gap": out["coverage_gap"], "off_data": out["off_data"],
           "final_loss": float(out["records"][-1]["loss"]),
           "rejected_fraction": float(out["records"][-1]["rejected_fraction"])}
  return stats, out["data"], out["samples"][:400], out["trained_on"]


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--iterations", type=int, default=300)
  p.add_argument("--epsilon", type=float, default=0.1)
  p.add_argument("--out", default="experiments/figures/imle_toy.png")
  a = p.parse_args()
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(2, 2, figsize=(7, 6.5))
  for col, eps in enumerate((0.0, a.epsilon)):
    stats, data, samples, trained_on = train(eps, a.iterations)
    print(json.dumps(stats))
    ax = axes[0, col]
    ax.scatter(samples[:, 0], samples[:, 1], s=4, c="orange", label="samples")
    ax.scatter(data[:, 0], data[:, 1], s=30, marker="s", c="green", label="data")
    ax.set_title(f"{stats['method']}: samples (off-data {stats['off_data']:.3f})", fontsize=9)
    ax = axes[1, col]
    ax.scatter(trained_on[:, 0], trained_on[:, 1], s=2, c=np.tile(np.arange(20), len(trained_on) // 20),
               cmap="tab20")
    ax.add_patch(plt.Circle((0, 0), 2.0, fill=False, ls="--", color="gray"))
    ax.set_xlim(-3, 3), ax.set_ylim(-3, 3), ax.set_aspect("equal")
    ax.set_title(f"latents trained on (coverage gap {stats['coverage_gap']:.3f})", fontsize=9)
  axes[0, 0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(a.out, dpi=110)


if __name__ == "__main__":
  main()
