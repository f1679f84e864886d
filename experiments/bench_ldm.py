"""Latent DDPM training for a whole RAE sweep: K diffusion models as one vmapped program vs K separate runs.

    python experiments/bench_ldm.py [--quick]

Real Omniglot drawings encoded by an (untrained) RAE encoder give each member its own latent set, as in the LDM
job; two JSON lines per (UNet, K): latents/s of one epoch for all K models, `sweep_mode` vmap and map (candidates)
against one compiled single-model epoch run K times (baseline). On a CPU with torch installed (the `bench` extra),
`ldm_vs_pytorch_small`: one small-UNet model's scanned epoch vs a straightforward PyTorch step of the same network
and loss (experiments/torch_unet1d.py) on the same latents, timed interleaved.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from benchlib import emit, interleaved_seconds

from configs import ldm as ldm_config
from ldm_jax import data as data_lib
from ldm_jax import rae as rae_job
from ldm_jax.data import pipeline
from ldm_jax.jobs import ldm
from ldm_jax.models.rae import RAE
from ldm_jax.models.unet1d import build_unet
from ldm_jax.train import sweep


def latents_for(k: int, n: int, d: int) -> pipeline.LatentSplit:
  split = data_lib.load("omniglot", "paper_train")
  rows = np.arange(n)
  labels = np.unique(split["labels"][rows], return_inverse=True)[1].astype(np.int32)
  ex = data_lib.select_exemplars(split["images"][rows], labels)
  model = RAE(latent_dim=d, conv_impl=rae_job.resolve_conv_impl("auto", "rae"))
  encode = rae_job.encode_fn(model)
  zs = []
  for i in range(k):
    variables = model.init(jax.random.PRNGKey(i), jnp.zeros((2, 48, 48, 1)), False)
    z = np.asarray(encode(variables, jnp.asarray(split["images"][rows]), jax.random.PRNGKey(0)))
    zs.append((z - z.mean()) / z.std())
  return pipeline.LatentSplit(latents=jnp.asarray(np.stack(zs)), labels=jnp.tile(jnp.asarray(labels), (k, 1)),
                              exemplar_index=jnp.tile(jnp.asarray(ex, jnp.int32), (k, 1)))


def bench(unet: str, k: int, n: int, d: int, batch: int, repeats: int) -> None:
  cfg = ldm_config.get_config(f"omniglot,unet={unet}")
  cfg.train.batch_size = batch
  data = latents_for(k, n, d)
  denoiser = build_unet(unet, d)
  tx = ldm.make_optimizer(cfg, pipeline.steps_per_epoch(n, batch))
  loss_fn = ldm.make_loss_fn(denoiser, cfg, "latent")
  x = jnp.zeros((2, d))
  init_fn = lambda key: denoiser.init(key, x, x, jnp.zeros((2,), jnp.int32))
  keys = sweep.member_keys(0, k)
  hparams = {"member": jnp.arange(k)}
  fresh = lambda: sweep.init_sweep(init_fn, tx, keys)
  results = {}
  for mode in ("sequential", "map", "vmap"):
    epoch = sweep.make_epoch_fn(loss_fn, tx, batch, None, mode, member_data=True)
    times = []
    for r in range(repeats + 1):                 # the first call compiles
      states = jax.block_until_ready(fresh())    # epochs donate their states: a fresh stack per call
      t0 = time.perf_counter()
      jax.block_until_ready(epoch(states, hparams, data))
      times.append(time.perf_counter() - t0)
    results[mode] = sorted(times[1:])[len(times[1:]) // 2]
  steps = pipeline.steps_per_epoch(n, batch)
  rate = lambda s: k * steps * batch / s
  emit("ldm_sweep_epoch", f"{k} separate runs", f"vmap over {k}", "latents/s", rate(results["sequential"]),
       rate(results["vmap"]), unet=unet, members=k, batch=batch, latent_dim=d, steps_per_epoch=steps)
  emit("ldm_sweep_epoch_map", f"{k} separate runs", f"lax.map over {k}", "latents/s", rate(results["sequential"]),
       rate(results["map"]), unet=unet, members=k, batch=batch, latent_dim=d, steps_per_epoch=steps)


def bench_vs_pytorch(n: int, d: int, batch: int, rounds: int) -> None:
  """One small-UNet latent DDPM's scanned epoch vs a straightforward PyTorch step (experiments/torch_unet1d.py) on
  the same latents, timed interleaved; skipped with a message without torch or off a CPU."""
  from bench_rae import torch_threads
  if jax.default_backend() != "cpu":
    print("# the PyTorch reference runs on the CPU: no PyTorch line on an accelerator", file=sys.stderr)
    return
  try:
    import torch
    import torch_unet1d
  except ImportError:
    print("# PyTorch not installed: `pip install -e .[bench]` for the PyTorch reference line", file=sys.stderr)
    return
  cfg = ldm_config.get_config("omniglot,unet=small")
  cfg.train.batch_size = batch
  split = sweep.take_member(latents_for(1, n, d), 0)
  denoiser = build_unet("small", d)
  spe = pipeline.steps_per_epoch(n, batch)
  tx = ldm.make_optimizer(cfg, spe)
  x = jnp.zeros((2, d))
  state = sweep.init_state(lambda key: denoiser.init(key, x, x, jnp.zeros((2,), jnp.int32)), tx,
                           jax.random.PRNGKey(0))
  epoch = jax.jit(functools.partial(sweep.member_epoch, ldm.make_loss_fn(denoiser, cfg, "latent"), tx, batch, None))
  held = {"s": state}

  def scanned():
    held["s"], m = epoch(held["s"], {"member": jnp.zeros((), jnp.int32)}, split)
    return m

  torch.set_num_threads(torch_threads())
  torch.manual_seed(0)
  z = torch.from_numpy(np.array(split.latents))
  cond = z[torch.from_numpy(np.asarray(split.exemplar_index)[np.asarray(split.labels)])]
  step = torch_unet1d.make_step(torch_unet1d.TorchUNet1D(d).train(), lr=cfg.train.lr)
  perm = torch.randperm(n)

  def torch_epoch():
    for i in range(spe):
      rows = perm[i * batch:(i + 1) * batch]
      loss = step(z[rows], cond[rows])
    return float(loss.detach())

  seconds = interleaved_seconds({"torch": torch_epoch, "jax": scanned}, rounds=rounds)
  emit("ldm_vs_pytorch_small", "PyTorch small-UNet DDPM step (experiments/torch_unet1d.py)",
       "ldm_jax scanned epoch (small UNet)", "latents/s", spe * batch / seconds["torch"],
       spe * batch / seconds["jax"], batch=batch, latent_dim=d, steps_per_epoch=spe, torch_threads=torch_threads())


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true", help="a few CPU minutes")
  args = parser.parse_args()
  if args.quick:
    bench("small", 4, 1280, 64, 128, repeats=2)
    bench_vs_pytorch(2560, 64, 128, rounds=3)
  else:
    bench_vs_pytorch(10240, 64, 128, rounds=5)
    bench("small", 4, 29440, 64, 128, repeats=3)
    bench("paper", 4, 29440, 64, 128, repeats=2)


if __name__ == "__main__":
  main()
