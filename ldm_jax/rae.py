"""A trained RAE sweep as a library object: the model a config describes, each member as the model of its own
regularizers, its optimizer (whose state a checkpoint holds), and `load_sweep` / `load_member` from a workdir —
everything the LDM, IMLE, evaluation and demo jobs need of a trained RAE (the job itself: `ldm_jax.jobs.rae`).

Every member shares the architecture (the union of the active regularizers, a static function of the config) and
has its own β vector (one weight per regularizer, in `REGULARIZERS` order).
"""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ldm_jax import config_checks
from ldm_jax.models.layers import resolve_conv_impl
from ldm_jax.models.rae import RAE, encode_latents
from ldm_jax.regularizer_registry import REGULARIZERS
from ldm_jax.train import loop

# Paper-vs-code switches; a stored config without the key was trained before the switch existed, i.e. with what
# is here the authors' code's variant (MLP projectors, NT-Xent, standardised Barlow) and an online SimCLR encoder.
_BEFORE_SWITCHES = {"prototype_projector": "mlp", "barlow_projector": "mlp", "simclr_head": "linear",
                    "simclr_loss": "nt_xent", "simclr_target": "online", "simclr_ema_momentum": 0.99,
                    "barlow_similarity": "standardized"}


def variant(rc: ml_collections.ConfigDict, key: str):
  """`rae.<key>` of a paper-vs-code switch, with its pre-switch value for configs stored before it existed."""
  return rc.get(key, _BEFORE_SWITCHES[key])


def build_model(cfg: ml_collections.ConfigDict, num_classes: int = 0) -> RAE:
  rc = cfg.rae
  return RAE(latent_dim=rc.latent_dim, regularizers=tuple(rc.regularizers), num_classes=num_classes,
             head_dim=rc.head_dim, vq_codes=rc.vq_codes, vq_code_dim=rc.vq_code_dim,
             conv_impl=resolve_conv_impl(rc.conv_impl, "rae"),
             prototype_projection=variant(rc, "prototype_projector"),
             barlow_projection=variant(rc, "barlow_projector"), simclr_projection=variant(rc, "simclr_head"))


def uses_ema_target(cfg: ml_collections.ConfigDict) -> bool:
  return "simclr" in cfg.rae.regularizers and variant(cfg.rae, "simclr_target") == "ema"


def init_variables(model: RAE, cfg: ml_collections.ConfigDict, key: jax.Array) -> dict[str, Any]:
  """Model variables; with the EMA SimCLR target its encoder copy rides in the (non-trained) model state."""
  size = cfg.data.image_size
  variables = dict(model.init(key, jnp.zeros((2, size, size, 1)), False))
  if uses_ema_target(cfg):
    variables["batch_stats"] = {**variables["batch_stats"], "simclr_target": variables["params"]["encoder"]}
  return variables


def is_mixed(cfg: ml_collections.ConfigDict) -> bool:
  """A mixed sweep: `sweep.members` gives each member its own regularizers (config_checks.sweep_betas)."""
  return "sweep" in cfg and bool(tuple(cfg.sweep.get("members", ())))


def sweep_members(cfg: ml_collections.ConfigDict) -> tuple[list[dict[str, Any]], np.ndarray]:
  """Member descriptions and their β matrix [K, 6]: `rae.beta` with `sweep.regularizer` set to each sweep value
  (inactive terms 0), or a mixed sweep's members as given. A sweep of an inactive regularizer, or one with
  identical members, is refused."""
  betas = config_checks.sweep_betas(cfg.rae, cfg.sweep)
  mixed = is_mixed(cfg)
  members = []
  for b in betas:
    beta = {r: float(x) for r, x in zip(REGULARIZERS, b) if (x != 0 if mixed else r in cfg.rae.regularizers)}
    members.append({"name": ",".join(f"{r}={x:g}" for r, x in beta.items()) or "none", "beta": beta})
  return members, np.array(betas, np.float32)


def member_regularizers(cfg: ml_collections.ConfigDict, member: dict[str, Any]) -> tuple[str, ...]:
  """What a member trains with: in a mixed sweep its own terms, otherwise every active one (β = 0 included)."""
  if not is_mixed(cfg):
    return tuple(cfg.rae.regularizers)
  return tuple(r for r in REGULARIZERS if r in member["beta"])


def branches(cfg: ml_collections.ConfigDict) -> list[tuple[str, ...]]:
  """The distinct regularizer sets of a sweep's members: one forward pass each (one for a plain sweep)."""
  return list(dict.fromkeys(member_regularizers(cfg, m) for m in sweep_members(cfg)[0]))


