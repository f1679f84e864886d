"""The Omniglot recognizability critic's training epoch (Conv4 prototypical network, 50×50, 60-way 1-shot tasks)
per convolution implementation, against XLA's own convolutions and against PyTorch.

    python experiments/bench_critics.py [--quick]

ldm_jax side: the critics job's own loss (`jobs.critics.make_loss_fn`, protonet) in the generic scanned epoch
(`sweep.member_epoch`), one member, on real Omniglot training drawings. One JSON line per implementation vs 'xla'
when it is among `--impls` (slow on a CPU: XLA:CPU's convolutions inside a scan, minutes per epoch), else vs the
first one; on a CPU with torch installed (the `bench` extra), one line per implementation vs the PyTorch step of
experiments/torch_critic.py (same network, input transform, loss and optimizer) on the same drawings.
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
from bench_rae import torch_threads, torch_throughput
from benchlib import emit, seconds_per_call

from configs import critics as critics_config
from ldm_jax import critic
from ldm_jax import data as data_lib
from ldm_jax.data import pipeline
from ldm_jax.jobs import critics as critics_job
from ldm_jax.train import sweep


def scanned_rate(cfg, data, repeats: int) -> float:
  """Images/s (drawings + exemplars through the critic) of one scanned protonet epoch."""
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

  return 2 * pipeline.steps_per_epoch(data.num_examples, batch) * batch / seconds_per_call(run, repeats=repeats)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--impls", default="matmul,im2col", help="comma-separated conv implementations")
  args = parser.parse_args()
  cfg = critics_config.get_config("omniglot")
  n = 1200 if args.quick else 4800
  train = data_lib.load_split(cfg, cfg.data.split, n)
  data = pipeline.to_device(train)
  repeats = 2 if args.quick else 3
  batch = cfg.train.batch_size
  reference = torch_throughput(train, batch, repeats, "critic")
  reference = None if reference is None else 2 * reference   # drawings + exemplars through the critic
  rates = {}
  impls = sorted(args.impls.split(","), key=lambda i: i != "xla")   # 'xla' first: the others are compared to it
  for impl in impls:
    c = cfg.copy_and_resolve_references()
    c.critics.conv_impl = impl
    rates[impl] = scanned_rate(c, data, repeats)
    if impl != impls[0]:
      emit(f"critic_conv_{impl}", f"scanned epoch ({impls[0]} convolutions)", f"scanned epoch ({impl})", "images/s",
           rates[impls[0]], rates[impl], batch=batch, steps=n // batch)
    if reference is not None:
      emit(f"critic_vs_pytorch_{impl}", "PyTorch Conv4 protonet step (experiments/torch_critic.py)",
           f"scanned epoch ({impl})", "images/s", reference, rates[impl], batch=batch, steps=n // batch,
           torch_threads=torch_threads())


if __name__ == "__main__":
  main()
