"""RAE training throughput on real Omniglot: conv implementations, and K-member sweeps vs K sequential runs.

    python experiments/bench_rae.py [--quick]

Results (one JSON line each):
  * rae_conv_<impl>: images/s of one model's training epoch (lax.scan) with each conv implementation vs 'xla';
    rae_conv_output_side: 'matmul' (output-side GEMMs where they move less, shifted-block ConvTs, batch-chunked)
      vs 'im2col' (im2col everywhere).
  * rae_vs_pytorch_<impl>: the same epoch vs a straightforward PyTorch RAE step (experiments/torch_rae.py), when
    torch is installed (the `bench` extra).
  * rae_sweep_K<k>_<mode>_<impl>[_contrastive]: images/s summed over the K members when they train as one sweep
    ('vmap', 'map', 'unroll' = every member's step in one scan body, or 'sequential' = one compiled member epoch
    dispatched K times) vs K separate single-model runs (whose total rate is the best single-model rate over the
    implementations measured), with/without the SimCLR augmentations.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import jax
from benchlib import emit, seconds_per_call

from configs import rae as rae_config
from ldm_jax import data as data_lib
from ldm_jax import rae
from ldm_jax.data import pipeline
from ldm_jax.jobs import rae as rae_job
from ldm_jax.train import sweep


def epoch_runner(cfg, train, k: int, sweep_mode: str):
  """(run(), images per call) for a K-member sweep epoch of the config's first regularizer (β = 1..K)."""
  c = cfg.copy_and_resolve_references()
  c.sweep.regularizer, c.sweep.betas, c.sweep.members = c.rae.regularizers[0], tuple(range(1, k + 1)), ()
  return sweep_program(c, train, sweep_mode)


FIGURE_MEMBERS = ("kl=0.001", "vq=10", "classification=3", "prototype=2", "simclr=1", "barlow=6", "none")


def figure_sweeps(cfg):
  """Fig. 3's grid at one β per regularizer (+ the plain RAE): one mixed sweep, or one plain sweep per member."""
  mixed = cfg.copy_and_resolve_references()
  mixed.rae.regularizers = tuple(r for r in rae.REGULARIZERS)
  mixed.sweep.betas, mixed.sweep.members = (), FIGURE_MEMBERS
  return mixed, [rae.member_config(mixed, m) for m in rae.sweep_members(mixed)[0]]


def sweep_program(cfg, train, sweep_mode: str):
  """(run(), images per call): a sweep epoch of `cfg`'s own members (its β matrix, its forward passes)."""
  model = rae.build_model(cfg, int(train["labels"].max()) + 1)
  spe = pipeline.steps_per_epoch(len(train["labels"]), cfg.train.batch_size)
  tx = rae.make_optimizer(cfg, spe)
  hparams = rae.sweep_hparams(cfg)
  k = len(hparams["beta"])
  states = sweep.init_sweep(functools.partial(rae.init_variables, model, cfg), tx, sweep.member_keys(0, k))
  data = pipeline.to_device(train)
  fn = sweep.make_epoch_fn(rae_job.make_loss_fn(model, cfg), tx, cfg.train.batch_size, None, sweep_mode)
  holder = {"s": states}

  def run():
    holder["s"], m = fn(holder["s"], hparams, data)
    return m

  return run, spe * cfg.train.batch_size * k


def first_call_seconds(run) -> float:
  t = time.perf_counter()
  jax.block_until_ready(run())
  return time.perf_counter() - t


def torch_threads() -> int:
  return os.cpu_count() or 1


