"""RAE training throughput on real Omniglot: conv implementations, and K-member sweeps vs K sequential runs.

    python experiments/bench_rae.py [--quick]

Results (one JSON line each):
  * rae_conv_<impl>: images/s of one model's training epoch (lax.scan) with each conv implementation vs 'xla'.
  * rae_vs_pytorch_<impl>: the same epoch vs a straightforward PyTorch RAE step (experiments/torch_rae.py), when
    torch is installed (the `bench` extra).
  * rae_sweep_K<k>_<mode>_<impl>[_contrastive]: images/s summed over the K members when they train as one sweep
    ('vmap', 'map' or 'sequential' = one compiled member epoch dispatched K times) vs K separate single-model runs
    (whose total rate is the single-model rate), with/without the SimCLR augmentations.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp

from configs import rae as rae_config
from experiments.benchlib import emit, seconds_per_call
from ldm_jax.data import pipeline
from ldm_jax.train import rae, sweep


def epoch_runner(cfg, train, k: int, sweep_mode: str):
  """(run(), images per call) for a K-member sweep epoch."""
  model = rae.build_model(cfg, int(train["labels"].max()) + 1)
  spe = pipeline.steps_per_epoch(len(train["labels"]), cfg.train.batch_size)
  tx = rae.make_optimizer(cfg, spe)
  init_fn = lambda key: model.init(key, jnp.zeros((2, 48, 48, 1)), False)
  states = sweep.init_sweep(init_fn, tx, sweep.member_keys(0, k))
  betas = jnp.ones((k, 6))
  data = pipeline.to_device(train)
  fn = sweep.make_epoch_fn(rae.make_loss_fn(model, cfg), tx, cfg.train.batch_size, None, sweep_mode)
  holder = {"s": states}

  def run():
    holder["s"], m = fn(holder["s"], {"beta": betas}, data)
    return m

  return run, spe * cfg.train.batch_size * k


def torch_threads() -> int:
  return os.cpu_count() or 1


def torch_throughput(train, batch: int, repeats: int) -> float | None:
  """Images/s of the same model and step in PyTorch (CPU, all cores), over the same drawings; None without torch."""
  try:
    import torch
  except ImportError:
    print("# PyTorch not installed: `pip install -e .[bench]` for the PyTorch reference line", file=sys.stderr)
    return None
  import numpy as np
  import time
  from experiments.torch_rae import TorchRAE, make_step
  torch.set_num_threads(torch_threads())
  torch.manual_seed(0)
  images = torch.from_numpy(np.asarray(train["images"], np.float32)[:, None] / 255.0)
  exemplars = images[torch.from_numpy(np.asarray(train["exemplar_index"])[np.asarray(train["labels"])])]
  model = TorchRAE().train()
  step = make_step(model)
  spe = len(images) // batch
  perm = torch.randperm(len(images))

  def epoch():
    for i in range(spe):
      rows = perm[i * batch:(i + 1) * batch]
      step(images[rows], exemplars[rows])

  epoch()   # warm-up
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    epoch()
    times.append(time.perf_counter() - t)
  return spe * batch / sorted(times)[len(times) // 2]


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true")
  args = parser.parse_args()
  cfg = rae_config.get_config("omniglot")
  n = 256 if args.quick else (2560 if jax.default_backend() == "cpu" else 10240)
  cfg.data.max_train_examples = n
  train = rae.load_split(cfg, "paper_train", n)
  repeats = 1 if args.quick else 3
  on_cpu = jax.default_backend() == "cpu"

  def throughput(k, mode, impl, regs=("prototype",)):
    c = cfg.copy_and_resolve_references()
    c.rae.conv_impl = impl
    c.rae.regularizers = regs
    run, images = epoch_runner(c, train, k, mode)
    return images / seconds_per_call(run, repeats=repeats)  # summed over the K models

  impls = ("xla", "s2d", "matmul", "vjp")
  per_impl = {impl: throughput(1, "vmap", impl) for impl in impls}
  for impl in impls[1:]:
    emit(f"rae_conv_{impl}", "xla convolutions", f"{impl} convolutions", "images/s", per_impl["xla"],
         per_impl[impl], batch=cfg.train.batch_size)
  best = max(per_impl, key=per_impl.get)
  auto = rae.resolve_conv_impl("auto")
  torch_rate = torch_throughput(train, cfg.train.batch_size, repeats)
  if torch_rate is not None:
    for impl in sorted({auto, best}):
      emit(f"rae_vs_pytorch_{impl}", "PyTorch RAE step (experiments/torch_rae.py)",
           f"ldm_jax scanned epoch ({impl})", "images/s", torch_rate, per_impl[impl], batch=cfg.train.batch_size,
           torch_threads=torch_threads())
  ks = (4,) if args.quick else (4, 8)
  modes = ("sequential", "map", "vmap") if on_cpu else ("vmap", "sequential")
  # Under vmap a convolution becomes a grouped convolution, a matmul a batched matmul: measure both layouts.
  sweep_impls = (best,) if on_cpu or best == "matmul" else (best, "matmul")
  for regs, tag in ((("prototype",), ""), (("simclr",), "_contrastive")):
    single = per_impl[best] if not tag else throughput(1, "vmap", best, regs)
    for k in ks:
      for mode in modes:
        for impl in sweep_impls if mode == "vmap" else (best,):
          # K separate runs back to back deliver the single-model rate in total.
          emit(f"rae_sweep_K{k}_{mode}_{impl}{tag}", f"{k} separate runs ({best})",
               f"one {mode} sweep of {k} models ({impl})", "images/s, all models", single,
               throughput(k, mode, impl, regs), conv_impl=impl)


if __name__ == "__main__":
  main()
