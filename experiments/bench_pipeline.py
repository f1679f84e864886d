"""Batches/s of the device-resident sampler vs a plain `as_data_source()` + numpy loop on the same split.

    python experiments/bench_pipeline.py [--quick]

Both produce (image, exemplar, label) triples of Omniglot `paper_train` at batch 128 as float32 on the device.
The candidate samples inside one jitted `lax.scan` (as a training epoch does); the baseline reads records with
`__getitems__`, stacks them in numpy and copies each batch to the device.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from benchlib import emit, seconds_per_call

from ldm_jax import data
from ldm_jax.data import pipeline

BATCH = 128


def baseline_batches_per_s(n_batches: int) -> float:
  source = data.data_source("omniglot", image_size=48)["background"]
  split = data.load("omniglot", "background")
  exemplar_of = split["exemplar_index"][split["labels"]]
  rng = np.random.default_rng(0)
  t = time.perf_counter()
  for _ in range(n_batches):
    rows = rng.choice(len(source), BATCH, replace=False).tolist()
    recs = source.__getitems__(rows)
    images = np.stack([r["image"] for r in recs]).astype(np.float32)[..., None] / 255.0
    ex = source.__getitems__(exemplar_of[rows].tolist())
    exemplars = np.stack([r["image"] for r in ex]).astype(np.float32)[..., None] / 255.0
    batch = jax.device_put({"image": images, "exemplar": exemplars, "label": split["labels"][rows]})
    jax.block_until_ready(batch)
  return n_batches / (time.perf_counter() - t)


def candidate_batches_per_s(n_batches: int) -> float:
  split = pipeline.to_device(data.load("omniglot", "background"))

  @jax.jit
  def consume(split, key):
    def body(acc, step):
      b = pipeline.sample_batch(split, key, step, BATCH)
      return acc + b["image"].sum() + b["exemplar"].sum() + b["label"].sum(), None
    return jax.lax.scan(body, jnp.zeros(()), jnp.arange(n_batches))[0]

  return n_batches / seconds_per_call(consume, split, jax.random.PRNGKey(0))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true")
  args = parser.parse_args()
  base = baseline_batches_per_s(20 if args.quick else 100)
  cand = candidate_batches_per_s(200 if args.quick else 2000)
  emit("pipeline_batches", "as_data_source() + numpy loop", "device-resident sampler in lax.scan", "batches/s",
       base, cand, batch=BATCH)


if __name__ == "__main__":
  main()
