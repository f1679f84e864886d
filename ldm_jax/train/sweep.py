"""ONE sweep-capable trainer: K members (e.g. one per β) stacked on a leading axis, an epoch as one compiled program.

The trainer knows nothing about a particular model. A job gives it
  * `init_fn(key) -> variables` (a dict with 'params' and optionally 'batch_stats'),
  * `loss_fn(params, batch_stats, hparams, batch, rng) -> (loss, (new_batch_stats, metrics))`,
  * an optax transformation, per-member `hparams` (a pytree with a leading member axis), and a `DeviceSplit`.
Each member has its own root key: its data order (`fold_in(key, 0)`, then the epoch) and its step noise
(`fold_in(key, 1)`, then the step) depend on nothing else, so a resumed run or a member trained alone sees exactly
the same stream. A non-finite loss or gradient skips that member's update (and is counted) without touching the
others.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from ldm_jax import sharding
from ldm_jax.data import pipeline

LossFn = Callable[..., tuple[jax.Array, tuple[Any, dict[str, jax.Array]]]]


@flax.struct.dataclass
class TrainState:
  step: jax.Array              # int32 []
  params: Any
  batch_stats: Any
  opt_state: Any
  key: jax.Array               # uint32 [2], the member's root key (constant)
  nonfinite_steps: jax.Array   # int32 [], updates skipped for a non-finite loss or gradient


def init_state(init_fn: Callable[[jax.Array], dict], tx: optax.GradientTransformation, key: jax.Array) -> TrainState:
  variables = init_fn(jax.random.fold_in(key, 2))
  params = variables["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=variables.get("batch_stats", {}),
                    opt_state=tx.init(params), key=key, nonfinite_steps=jnp.zeros((), jnp.int32))


def member_keys(seed: int, num_members: int, member_seeds=None) -> jax.Array:
  """[K, 2] root keys; member i's key is fold_in(PRNGKey(seed), i) unless explicit per-member seeds are given."""
  root = jax.random.PRNGKey(seed)
  ids = jnp.arange(num_members) if member_seeds is None else jnp.asarray(member_seeds)
  return jax.vmap(lambda i: jax.random.fold_in(root, i))(ids)


def all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def keep_if_finite(finite: jax.Array, new, old):
  """`new` where `finite` (a scalar), else `old`: a non-finite update is skipped, never applied."""
  return jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)


