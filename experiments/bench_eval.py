"""The evaluation kernels, side by side with straightforward implementations.

    python experiments/bench_eval.py [--quick]

* `score_sets`: originality + recognizability of C classes × n samples (both Conv4 critics, 20-way 1-shot tasks,
  10 per class) as one vectorised call (`judge.score_set`: every image through each critic in one jitted pass,
  every class and task in one jitted scoring call) vs a per-class Python loop (critics called per class, tasks
  scored one by one in numpy). Real Omniglot test drawings stand in for the samples (tiled to n per class).
* `importance_maps`: Eq. 9's maps with one `jax.jvp` per sampling step (the kernel) vs the full decoder Jacobian
  per step (`jax.jacfwd`, then the product), same scan, same sampler.
Critic and model weights are random: timing does not depend on them.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from benchlib import emit, seconds_per_call

from ldm_jax import data, diffusion
from ldm_jax.eval import importance, judge
from ldm_jax.models.critics import build_critic, embed_fn
from ldm_jax.models.rae import RAE
from ldm_jax.models.unet1d import build_unet


def _judges() -> judge.Judges:
  fns = []
  for head, use_head in (("metric", True), ("projection", False)):
    model = build_critic("conv4", head)
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((2, 50, 50, 1)), False)
    embed = embed_fn(model, use_head, 50)
    fns.append(lambda x, embed=embed, v=variables: embed(v, x))
  return judge.Judges(recognizer=fns[0], featurizer=fns[1])


def per_class_loop(judges: judge.Judges, samples: np.ndarray, exemplars: np.ndarray, n_way: int, tasks: int):
  """The straightforward version: the critics class by class, tasks one at a time in numpy."""
  c = samples.shape[0]
  ex_f = np.asarray(judges.featurizer(jnp.asarray(exemplars)))
  ex_e = np.asarray(judges.recognizer(jnp.asarray(exemplars)))
  feats = [np.asarray(judges.featurizer(jnp.asarray(samples[k]))) for k in range(c)]
  embs = [np.asarray(judges.recognizer(jnp.asarray(samples[k]))) for k in range(c)]
  scale = np.mean(np.std(np.concatenate(feats), axis=-1))
  rng = np.random.default_rng(0)
  ori, rec = [], []
  for k in range(c):
    ori.append(np.linalg.norm((feats[k] - ex_f[k]) / scale, axis=-1))
    hits = []
    for _ in range(tasks):
      others = rng.choice(np.delete(np.arange(c), k), n_way - 1, replace=False)
      support = ex_e[np.concatenate([[k], others])]
      d = ((embs[k][:, None, :] - support[None]) ** 2).sum(-1)
      hits.append(d.argmin(-1) == 0)
    rec.append(np.mean(hits, axis=0))
  return np.stack(ori), np.stack(rec)


def bench_scoring(classes: int, n: int, repeats: int) -> None:
  test = data.load("omniglot", "paper_test", image_size=48)
  humans, exemplars = judge.human_set(test, per_class=19, classes=classes)
  samples = np.tile(humans, (1, -(-n // 19), 1, 1))[:, :n]
  judges = _judges()
  key = jax.random.PRNGKey(0)
  vectorised = lambda: judge.score_set(judges, samples, exemplars, key, 20, 10)["recognizability"]
  loop = lambda: per_class_loop(judges, samples, exemplars, 20, 10)[1]
  t_vec = seconds_per_call(vectorised, repeats=repeats)
  t_loop = seconds_per_call(loop, repeats=repeats)
  emit("score_sets", "per-class python loop", "vectorised score_set", "samples/s", classes * n / t_loop,
       classes * n / t_vec, classes=classes, samples_per_class=n, n_way=20, tasks_per_class=10)


def bench_importance(batch: int, timesteps: int, repeats: int) -> None:
  d = 64
  rae = RAE(latent_dim=d)
  rae_vars = rae.init(jax.random.PRNGKey(0), jnp.zeros((2, 48, 48, 1)), False)
  unet = build_unet("small", d)
  params = unet.init(jax.random.PRNGKey(1), jnp.zeros((2, d)), jnp.zeros((2, d)), jnp.zeros((2,), jnp.int32))["params"]
  eps_fn = lambda p, x, c, t: unet.apply({"params": p}, x, c, t)
  decode = lambda z: rae.apply(rae_vars, z, False, method=RAE.decode)[..., 0]

  schedule = diffusion.make_schedule(timesteps)
  cond = jax.random.normal(jax.random.PRNGKey(2), (batch, d))
  key = jax.random.PRNGKey(3)
  jvp_kernel = jax.jit(lambda p, c: importance.importance_sample(eps_fn, decode, p, schedule, c, key, 1.0))

  @jax.jit
  def full_jacobian(p, c):
    # Same scan, but each step materialises every sample's Jacobian [H, W, d] and multiplies.
    from ldm_jax import sampling
    x_init = sampling.initial_noise(key, c.shape)

    def body(carry, t):
      x, phi = carry
      eps = sampling.guided_eps(eps_fn, p, x, c, jnp.full((x.shape[0],), t, jnp.int32), 1.0)
      s = -eps / jnp.sqrt(1.0 - schedule.alpha_bars[t])
      jac = jax.vmap(jax.jacfwd(lambda z: decode(z[None])[0]))(x)            # [B, H, W, d]
      return (sampling.ddpm_update(schedule, x, eps, t, key), phi + jnp.abs(jnp.einsum("bhwd,bd->bhw", jac, s))), None

    (x0, phi), _ = jax.lax.scan(body, (x_init, jnp.zeros((c.shape[0], 48, 48))), jnp.arange(timesteps - 1, -1, -1))
    return x0, phi

  t_jvp = seconds_per_call(jvp_kernel, params, cond, repeats=repeats)
  t_full = seconds_per_call(full_jacobian, params, cond, repeats=repeats)
  emit("importance_maps", "full decoder Jacobian per step", "one jvp per step (kernel)", "maps/s", batch / t_full,
       batch / t_jvp, batch=batch, timesteps=timesteps, latent_dim=d)


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--quick", action="store_true", help="a few CPU minutes")
  a = p.parse_args()
  if a.quick:
    bench_scoring(classes=20, n=50, repeats=2)
    bench_importance(batch=8, timesteps=20, repeats=2)
  else:
    bench_scoring(classes=100, n=500, repeats=3)
    bench_importance(batch=64, timesteps=200, repeats=2)


if __name__ == "__main__":
  main()