def sweep_hparams(cfg: ml_collections.ConfigDict) -> dict[str, jax.Array]:
  """Per-member hyperparameters: the β vector, and in a mixed sweep the index of the member's forward pass."""
  members, betas = sweep_members(cfg)
  hp = {"beta": jnp.asarray(betas)}
  if is_mixed(cfg):
    sets = branches(cfg)
    hp["branch"] = jnp.asarray([sets.index(member_regularizers(cfg, m)) for m in members], jnp.int32)
  return hp


def member_config(cfg: ml_collections.ConfigDict, member: dict[str, Any]) -> ml_collections.ConfigDict:
  """A member as a model of its own: a mixed sweep's member gets its own `rae.regularizers` (and a one-member
  sweep), so that it builds, encodes and exports exactly the model it trained; a plain sweep's config as is."""
  if not is_mixed(cfg):
    return cfg
  c = ml_collections.ConfigDict(cfg.to_dict())
  c.rae.regularizers = member_regularizers(cfg, member)
  c.sweep.members, c.sweep.betas = (member["name"],), ()
  return c


def _restrict(tree, like):
  """`tree` cut down to the keys of `like` (nested dicts): a member's own parameters out of the sweep's union."""
  if hasattr(like, "keys"):
    return {k: _restrict(tree[k], like[k]) for k in like.keys()}
  return tree


def member_model(cfg: ml_collections.ConfigDict, member: dict[str, Any], num_classes: int, variables,
                 cache: dict | None = None):
  """(member config, its RAE, its variables) from the sweep's config and the member's trained variables. `cache`
  (a dict the caller keeps across members) builds one RAE and one abstract tree per distinct regularizer set."""
  mcfg = member_config(cfg, member)
  cache = {} if cache is None else cache
  key = tuple(mcfg.rae.regularizers)
  if key not in cache:
    model = build_model(mcfg, num_classes)
    like = None if mcfg is cfg else jax.eval_shape(lambda: init_variables(model, mcfg, jax.random.PRNGKey(0)))
    cache[key] = (model, like)
  model, like = cache[key]
  return mcfg, model, variables if like is None else _restrict(variables, like)


def make_optimizer(cfg: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.GradientTransformation:
  """Adam with coupled weight decay (PyTorch's Adam(weight_decay=...)), lr ÷ factor every N epochs (A.3.2)."""
  tc = cfg.train
  if tc.lr_decay_every_epochs > 0:
    lr = optax.exponential_decay(tc.lr, transition_steps=tc.lr_decay_every_epochs * steps_per_epoch,
                                 decay_rate=tc.lr_decay_factor, staircase=True)
  else:
    lr = tc.lr
  return optax.chain(optax.add_decayed_weights(tc.weight_decay), optax.scale_by_adam(),
                     optax.scale_by_learning_rate(lr))


def encode_fn(model: RAE, kl_latent: str = "sample"):
  """jit: (variables, uint8 images [N, H, W], key) → the latents [N, d] the decoder was trained on (codewords with
  VQ, a posterior sample with KL unless kl_latent='mean'), in eval mode, in chunks of 500."""
  return jax.jit(lambda variables, images_u8, key: encode_latents(model, variables, images_u8, key, kl_latent))


def load_sweep(workdir: str | pathlib.Path):
  """A trained sweep: (config, [RAE per member], [variables {'params', 'batch_stats'} per member], member
  descriptions, run info {'num_classes', 'steps_per_epoch'}). A plain sweep's members share one RAE; a mixed
  sweep's member comes as the model of its own regularizers with its own parameters (`member_model`)."""
  workdir = pathlib.Path(workdir)
  if not (workdir / "run.json").exists():
    raise FileNotFoundError(f"{workdir} holds no trained RAE sweep (no run.json): train one with configs/rae.py")
  cfg = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
  members = json.loads((workdir / "members.json").read_text())
  run = json.loads((workdir / "run.json").read_text())
  model = build_model(cfg, run["num_classes"])
  tx = make_optimizer(cfg, run["steps_per_epoch"])
  init_fn = functools.partial(init_variables, model, cfg)
  variables = loop.restore_member_variables(workdir, cfg.to_dict(), init_fn, tx, len(members), cfg.seed)
  cache = {}
  own = [member_model(cfg, m, run["num_classes"], v, cache)[1:] for m, v in zip(members, variables)]
  return cfg, [o[0] for o in own], [o[1] for o in own], members, run


def load_member(workdir: str | pathlib.Path, member: int):
  """One model of a trained sweep, alone: (model, variables {'params', 'batch_stats'}, member description)."""
  _, models, variables, members, _ = load_sweep(workdir)
  return models[member], variables[member], members[member]