def train_step(loss_fn: LossFn, tx: optax.GradientTransformation, state: TrainState, hparams, batch):
  """One member's update; the old state is kept where the loss or a gradient is not finite."""
  rng = jax.random.fold_in(jax.random.fold_in(state.key, 1), state.step)
  (loss, (batch_stats, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params, state.batch_stats, hparams, batch, rng)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  finite = jnp.isfinite(loss) & all_finite(grads)
  keep = functools.partial(keep_if_finite, finite)
  new_state = state.replace(step=state.step + 1, params=keep(params, state.params),
                            batch_stats=keep(batch_stats, state.batch_stats),
                            opt_state=keep(opt_state, state.opt_state),
                            nonfinite_steps=state.nonfinite_steps + (~finite).astype(jnp.int32))
  return new_state, {"loss": loss, **metrics, "finite": finite}


def _epoch_means(metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Means over the finite steps of an epoch, plus the count of non-finite ones."""
  finite = metrics.pop("finite")
  n = jnp.maximum(finite.sum(), 1)
  out = {k: jnp.where(finite, v, 0.0).sum() / n for k, v in metrics.items()}
  out["nonfinite_steps"] = (~finite).sum()
  return out


def member_batches(state: TrainState, data, batch_size: int):
  """(steps per epoch, i -> batch i) of the member's current epoch: its own order, from its key and step count."""
  spe = pipeline.steps_per_epoch(data.num_examples, batch_size)
  perm = pipeline.epoch_permutation(jax.random.fold_in(state.key, 0), state.step // spe, data.num_examples)
  return spe, lambda i: data.gather(pipeline.batch_rows(perm, i, batch_size))


def member_epoch(loss_fn: LossFn, tx, batch_size: int, mesh: Mesh | None, state: TrainState, hparams,
                 data: pipeline.DeviceSplit):
  """One member's epoch as a `lax.scan` over steps; the epoch index follows from the member's step count."""
  spe, batch_at = member_batches(state, data, batch_size)

  def body(st, i):
    batch = batch_at(i)
    if mesh is not None:
      batch = jax.tree.map(lambda x: sharding.constrain_batch(x, mesh), batch)
    return train_step(loss_fn, tx, st, hparams, batch)

  state, metrics = jax.lax.scan(body, state, jnp.arange(spe))
  return state, _epoch_means(metrics)


def unrolled_epoch(loss_fn: LossFn, tx, batch_size: int, member_data: bool, states: TrainState, hparams, data):
  """All K members' steps in ONE scan body, each member its own dense subgraph: no grouped convolutions (vmap),
  no loop over members (map); XLA sees K independent step graphs per iteration to fuse and schedule together.
  Each member keeps its own data order and step noise (`member_batches`), so it trains as `member_epoch` would."""
  k = states.step.shape[0]
  members = [take_member(states, i) for i in range(k)]
  hps = [take_member(hparams, i) for i in range(k)]
  streams = [member_batches(m, take_member(data, i) if member_data else data, batch_size)
             for i, m in enumerate(members)]

  def body(sts, i):
    outs = [train_step(loss_fn, tx, st, hp, batch_at(i)) for st, hp, (_, batch_at) in zip(sts, hps, streams)]
    return tuple(o[0] for o in outs), tuple(o[1] for o in outs)

  sts, metrics = jax.lax.scan(body, tuple(members), jnp.arange(streams[0][0]))
  stack = lambda *xs: jnp.stack(xs)
  return jax.tree.map(stack, *sts), jax.tree.map(stack, *[_epoch_means(m) for m in metrics])


SWEEP_MODES = ("auto", "vmap", "map", "sequential", "unroll")


def resolve_sweep_mode(mode: str, num_devices: int = 1) -> str:
  """'auto': 'vmap' on accelerators or over several devices (members spread over the mesh); 'map' on one CPU
  device, measured fastest there (experiments/BENCHMARKS.md)."""
  if mode == "auto":
    return "map" if jax.default_backend() == "cpu" and num_devices == 1 else "vmap"
  return mode


def _sequential(one_jitted, member_data: bool):
  """Members one after another through ONE compiled single-member epoch (compiled once for the whole sweep)."""

  def run(states, hparams, data):
    outs = [one_jitted(take_member(states, i), take_member(hparams, i), take_member(data, i) if member_data else data)
            for i in range(states.step.shape[0])]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)

  return run


def make_epoch_fn(loss_fn: LossFn, tx, batch_size: int, mesh: Mesh | None = None, sweep_mode: str = "vmap",
                  member_data: bool = False):
  """`(states, hparams, data) -> (states, metrics)` for a stacked sweep.

  `data` has a `gather(rows)` method and `num_examples` (`DeviceSplit`, `LatentSplit`); it is shared by all
  members, or with `member_data` has a leading member axis (e.g. each diffusion model's own RAE latents).
  sweep_mode 'vmap' batches the members into one wider compiled program (sharded over the mesh's 'sweep' axis);
  'map' runs them one after another inside one program (`lax.map`); 'unroll' writes every member's step into one
  scan body (`unrolled_epoch`); 'sequential' dispatches one compiled single-member epoch per member; 'auto' picks
  the measured winner per backend.
  """
  sweep_mode = resolve_sweep_mode(sweep_mode)
  one = functools.partial(member_epoch, loss_fn, tx, batch_size, mesh)
  if sweep_mode in ("sequential", "unroll") and mesh is not None and mesh.size > 1:
    raise ValueError(f"sweep_mode {sweep_mode!r} runs on one device; use 'vmap' with a multi-device mesh")
  if sweep_mode == "sequential":
    return _sequential(jax.jit(one, donate_argnums=0), member_data)
  if sweep_mode == "unroll":
    return jax.jit(functools.partial(unrolled_epoch, loss_fn, tx, batch_size, member_data), donate_argnums=0)
  if sweep_mode == "vmap":
    fn = jax.vmap(one, in_axes=(0, 0, 0 if member_data else None),
                  spmd_axis_name=sharding.SWEEP if mesh is not None else None)
  elif sweep_mode == "map":
    if member_data:
      fn = lambda states, hparams, data: jax.lax.map(lambda shd: one(*shd), (states, hparams, data))
    else:
      fn = lambda states, hparams, data: jax.lax.map(lambda sh: one(sh[0], sh[1], data), (states, hparams))
  else:
    raise ValueError(f"sweep_mode must be one of {SWEEP_MODES}, got {sweep_mode!r}")
  if mesh is None:
    return jax.jit(fn, donate_argnums=0)
  member, rep = sharding.member_sharding(mesh), sharding.replicated(mesh)
  # Metrics come back replicated (a few floats per member): every process of a multi-host run can read them.
  return jax.jit(fn, in_shardings=(member, member, member if member_data else rep), out_shardings=(member, rep),
                 donate_argnums=0)


def init_sweep(init_fn, tx, keys: jax.Array, mesh: Mesh | None = None) -> TrainState:
  """Stacked member states [K, ...], created directly with the member sharding (no host copy)."""
  fn = jax.vmap(lambda k: init_state(init_fn, tx, k))
  if mesh is None:
    return jax.jit(fn)(keys)
  return jax.jit(fn, out_shardings=sharding.member_sharding(mesh))(keys)


def take_member(tree, i: int):
  """Member i of a stacked pytree (e.g. to evaluate or export one model of a sweep)."""
  return jax.tree.map(lambda x: x[i], tree)
