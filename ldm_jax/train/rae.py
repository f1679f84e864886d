"""The RAE job: a β sweep of regularized autoencoders trained as one compiled program (paper §4.1, A.2, A.3).

Every member shares the architecture (the union of the active regularizers, a static function of the config) and
has its own β vector (one weight per regularizer, in `REGULARIZERS` order) and its own data stream.
"""

from __future__ import annotations

import functools
import json
import logging
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ldm_jax import augment, config_checks, data as data_lib, distributed, regularizers as R
from ldm_jax.data import pipeline
from ldm_jax.eval.oneshot import nearest_exemplar_accuracy
from ldm_jax.models.rae import RAE, REGULARIZERS, encode_latents
from ldm_jax.train import loop, precision, sweep

log = logging.getLogger(__name__)
CONTRASTIVE = ("simclr", "barlow")


def resolve_conv_impl(impl: str) -> str:
  """'auto' picks the measured winner per backend (experiments/BENCHMARKS.md)."""
  if impl != "auto":
    return impl
  return "matmul" if jax.default_backend() == "cpu" else "s2d"


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
             conv_impl=resolve_conv_impl(rc.conv_impl),
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


def _forward(module: RAE, x, exemplar, labels, rng, regs, cfg, aug: augment.AugmentParams, target_encode=None):
  """One training forward pass in x's dtype (the compute dtype); returns the reconstruction and each active loss,
  both in float32 (loss terms are reduced in f32 whatever the compute dtype). `target_encode`, when given, maps
  SimCLR's view B to the momentum target's latents (the authors' code); otherwise both views use this encoder."""
  b, f32 = x.shape[0], lambda a: a.astype(jnp.float32)
  k_a, k_b, k_kl = jax.random.split(rng, 3)
  contrastive = any(r in regs for r in CONTRASTIVE)
  # Algo. 3/4: with a contrastive regularizer the decoder sees view A and reconstructs x.
  views = [augment.augment_batch(k_a, x, aug), augment.augment_batch(k_b, x, aug)] if contrastive else [x]
  if "prototype" in regs:
    views.append(exemplar)
  mean, logvar = module.encode(jnp.concatenate(views), True)   # one pass: every view shares BN statistics
  mean = f32(mean)
  logvar = f32(logvar) if logvar is not None else None
  z = R.reparameterize(k_kl, mean, logvar) if "kl" in regs else mean
  losses = {}
  if "kl" in regs:
    losses["kl"] = R.kl_loss(mean, logvar)
  if "vq" in regs:
    z, losses["vq"], _ = R.vq_quantize(z, f32(module.get_codebook()), cfg.rae.vq_codebook_weight)
  z_main, zc = z[:b], z.astype(x.dtype)
  x_hat = f32(module.decode(zc[:b], True))
  if "classification" in regs:
    losses["classification"] = R.classification_loss(f32(module.classify(zc[:b])), labels)
  if "prototype" in regs:
    p = f32(module.project_prototype(jnp.concatenate([zc[:b], zc[-b:]]), True))
    losses["prototype"] = R.prototype_loss(p[:b], p[b:])
  if "simclr" in regs:
    pair = zc[:2 * b] if target_encode is None else jnp.concatenate([zc[:b], target_encode(views[1])])
    h = f32(module.project_simclr(pair))
    losses["simclr"] = R.simclr_loss(h[:b], h[b:], variant(cfg.rae, "simclr_loss"), cfg.rae.simclr_temperature)
  if "barlow" in regs:
    h = f32(module.project_barlow(zc[:2 * b], True))
    losses["barlow"] = R.barlow_loss(h[:b], h[b:], cfg.rae.barlow_lambda, variant(cfg.rae, "barlow_similarity"))
  return x_hat, losses


def make_loss_fn(model: RAE, cfg: ml_collections.ConfigDict):
  """A member's loss. In a mixed sweep each member takes the forward pass of its own regularizers
  (`lax.switch` on hparams['branch']): under `lax.map` only that pass runs, under vmap every pass runs and
  `select` keeps the member's (the cost of one program per figure on an accelerator; see bench_rae.py)."""
  union = tuple(model.regularizers)
  sets = branches(cfg) if is_mixed(cfg) else [union]
  aug = augment.AugmentParams(**cfg.augment.to_dict())
  dtype = precision.compute_dtype(cfg.train.get("compute_dtype", "float32"))
  ema = uses_ema_target(cfg)

  def forward(regs, target_encode):
    def run(params, batch_stats, x, exemplar, labels, rng):
      (x_hat, losses), updates = model.apply(
          {"params": params, "batch_stats": batch_stats}, x, exemplar, labels, rng, regs, cfg, aug, target_encode,
          method=_forward, mutable=["batch_stats"])
      zero = jnp.zeros((), jnp.float32)   # a term the member does not train: the same outputs for every branch
      return x_hat, {r: losses.get(r, zero) for r in union}, updates["batch_stats"]
    return run

  def loss_fn(params, batch_stats, hparams, batch, rng):
    x = batch["image"]
    target_encode, new_target = None, None
    if ema:
      # MoCo order (the authors' SimCLR): move the target towards the current encoder, then encode view B with it.
      batch_stats = dict(batch_stats)
      new_target = R.ema_update(batch_stats.pop("simclr_target"), params["encoder"],
                                variant(cfg.rae, "simclr_ema_momentum"))
      target_vars = {"params": {"encoder": precision.cast_floating(new_target, dtype)},
                     "batch_stats": {"encoder": batch_stats["encoder"]}}
      target_encode = lambda xb: R.sg(model.apply(target_vars, xb, True, method=RAE.encode,
                                                  mutable=["batch_stats"])[0][0])
    args = (precision.cast_floating(params, dtype), batch_stats, x.astype(dtype), batch["exemplar"].astype(dtype),
            batch["label"], rng)
    if len(sets) == 1:
      x_hat, losses, stats = forward(sets[0], target_encode)(*args)
    else:
      x_hat, losses, stats = jax.lax.switch(hparams["branch"], [forward(r, target_encode) for r in sets], *args)
    recon = R.reconstruction_loss(x, x_hat)
    reg = sum(hparams["beta"][REGULARIZERS.index(r)] * l for r, l in losses.items())
    total = recon + reg
    new_stats = stats if new_target is None else {**stats, "simclr_target": new_target}
    return total, (new_stats, {"recon": recon, **losses})

  return loss_fn


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


