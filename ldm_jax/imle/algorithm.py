"""IMLE and RS-IMLE training (paper Algorithm 1) as one jit-compiled outer iteration.

Outer iteration k: draw m = pool_factor · n latents, generate, map data and samples into the search space, reject
every sample within ε of any data point (`search`; ε = 0 is plain IMLE), select each data point's nearest
remaining sample's latent (plus 0.001·N(0, I), as the authors), then L inner steps of SGD on random batches of the
selected (z, x) pairs with the loss d(x, T(z)). A data point whose every sample was rejected keeps its previous
latent (counted in the metrics). The whole iteration — generation, search, selection, L steps — is one program.

With `adaptive=True`, Adaptive IMLE's staleness rule decides which data points take their new selection: a point
is re-assigned when its current sample has come within its threshold τ_i and it has kept its latent for at least
`stale_min` iterations, or after `stale_max` iterations regardless (every point at the first iteration); a
re-assigned point's threshold becomes `tau_decay` × its new distance.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax

from ldm_jax import checkpoint
from ldm_jax.imle import search
from ldm_jax.train import loop


@dataclasses.dataclass(frozen=True)
class ImleSettings:
  epsilon: float = 0.1          # rejection radius in the search space (0 = IMLE)
  pool_factor: int = 10         # m = pool_factor · n
  inner_steps: int = 50         # L
  batch_size: int = 4
  latent_noise: float = 1e-3    # added to the selected latents
  chunk: int = 1024             # generator rows per call when generating the pool
  adaptive: bool = False        # Adaptive IMLE's staleness rule (the authors' default)
  stale_min: int = 7
  stale_max: int = 30
  tau_decay: float = 0.96


@flax.struct.dataclass
class ImleState:
  params: Any
  opt_state: Any
  latents: jax.Array            # [n, latent] the current selection
  step: jax.Array
  threshold: jax.Array          # [n] τ_i of the staleness rule
  stale: jax.Array              # [n] iterations since each point's latent last changed


def init_state(params, tx: optax.GradientTransformation, n: int, latent_dim: int) -> ImleState:
  return ImleState(params=params, opt_state=tx.init(params), latents=jnp.zeros((n, latent_dim)),
                   step=jnp.zeros((), jnp.int32), threshold=jnp.full((n,), jnp.inf), stale=jnp.zeros((n,), jnp.int32))


def staleness_update(current_distance, threshold, stale, first, settings: ImleSettings):
  """Adaptive IMLE's rule → bool [n]: which data points take their new selection."""
  ready = (current_distance < threshold) & (stale >= settings.stale_min)
  return first | ready | (stale >= settings.stale_max)


def make_outer_step(generate: Callable, loss_fn: Callable, embed: Callable, tx: optax.GradientTransformation,
                    settings: ImleSettings, latent_dim: int, jit: bool = True):
  """(state, data, data_embedded, key[, epsilon]) → (state, metrics), jitted unless `jit=False` (to vmap it
  first: several members, e.g. IMLE and RS-IMLE, with their own ε as one program). ε defaults to
  `settings.epsilon`.

  generate(params, z [B, latent]) → samples; loss_fn(x, samples) → per-example losses [B];
  embed(samples or data) → points in the search space [B, k].
  """

  def gen_pool(params, z):
    n = z.shape[0]
    c = min(settings.chunk, n)
    pad = (-n) % c
    zs = jnp.pad(z, ((0, pad), (0, 0))).reshape(-1, c, latent_dim)
    out = jax.lax.map(lambda zz: embed(generate(params, zz)), zs)
    return out.reshape(-1, out.shape[-1])[:n]

  def step(state: ImleState, data, data_embedded, key, epsilon=None):
    epsilon = settings.epsilon if epsilon is None else epsilon
    n = data.shape[0]
    k_pool, k_noise, k_batches = jax.random.split(key, 3)
    z_pool = jax.random.normal(k_pool, (settings.pool_factor * n, latent_dim))
    pool = gen_pool(jax.lax.stop_gradient(state.params), z_pool)
    idx, dist, rejected = search.rejection_nearest(data_embedded, pool, epsilon)
    found = idx >= 0
    if settings.adaptive:
      current = jnp.linalg.norm(gen_pool(jax.lax.stop_gradient(state.params), state.latents) - data_embedded, axis=-1)
      found = found & staleness_update(current, state.threshold, state.stale, state.step == 0, settings)
    chosen = z_pool[jnp.maximum(idx, 0)] + settings.latent_noise * jax.random.normal(k_noise, (n, latent_dim))
    latents = jnp.where(found[:, None], chosen, state.latents)
    threshold = jnp.where(found, settings.tau_decay * dist, state.threshold)
    stale = jnp.where(found, 0, state.stale + 1)

    def inner(carry, k):
      params, opt_state = carry
      rows = jax.random.choice(k, n, (settings.batch_size,), replace=False)
      value, grads = jax.value_and_grad(lambda p: jnp.mean(loss_fn(data[rows], generate(p, latents[rows]))))(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), value

    (params, opt_state), losses = jax.lax.scan(inner, (state.params, state.opt_state),
                                               jax.random.split(k_batches, settings.inner_steps))
    metrics = {"loss": losses.mean(), "rejected_fraction": rejected.mean(), "reassigned": jnp.sum(found),
               "unmatched": jnp.sum(idx < 0), "selected_distance": jnp.mean(jnp.where(idx >= 0, dist, 0.0))}
    return ImleState(params=params, opt_state=opt_state, latents=latents, step=state.step + 1, threshold=threshold,
                     stale=stale), metrics

  return jax.jit(step) if jit else step