def torch_epoch(train, batch: int, reference: str = "rae"):
  """(run(), drawings per call): one epoch of the same model and step in PyTorch (CPU, all cores) over the same
  drawings, each with its exemplar; None without torch. `reference`: 'rae' (experiments/torch_rae.py) or
  'critic' (torch_critic.py)."""
  if jax.default_backend() != "cpu":
    print("# the PyTorch reference runs on the CPU: no PyTorch line on an accelerator", file=sys.stderr)
    return None
  try:
    import torch
  except ImportError:
    print("# PyTorch not installed: `pip install -e .[bench]` for the PyTorch reference line", file=sys.stderr)
    return None
  import numpy as np
  import torch_critic
  import torch_rae
  torch.set_num_threads(torch_threads())
  torch.manual_seed(0)
  images = torch.from_numpy(np.asarray(train["images"], np.float32)[:, None] / 255.0)
  exemplars = images[torch.from_numpy(np.asarray(train["exemplar_index"])[np.asarray(train["labels"])])]
  if reference == "rae":
    step = torch_rae.make_step(torch_rae.TorchRAE().train())
  else:
    step = torch_critic.make_step(torch_critic.TorchConv4().train())
  spe = len(images) // batch
  perm = torch.randperm(len(images))

  def epoch():
    for i in range(spe):
      rows = perm[i * batch:(i + 1) * batch]
      loss = step(images[rows], exemplars[rows])
    return float(loss.detach())

  return epoch, spe * batch


def torch_throughput(train, batch: int, repeats: int, reference: str = "rae") -> float | None:
  """Drawings/s of `torch_epoch` (median of `repeats` epochs after one warm-up); None without torch."""
  runner = torch_epoch(train, batch, reference)
  if runner is None:
    return None
  epoch, drawings = runner
  return drawings / seconds_per_call(epoch, repeats=repeats)


def conv_results(cfg, train, repeats, throughput) -> dict[str, float]:
  """One model's epoch with each conv implementation vs 'xla', and the best (and 'auto') vs PyTorch."""
  impls = ("xla", "s2d", "im2col", "matmul", "vjp")
  per_impl = {impl: throughput(1, "vmap", impl) for impl in impls}
  for impl in impls[1:]:
    emit(f"rae_conv_{impl}", "xla convolutions", f"{impl} convolutions", "images/s", per_impl["xla"],
         per_impl[impl], batch=cfg.train.batch_size)
  # 'matmul' = 'im2col' plus output-side GEMMs where they move less (layers.conv_valid_output_side) and the
  # shifted-block ConvT (layers.conv_transpose_shifted), both batch-chunked to stay in cache.
  emit("rae_conv_output_side", "im2col everywhere", "output-side GEMMs, shifted-block ConvTs (matmul)",
       "images/s", per_impl["im2col"], per_impl["matmul"], batch=cfg.train.batch_size)
  best = max(per_impl, key=per_impl.get)
  torch_rate = torch_throughput(train, cfg.train.batch_size, repeats)
  if torch_rate is not None:
    for impl in sorted({rae.resolve_conv_impl("auto", "rae"), best}):
      emit(f"rae_vs_pytorch_{impl}", "PyTorch RAE step (experiments/torch_rae.py)",
           f"ldm_jax scanned epoch ({impl})", "images/s", torch_rate, per_impl[impl], batch=cfg.train.batch_size,
           torch_threads=torch_threads())
  return per_impl


def figure_results(cfg, train, repeats, impl: str, on_cpu: bool) -> None:
  """One program per figure (the central study): a mixed sweep vs one sweep per regularizer, in each sweep mode;
  steady-state epochs, and compile + first epoch (what a short study pays per run)."""
  mixed_cfg, own_cfgs = figure_sweeps(cfg)
  mixed_cfg.rae.conv_impl = impl
  parts = []
  for c in own_cfgs:
    c.rae.conv_impl = impl
    run, images = sweep_program(c, train, "map")
    parts.append((first_call_seconds(run), seconds_per_call(run, repeats=repeats, warmup=0), images))
  per_reg_rate = sum(p[2] for p in parts) / sum(p[1] for p in parts)
  per_reg_first = sum(p[0] for p in parts)
  for mode in (("map", "vmap") if on_cpu else ("vmap", "map")):
    run, images = sweep_program(mixed_cfg, train, mode)
    first = first_call_seconds(run)
    emit(f"rae_figure_mixed_{mode}", f"{len(own_cfgs)} sweeps, one per regularizer (map)",
         f"one mixed sweep of {len(own_cfgs)} members ({mode})", "images/s, all models", per_reg_rate,
         images / seconds_per_call(run, repeats=repeats, warmup=0), members=list(FIGURE_MEMBERS), conv_impl=impl)
    emit(f"rae_figure_mixed_{mode}_first_epoch", f"{len(own_cfgs)} sweeps: compile + first epoch each",
         f"one mixed sweep ({mode}): compile + first epoch", "1/s (compile + first epoch)", 1 / per_reg_first,
         1 / first, members=list(FIGURE_MEMBERS), conv_impl=impl)


