"""Mixed precision (`train.compute_dtype='bfloat16'`) vs float32, side by side: the RAE sweep epoch and the latent
DDPM's training epoch on real Omniglot, with XLA's FLOP count of each compiled epoch and the achieved FLOP/s (as a
fraction of the chip's dense peak where it is known).

    python experiments/bench_precision.py [--quick] [--unet paper|small]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from benchlib import emit, seconds_per_call

from configs import ldm as ldm_config
from configs import rae as rae_config
from ldm_jax import data as data_lib
from ldm_jax import ldm as ldm_lib
from ldm_jax import rae
from ldm_jax.data import pipeline
from ldm_jax.jobs import ldm as ldm_job
from ldm_jax.jobs import rae as rae_job
from ldm_jax.train import sweep

# Dense peak TFLOP/s from the vendors' data sheets (SXM parts). JAX's default matmul precision runs float32 matmuls
# on the TF32 tensor cores of these GPUs, so float32 is compared with the dense TF32 peak.
PEAK_TFLOPS = {"H100": {"bfloat16": 989.0, "float32": 494.7}, "H200": {"bfloat16": 989.0, "float32": 494.7}}


def peak(dtype: str) -> float | None:
  kind = jax.devices()[0].device_kind
  return next((p[dtype] for name, p in PEAK_TFLOPS.items() if name in kind), None)


def timed_epoch(fn, states, hparams, data, repeats, steps):
  """(seconds per epoch, FLOPs per epoch): XLA's cost analysis counts a loop body once, so the epoch's `lax.scan`
  is charged one step's FLOPs; times the number of steps."""
  cost = jax.jit(fn).lower(states, hparams, data).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  holder = {"s": states}

  def run():
    holder["s"], m = fn(holder["s"], hparams, data)
    return m

  return seconds_per_call(run, repeats=repeats), float((cost or {}).get("flops", 0.0)) * steps


def rae_epoch(dtype, train, k, batch, conv_impl="auto"):
  cfg = rae_config.get_config("omniglot")
  cfg.train.compute_dtype, cfg.train.batch_size, cfg.rae.conv_impl = dtype, batch, conv_impl
  model = rae.build_model(cfg, int(train["labels"].max()) + 1)
  tx = rae.make_optimizer(cfg, 1)
  init_fn = lambda key: model.init(key, jnp.zeros((2, 48, 48, 1)), False)
  fn = sweep.make_epoch_fn(rae_job.make_loss_fn(model, cfg), tx, batch, None, "vmap")
  return fn, sweep.init_sweep(init_fn, tx, sweep.member_keys(0, k)), {"beta": jnp.ones((k, 6))}, \
      pipeline.to_device(train)


def ldm_epoch(dtype, train, k, batch, unet):
  cfg = ldm_config.get_config(f"omniglot,unet={unet}")
  cfg.train.compute_dtype, cfg.train.batch_size = dtype, batch
  d = 64
  denoiser = ldm_lib.build_denoiser("latent", unet, d, "auto")
  tx = ldm_job.make_optimizer(cfg, 1)
  x = jnp.zeros((2, d))
  init_fn = lambda key: denoiser.init(key, x, x, jnp.zeros((2,), jnp.int32))
  # Latents: the training drawings average-pooled to 8×8 and standardised (the step's cost is value-independent).
  imgs = np.asarray(train["images"], np.float32).reshape(-1, 8, 6, 8, 6).mean((2, 4)).reshape(-1, d)
  z = (imgs - imgs.mean()) / imgs.std()
  tile = lambda a: jnp.tile(jnp.asarray(a)[None], (k,) + (1,) * np.ndim(a))
  data = pipeline.LatentSplit(latents=tile(z), labels=tile(train["labels"]),
                              exemplar_index=tile(train["exemplar_index"]))
  fn = sweep.make_epoch_fn(ldm_job.make_loss_fn(denoiser, cfg, "latent"), tx, batch, None, "vmap", member_data=True)
  return fn, sweep.init_sweep(init_fn, tx, sweep.member_keys(0, k)), {"member": jnp.arange(k)}, data


def compare(name, build, steps, batch, members, repeats, **extra):
  out = {}
  for dtype in ("float32", "bfloat16"):
    fn, states, hparams, data = build(dtype)
    seconds, flops = timed_epoch(fn, states, hparams, data, repeats, steps)
    out[dtype] = (steps * batch * members / seconds, flops / seconds / 1e12)  # images/s summed over the members
  fields = {f"tflops_{d}": round(v[1], 4) for d, v in out.items()}
  for d, v in out.items():
    if peak(d):
      fields[f"peak_fraction_{d}"] = round(v[1] / peak(d), 4)
  emit(name, "float32 compute", "bfloat16 compute (f32 params/Adam)", "images/s", out["float32"][0],
       out["bfloat16"][0], **fields, members=members, batch=batch, **extra)


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--quick", action="store_true")
  p.add_argument("--unet", default=None, help="UNet config (default: small with --quick on CPU, else paper)")
  p.add_argument("--only", choices=("rae", "ldm"), help="one of the two comparisons")
  p.add_argument("--conv-impl", default="auto", help="the RAE's convolutions (layers.IMPLS or 'auto')")
  p.add_argument("--members", type=int, default=0, help="sweep members K (default: 2 with --quick, else 4)")
  args = p.parse_args()
  cpu = jax.default_backend() == "cpu"
  n = 640 if args.quick else (2560 if cpu else 29460)
  cfg = rae_config.get_config("omniglot")
  train = data_lib.load_split(cfg, "paper_train", n)
  batch, k = (32, 2) if args.quick else (128, 4)
  k = args.members or k
  repeats = 1 if args.quick else 3
  spe = pipeline.steps_per_epoch(len(train["labels"]), batch)
  if args.only != "ldm":
    compare(f"rae_sweep_K{k}_bf16", lambda d: rae_epoch(d, train, k, batch, args.conv_impl), spe, batch, k,
            repeats, conv_impl=args.conv_impl)
  if args.only == "rae":
    return
  unet = args.unet or ("small" if args.quick and cpu else "paper")
  compare(f"ldm_{unet}_K{k}_bf16", lambda d: ldm_epoch(d, train, k, batch, unet), spe, batch, k, repeats)


if __name__ == "__main__":
  main()
