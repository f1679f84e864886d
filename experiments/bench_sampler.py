"""The DDPM sampler kernel: one `lax.scan` over all T steps vs a Python loop of jitted steps, side by side.

    python experiments/bench_sampler.py [--quick]

Prints one JSON line per result: samples/s of the scanned sampler vs the loop (same steps, same noise), for the
`small` UNet and the `paper` UNet, and for the `paper` UNet the FLOPs per sample (counted from the layer shapes:
2 FLOPs per weight of every Dense kernel plus the channel attention, two branches per step, × T; XLA's own cost
analysis leaves out cuBLAS calls on GPU) and the achieved FLOP/s of the scanned sampler. `ddpm_sampler_bf16`: the
paper UNet's scanned sampler with bf16 weights and activations (noise and updates in f32) vs the f32 one, with the
achieved fraction of the chip's dense peak and the samples' relative difference ‖x_bf16 − x_f32‖ / ‖x_f32‖.
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
from bench_precision import peak
from benchlib import emit, seconds_per_call

from ldm_jax import diffusion, sampling
from ldm_jax.models.unet1d import build_unet
from ldm_jax.train import precision


def _model(name: str, d: int):
  m = build_unet(name, d)
  params = m.init(jax.random.PRNGKey(0), jnp.zeros((2, d)), jnp.zeros((2, d)), jnp.zeros((2,), jnp.int32))["params"]
  return (lambda p, x, c, t: m.apply({"params": p}, x, c, t)), params


def forward_flops_per_sample(params) -> float:
  """2 FLOPs per Dense weight (a multiply and an add per input·output pair) + 4·heads·dim_head² per attention."""
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  dense = sum(x.size for path, x in flat if getattr(path[-1], "key", "") == "kernel")
  attentions = sum(1 for path, _ in flat if getattr(path[-1], "key", "") == "kernel"
                   and getattr(path[-2], "key", "") == "to_qkv")
  return 2.0 * dense + attentions * 4 * 4 * 32 * 32


def bench(name: str, d: int, batch: int, timesteps: int, repeats: int) -> None:
  eps_fn, params = _model(name, d)
  schedule = diffusion.make_schedule(timesteps)
  cond = jax.random.normal(jax.random.PRNGKey(1), (batch, d))
  key = jax.random.PRNGKey(2)
  scanned = sampling.make_sampler(eps_fn)
  step = jax.jit(functools.partial(sampling.ddpm_step, eps_fn))
  loop = lambda p, s, c, k, g: sampling.ddpm_sample_loop(step, p, s, c, k, g)
  t_scan = seconds_per_call(scanned, params, schedule, cond, key, 1.0, repeats=repeats)
  t_loop = seconds_per_call(loop, params, schedule, cond, key, 1.0, repeats=repeats)
  extra = {"unet": name, "latent_dim": d, "batch": batch, "timesteps": timesteps}
  if name == "paper":
    flops_per_sample = 2 * forward_flops_per_sample(params) * timesteps   # conditional + unconditional branch
    extra.update(flops_per_sample=flops_per_sample, achieved_tflops=round(flops_per_sample * batch / t_scan / 1e12, 3),
                 matmul_precision=jax.config.jax_default_matmul_precision or "default")
  emit("ddpm_sampler", "python loop of jitted steps", "lax.scan kernel", "samples/s", batch / t_loop, batch / t_scan,
       **extra)


def bench_bf16(d: int, batch: int, timesteps: int, repeats: int) -> None:
  """The paper UNet's sampler in bf16 (weights cast once, as for inference) vs f32, same noise."""
  eps_fn, params = _model("paper", d)
  bf16 = lambda p, x, c, t: eps_fn(p, x.astype(jnp.bfloat16), c.astype(jnp.bfloat16), t).astype(jnp.float32)
  schedule = diffusion.make_schedule(timesteps)
  cond = jax.random.normal(jax.random.PRNGKey(1), (batch, d))
  key = jax.random.PRNGKey(2)
  f32, half = sampling.make_sampler(eps_fn), sampling.make_sampler(bf16)
  half_params = precision.cast_floating(params, jnp.bfloat16)
  t32 = seconds_per_call(f32, params, schedule, cond, key, 1.0, repeats=repeats)
  t16 = seconds_per_call(half, half_params, schedule, cond, key, 1.0, repeats=repeats)
  ref, got = f32(params, schedule, cond, key, 1.0), half(half_params, schedule, cond, key, 1.0)
  rel = float(jnp.linalg.norm(got - ref) / jnp.linalg.norm(ref))
  flops = 2 * forward_flops_per_sample(params) * timesteps * batch
  fields = {"tflops_float32": round(flops / t32 / 1e12, 3), "tflops_bfloat16": round(flops / t16 / 1e12, 3)}
  for dt, t in (("float32", t32), ("bfloat16", t16)):
    if peak(dt):
      fields[f"peak_fraction_{dt}"] = round(flops / t / 1e12 / peak(dt), 4)
  emit("ddpm_sampler_bf16", "lax.scan kernel, float32", "lax.scan kernel, bfloat16 weights/activations",
       "samples/s", batch / t32, batch / t16, unet="paper", batch=batch, timesteps=timesteps,
       rel_diff_vs_f32=round(rel, 5), finite=bool(jnp.all(jnp.isfinite(got))),
       matmul_precision=jax.config.jax_default_matmul_precision or "default", **fields)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true", help="a few CPU minutes")
  args = parser.parse_args()
  if args.quick:
    bench("small", 64, 256, 200, repeats=3)
    bench("paper", 128, 16, 10, repeats=2)
    bench_bf16(128, 16, 10, repeats=2)
  else:
    bench("small", 64, 1500, 1000, repeats=3)     # all Omniglot test exemplars × 10 samples
    bench("paper", 128, 1000, 1000, repeats=2)
    bench_bf16(128, 1000, 1000, repeats=2)


if __name__ == "__main__":
  main()