def sweep_results(args, impl: str, single_rate, on_cpu: bool, throughput) -> None:
  """K-member sweeps in each mode vs K separate runs, whose total rate is the single-model rate of the fastest
  implementation measured (a sweep must beat the best way to run its members one by one)."""
  ks = tuple(int(k) for k in args.ks.split(",")) if args.ks else ((4,) if args.quick else (4, 8))
  modes = args.modes.split(",") if args.modes else (
      ("sequential", "map", "vmap", "unroll") if on_cpu else ("vmap", "unroll", "map", "sequential"))
  # Under vmap a convolution becomes a grouped convolution, a matmul a batched matmul: measure both layouts.
  sweep_impls = tuple(args.impls.split(",")) if args.impls else (
      (impl,) if on_cpu or impl == "matmul" else (impl, "matmul"))
  kinds = {"plain": (("prototype",), ""), "contrastive": (("simclr",), "_contrastive")}
  for name in args.sweeps.split(","):
    regs, tag = kinds[name]
    known = {impl: single_rate} if not tag and single_rate else {}
    singles = {i: known.get(i) or throughput(1, "vmap", i, regs) for i in dict.fromkeys((impl,) + sweep_impls)}
    best = max(singles, key=singles.get)
    for i, rate in singles.items():
      print(f"# single model, {i}: {rate:,.0f} images/s{tag}", flush=True)
    for k in ks:
      for mode in modes:
        for i in sweep_impls if mode == "vmap" else (impl,):
          emit(f"rae_sweep_K{k}_{mode}_{i}{tag}", f"{k} separate runs ({best})",
               f"one {mode} sweep of {k} models ({i})", "images/s, all models", singles[best],
               throughput(k, mode, i, regs), conv_impl=i, xla_flags=os.environ.get("XLA_FLAGS", ""))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--only", choices=("conv", "figure", "sweep"),
                      help="one group of results (figure/sweep then use the backend's 'auto' convolutions)")
  parser.add_argument("--ks", default="", help="sweep sizes, e.g. 4,8 (default: 4 with --quick, else 4,8)")
  parser.add_argument("--modes", default="", help="sweep modes to measure, e.g. vmap,unroll (default: all)")
  parser.add_argument("--impls", default="", help="conv implementations of the vmap sweeps, e.g. s2d,matmul")
  parser.add_argument("--sweeps", default="plain,contrastive", help="plain (prototype) and/or contrastive (SimCLR)")
  args = parser.parse_args()
  cfg = rae_config.get_config("omniglot")
  n = 256 if args.quick else (2560 if jax.default_backend() == "cpu" else 10240)
  cfg.data.max_train_examples = n
  train = data_lib.load_split(cfg, "paper_train", n)
  repeats = 1 if args.quick else 3
  on_cpu = jax.default_backend() == "cpu"

  def throughput(k, mode, impl, regs=("prototype",)):
    c = cfg.copy_and_resolve_references()
    c.rae.conv_impl = impl
    c.rae.regularizers = regs
    run, images = epoch_runner(c, train, k, mode)
    return images / seconds_per_call(run, repeats=repeats)  # summed over the K models

  impl, single = rae.resolve_conv_impl("auto", "rae"), None
  if args.only in (None, "conv"):
    per_impl = conv_results(cfg, train, repeats, throughput)
    impl = max(per_impl, key=per_impl.get)
    single = per_impl[impl]
  if args.only in (None, "figure"):
    figure_results(cfg, train, repeats, impl, on_cpu)
  if args.only in (None, "sweep"):
    sweep_results(args, impl, single, on_cpu, throughput)


if __name__ == "__main__":
  main()
