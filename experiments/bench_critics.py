"""The Omniglot recognizability critic's training epoch (Conv4 prototypical network, 50×50, 60-way 1-shot tasks)
per convolution implementation, against XLA's own convolutions and against PyTorch.

    python experiments/bench_critics.py [--quick]

ldm_jax side: the critics job's own loss (`jobs.critics.make_loss_fn`, protonet) in the generic scanned epoch
(`sweep.member_epoch`), one member, on real Omniglot training drawings. One JSON line per implementation vs 'xla'
when it is among `--impls` (slow on a CPU: XLA:CPU's convolutions inside a scan, minutes per epoch), else vs the
first one; on a CPU with torch installed (the `bench` extra), one line per implementation vs the PyTorch step of
experiments/torch_critic.py (same network, input transform, loss and optimizer) on the same drawings. Every side's
epochs are timed interleaved, round by round (median of 3 rounds with --quick, else 5). `--flax-pool` adds the
first implementation's epoch with flax's windowed `max_pool` put back (baseline) against `layers.max_pool2x2`.
"""

from __future__ import annotations

import argparse
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from bench_rae import torch_epoch, torch_threads
from benchlib import emit, interleaved_seconds

from configs import critics as critics_config
from ldm_jax import critic
from ldm_jax import data as data_lib
from ldm_jax.data import pipeline
from ldm_jax.jobs import critics as critics_job
from ldm_jax.models import critics as critic_models
from ldm_jax.train import sweep


def scanned_epoch(cfg, data) -> tuple[callable, int]:
  """(one scanned protonet epoch, images per call: drawings + exemplars through the critic)."""
  model = critic.build_model(cfg, "protonet")
  batch, size = cfg.train.batch_size, cfg.data.image_size
  tx = critic.make_optimizer(cfg)
  state = sweep.init_state(lambda key: model.init(key, jnp.zeros((2, size, size, 1)), False), tx,
                           jax.random.PRNGKey(0))
  loss_fn = critics_job.make_loss_fn(model, cfg, "protonet")
  epoch = jax.jit(functools.partial(sweep.member_epoch, loss_fn, tx, batch, None))
  held = {"s": state}

  def run():
    held["s"], m = epoch(held["s"], {"member": jnp.arange(1)}, data)
    return m

  return run, 2 * pipeline.steps_per_epoch(data.num_examples, batch) * batch


def flax_pool_epoch(cfg, data) -> tuple[callable, int]:
  """The scanned epoch compiled with flax's windowed max_pool (select-and-scatter gradient) in the Conv4 critic."""
  kept = critic_models.max_pool2x2
  critic_models.max_pool2x2 = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))
  try:
    run, images = scanned_epoch(cfg, data)
    jax.block_until_ready(run())   # compiles now, while the setting holds
  finally:
    critic_models.max_pool2x2 = kept
  return run, images


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--impls", default="matmul,im2col", help="comma-separated conv implementations")
  parser.add_argument("--flax-pool", action="store_true", help="also the first impl with flax's max_pool")
  args = parser.parse_args()
  cfg = critics_config.get_config("omniglot")
  n = 1200 if args.quick else 4800
  train = data_lib.load_split(cfg, cfg.data.split, n)
  data = pipeline.to_device(train)
  batch = cfg.train.batch_size
  fns, images = {}, {}
  reference = torch_epoch(train, batch, "critic")
  if reference is not None:   # drawings + exemplars through the critic
    fns["torch"], images["torch"] = reference[0], 2 * reference[1]
  impls = sorted(args.impls.split(","), key=lambda i: i != "xla")   # 'xla' first: the others are compared to it
  for impl in impls:
    c = cfg.copy_and_resolve_references()
    c.critics.conv_impl = impl
    fns[impl], images[impl] = scanned_epoch(c, data)
  if args.flax_pool:
    c = cfg.copy_and_resolve_references()
    c.critics.conv_impl = impls[0]
    fns["flax_pool"], images["flax_pool"] = flax_pool_epoch(c, data)
  # Every side timed once per round (benchlib.interleaved_seconds): this VM's speed drifts within minutes.
  seconds = interleaved_seconds(fns, rounds=3 if args.quick else 5)
  rates = {name: images[name] / seconds[name] for name in fns}
  for impl in impls[1:]:
    emit(f"critic_conv_{impl}", f"scanned epoch ({impls[0]} convolutions)", f"scanned epoch ({impl})", "images/s",
         rates[impls[0]], rates[impl], batch=batch, steps=n // batch)
  if args.flax_pool:
    emit(f"critic_pool_{impls[0]}", "scanned epoch, flax max_pool (select-and-scatter gradient)",
         "scanned epoch, layers.max_pool2x2 (reshape + max)", "images/s", rates["flax_pool"], rates[impls[0]],
         batch=batch, steps=n // batch)
  if reference is not None:
    for impl in impls:
      emit(f"critic_vs_pytorch_{impl}", "PyTorch Conv4 protonet step (experiments/torch_critic.py)",
           f"scanned epoch ({impl})", "images/s", rates["torch"], rates[impl], batch=batch, steps=n // batch,
           torch_threads=torch_threads())


if __name__ == "__main__":
  main()
