"""Latent DDPM training for a whole RAE sweep: K diffusion models as one vmapped program vs K separate runs.

    python experiments/bench_ldm.py [--quick]

Real Omniglot drawings encoded by an (untrained) RAE encoder give each member its own latent set, as in the LDM
job; two JSON lines per (UNet, K): latents/s of one epoch for all K models, `sweep_mode` vmap and map (candidates)
against one compiled single-model epoch run K times (baseline).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from benchlib import emit

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


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true", help="a few CPU minutes")
  args = parser.parse_args()
  if args.quick:
    bench("small", 4, 1280, 64, 128, repeats=2)
  else:
    bench("small", 4, 29440, 64, 128, repeats=3)
    bench("paper", 4, 29440, 64, 128, repeats=2)


if __name__ == "__main__":
  main()