def fit(state: ImleState, outer_step, data: jax.Array, data_embedded: jax.Array, key: jax.Array, iterations: int,
        history: bool = False):
  """Runs `iterations` outer iterations; returns (state, metrics per iteration, and every selection if asked)."""
  records, selections = [], []
  for k in range(iterations):
    state, m = outer_step(state, data, data_embedded, jax.random.fold_in(key, k))
    records.append(jax.device_get(m))
    if history:
      selections.append(state.latents)
  return state, records, (jnp.stack(selections) if history else None)


@jax.jit
def keep_finite(old, new, metrics):
  """Per member: the new state where its iteration's loss is finite, else its last finite one (counted in
  `nonfinite_steps`, 1 per iteration), so one diverged ε leaves the others training."""
  finite = jnp.isfinite(metrics["loss"])
  pick = lambda a, b: jnp.where(finite.reshape(finite.shape + (1,) * (a.ndim - 1)), a, b)
  return jax.tree.map(pick, new, old), {**metrics, "nonfinite_steps": (~finite).astype(jnp.int32)}


def fit_members(vstep, states, data: tuple, epsilons, base_key: jax.Array, *, workdir: pathlib.Path, config,
                resume: bool, examples_per_epoch: int, desc: str = "imle"):
  """A vmapped ε sweep (IMLE and RS-IMLE as members) through the one host loop (`ldm_jax.train.loop.run`): an
  epoch is one outer iteration (one selection for every data point, then L inner steps: one pass over the set
  with the default L), one program call with keys fixed by (iteration, member), so a resumed run repeats an
  uninterrupted one; `train.epochs`, `train.checkpoint_every_epochs`, `train.log_every_epochs` as every job."""
  tc = config.train
  ckpt = checkpoint.Checkpointer(workdir, config.to_dict(), keep=tc.keep_checkpoints)
  states, start = ckpt.restore_or_start(states, resume, tc.epochs, "train.epochs")
  eps = jnp.asarray(epsilons, jnp.float32)
  members = jnp.arange(len(epsilons))

  @jax.jit
  def guarded(states, data, keys, eps):   # the iteration and its per-member NaN guard as one program
    new, metrics = vstep(states, *data, keys, eps)
    return keep_finite(states, new, metrics)

  def advance(states, it):
    keys = jax.vmap(lambda m: jax.random.fold_in(jax.random.fold_in(base_key, it), m))(members)
    return guarded(states, data, keys, eps)

  described = [{"name": "RS-IMLE" if e else "IMLE", "epsilon": float(e)} for e in epsilons]
  return loop.run(workdir=pathlib.Path(workdir), config=config, states=states, advance=advance, start=start,
                  total=tc.epochs, members=described, steps_per_unit=1, examples_per_unit=examples_per_epoch,
                  checkpoint_every=tc.checkpoint_every_epochs, log_every=tc.get("log_every_epochs", 1), desc=desc,
                  checkpointer=ckpt, tensorboard_on=tc.get("tensorboard", False))
