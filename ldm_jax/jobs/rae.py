"""The RAE job: a β sweep of regularized autoencoders trained as one compiled program (paper §4.1, A.2, A.3),
then each member's 20-way 1-shot nearest-exemplar accuracy. The trained sweep loads as a library object
(`ldm_jax.rae.load_sweep`).
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

from ldm_jax import augment, distributed, regularizer_registry
from ldm_jax import data as data_lib
from ldm_jax import regularizers as R
from ldm_jax.data import pipeline
from ldm_jax.eval.oneshot import nearest_exemplar_accuracy
from ldm_jax.models.rae import RAE
from ldm_jax.rae import (
  branches,
  build_model,
  encode_fn,
  init_variables,
  is_mixed,
  make_optimizer,
  member_model,
  sweep_hparams,
  sweep_members,
  uses_ema_target,
  variant,
)
from ldm_jax.regularizer_registry import REGULARIZERS
from ldm_jax.train import loop, precision, sweep

log = logging.getLogger(__name__)
CONTRASTIVE = regularizer_registry.with_views("augmented_pair")   # trained on two augmented views
EXEMPLAR_VIEW = regularizer_registry.with_views("exemplar")       # the class exemplar encoded beside x


def _forward(module: RAE, x, exemplar, labels, rng, regs, cfg, aug: augment.AugmentParams, target_encode=None):
  """One training forward pass in x's dtype (the compute dtype); returns the reconstruction and each active loss,
  both in float32 (loss terms are reduced in f32 whatever the compute dtype). `target_encode`, when given, maps
  SimCLR's view B to the momentum target's latents (the authors' code); otherwise both views use this encoder."""
  b, f32 = x.shape[0], lambda a: a.astype(jnp.float32)
  k_a, k_b, k_kl = jax.random.split(rng, 3)
  contrastive = any(r in regs for r in CONTRASTIVE)
  # Algo. 3/4: with a contrastive regularizer the decoder sees view A and reconstructs x.
  views = [augment.augment_batch(k_a, x, aug), augment.augment_batch(k_b, x, aug)] if contrastive else [x]
  if any(r in regs for r in EXEMPLAR_VIEW):
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
  zc = z.astype(x.dtype)
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


def train_and_evaluate(cfg: ml_collections.ConfigDict, workdir: str, resume: bool = False) -> dict[str, Any]:
  members, _ = sweep_members(cfg)
  train = data_lib.load_split(cfg, cfg.data.split, cfg.data.max_train_examples)
  test = data_lib.load_split(cfg, cfg.data.eval_split)
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