def load_split(cfg: ml_collections.ConfigDict, split: str, limit: int = 0) -> dict[str, Any]:
  dc = cfg.data
  d = data_lib.load(dc.name, split, data_dir=dc.data_dir or None, build_dir=dc.build_dir or None,
                    image_size=dc.image_size)
  if limit and limit < len(d["labels"]):
    # A prefix of whole classes keeps every kept class complete (exemplars stay inside the subset).
    keep_classes = np.unique(d["labels"][:limit])
    rows = np.flatnonzero(np.isin(d["labels"], keep_classes))
    _, labels = np.unique(d["labels"][rows], return_inverse=True)
    d = {"images": d["images"][rows], "labels": labels.astype(np.int32)}
    d["exemplar_index"] = data_lib.select_exemplars(d["images"], d["labels"])
  return d


def encode_fn(model: RAE, kl_latent: str = "sample"):
  """jit: (variables, uint8 images [N, H, W], key) → the latents [N, d] the decoder was trained on (codewords with
  VQ, a posterior sample with KL unless kl_latent='mean'), in eval mode, in chunks of 500."""
  return jax.jit(lambda variables, images_u8, key: encode_latents(model, variables, images_u8, key, kl_latent))


def evaluate_sweep(model: RAE, states: sweep.TrainState, cfg, test: pipeline.DeviceSplit,
                   members: list[dict[str, Any]] | None = None) -> list[float]:
  """20-way 1-shot nearest-exemplar accuracy in each member's latent space (test classes), on the latents its
  decoder was trained on (a mixed sweep's member: its own model's)."""
  members = members or sweep_members(cfg)[0]
  encoders, models = {}, {}
  accs = []
  for i in range(states.step.shape[0]):
    st = sweep.take_member(states, i)
    _, m_model, variables = member_model(cfg, members[i], model.num_classes,
                                         {"params": st.params, "batch_stats": st.batch_stats}, models)
    if m_model not in encoders:
      encoders[m_model] = encode_fn(m_model, cfg.eval.get("kl_latent", "sample"))
    z = encoders[m_model](variables, test.images, jax.random.PRNGKey(cfg.seed))
    accs.append(float(nearest_exemplar_accuracy(z, test, jax.random.PRNGKey(cfg.seed), n_way=cfg.eval.n_way,
                                                episodes=cfg.eval.episodes)))
  return accs


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


def train_and_evaluate(cfg: ml_collections.ConfigDict, workdir: str, resume: bool = False) -> dict[str, Any]:
  members, _ = sweep_members(cfg)
  train = load_split(cfg, cfg.data.split, cfg.data.max_train_examples)
  test = load_split(cfg, cfg.data.eval_split)
  num_classes = int(train["labels"].max()) + 1
  model = build_model(cfg, num_classes)
  spe = pipeline.steps_per_epoch(len(train["labels"]), cfg.train.batch_size)
  if spe == 0:
    raise ValueError(f"batch_size {cfg.train.batch_size} exceeds the {len(train['labels'])} training drawings")
  tx = make_optimizer(cfg, spe)
  init_fn = functools.partial(init_variables, model, cfg)
  states, _ = loop.fit(workdir=workdir, config=cfg, init_fn=init_fn, loss_fn=make_loss_fn(model, cfg), tx=tx,
                       hparams=sweep_hparams(cfg), members=members, data=pipeline.to_device(train),
                       resume=resume, desc="rae")
  # Written once training has run: a run refused for its workdir (fit raises first) leaves the old run.json.
  distributed.write_text(pathlib.Path(workdir, "run.json"),
                         json.dumps({"num_classes": num_classes, "steps_per_epoch": spe}))
  accs = evaluate_sweep(model, states, cfg, pipeline.to_device(test), members)
  last = {r["member"]: r for r in loop.read_metrics(workdir) if r["epoch"] == cfg.train.epochs}
  diverged = loop.diverged_members(workdir)
  summary = {"members": [{**m, "oneshot_accuracy": a, "recon": last.get(i, {}).get("recon"),
                          "nonfinite_steps": int(jax.device_get(states.nonfinite_steps[i])),
                          "diverged": i in diverged}
                         for i, (m, a) in enumerate(zip(members, accs))],
             "n_way": cfg.eval.n_way, "episodes": cfg.eval.episodes, "eval_split": cfg.data.eval_split}
  distributed.write_text(pathlib.Path(workdir, "summary.json"), json.dumps(summary, indent=1))
  for m in summary["members"]:
    log.info("%s: %d-way 1-shot nearest-exemplar accuracy %.3f, recon %s%s", m["name"], cfg.eval.n_way,
             m["oneshot_accuracy"], "—" if m["recon"] is None else f"{m['recon']:.2f}",
             " (DIVERGED: no finite step in an epoch; not a trained model)" if m["diverged"] else "")
  return summary
