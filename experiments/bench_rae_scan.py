"""One RAE's training epoch as a `lax.scan` vs a Python loop of jitted steps, per convolution implementation.

    python experiments/bench_rae_scan.py [--quick]

XLA:CPU runs autodiff's convolutions slowly inside loops; this separates that in-scan penalty (ratio < 1 for
'xla') from the speed of each implementation's kernels. One JSON line per implementation: baseline = the loop of
jitted steps, candidate = the scanned epoch (same model, data, steps). With torch installed (the `bench` extra), one
more line per implementation: the scanned epoch vs the PyTorch step of experiments/torch_rae.py on the same drawings.
Every epoch of every side is timed in interleaved rounds (benchlib.interleaved_seconds), medians reported.
`--variants chunked` adds the `matmul` epoch as it was before a change (baseline) against today's (candidate):
'chunked' chunks every large GEMM-convolution intermediate whatever the cache (`layers.LLC_BYTES = 0`).
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
from bench_rae import torch_epoch, torch_threads
from benchlib import emit, interleaved_seconds

from configs import rae as rae_config
from ldm_jax import data as data_lib
from ldm_jax import rae
from ldm_jax.data import pipeline
from ldm_jax.jobs import rae as rae_job
from ldm_jax.models import layers
from ldm_jax.train import sweep


def runners(cfg, train, data) -> tuple[callable, callable, int]:
  """(scanned epoch, loop of jitted steps, images per call) for one prototype-regularised RAE."""
  n, batch = len(train["labels"]), cfg.train.batch_size
  model = rae.build_model(cfg, int(train["labels"].max()) + 1)
  spe = pipeline.steps_per_epoch(n, batch)
  tx = rae.make_optimizer(cfg, spe)
  state = sweep.init_state(lambda key: model.init(key, jnp.zeros((2, 48, 48, 1)), False), tx, jax.random.PRNGKey(0))
  loss_fn, hparams = rae_job.make_loss_fn(model, cfg), {"beta": jnp.ones(6)}
  epoch = jax.jit(functools.partial(sweep.member_epoch, loss_fn, tx, batch, None))
  step = jax.jit(lambda s, b: sweep.train_step(loss_fn, tx, s, hparams, b))
  batches = [data.gather(pipeline.batch_rows(jnp.arange(n), i, batch)) for i in range(spe)]
  held = {"scan": state, "steps": state}

  def scanned():
    held["scan"], m = epoch(held["scan"], hparams, data)
    return m

  def stepped():
    s = held["steps"]
    for b in batches:
      s, m = step(s, b)
    held["steps"] = s
    return m

  return scanned, stepped, spe * batch


# Each variant's setting holds while its epoch compiles (jit traces on the first call), then is undone.
VARIANTS = {"chunked": (layers, "LLC_BYTES", 0)}


def variant_epoch(name, cfg, train, data):
  """The `matmul` scanned epoch compiled with one earlier choice put back (VARIANTS)."""
  module, attr, value = VARIANTS[name]
  kept = getattr(module, attr)
  setattr(module, attr, value)
  try:
    scanned, _, images = runners(cfg, train, data)
    jax.block_until_ready(scanned())
  finally:
    setattr(module, attr, kept)
  return scanned, images


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--impls", default="im2col,matmul,vjp,xla", help="comma-separated conv implementations")
  parser.add_argument("--variants", default="", help=f"comma-separated, of {sorted(VARIANTS)}: vs scan_matmul")
  args = parser.parse_args()
  impls = args.impls.split(",")
  variants = [v for v in args.variants.split(",") if v]
  if variants and "matmul" not in impls:
    parser.error("--variants compare against the matmul epoch: add matmul to --impls")
  unknown = set(variants) - set(VARIANTS)
  if unknown:
    parser.error(f"unknown --variants {sorted(unknown)}; choose from {sorted(VARIANTS)}")
  cfg = rae_config.get_config("omniglot")
  n = 1280 if args.quick else 5120
  train = data_lib.load_split(cfg, "paper_train", n)
  data = pipeline.to_device(train)
  fns, images = {}, {}
  reference = torch_epoch(train, cfg.train.batch_size)
  if reference is not None:
    fns["torch"], images["torch"] = reference
  for impl in impls:
    c = cfg.copy_and_resolve_references()
    c.rae.conv_impl = impl
    fns[f"scan_{impl}"], fns[f"steps_{impl}"], images[f"scan_{impl}"] = runners(c, train, data)
    images[f"steps_{impl}"] = images[f"scan_{impl}"]
    if variants:   # compiled now, before a variant changes what traces
      jax.block_until_ready(fns[f"scan_{impl}"]())
  for name in variants:
    c = cfg.copy_and_resolve_references()
    c.rae.conv_impl = "matmul"
    fns[f"variant_{name}"], images[f"variant_{name}"] = variant_epoch(name, c, train, data)
  seconds = interleaved_seconds(fns, rounds=3 if args.quick else 5)
  rate = {name: images[name] / seconds[name] for name in fns}
  batch, steps = cfg.train.batch_size, n // cfg.train.batch_size
  for impl in impls:
    emit(f"rae_scan_vs_steps_{impl}", f"loop of jitted steps ({impl})", f"scanned epoch ({impl})", "images/s",
         rate[f"steps_{impl}"], rate[f"scan_{impl}"], batch=batch, steps=steps)
    if reference is not None:
      emit(f"rae_scan_vs_pytorch_{impl}", "PyTorch RAE step (experiments/torch_rae.py)", f"scanned epoch ({impl})",
           "images/s", rate["torch"], rate[f"scan_{impl}"], batch=batch, steps=steps, torch_threads=torch_threads(),
           rounds=3 if args.quick else 5)
  for name in variants:
    emit(f"rae_scan_matmul_vs_{name}", f"scanned epoch (matmul, {name})", "scanned epoch (matmul, today)",
         "images/s", rate[f"variant_{name}"], rate["scan_matmul"], batch=batch, steps=steps)


if __name__ == "__main__":
  main()
