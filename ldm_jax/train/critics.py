"""The critics job: the two Omniglot critic networks, trained on the training characters at 50×50 (paper A.6).

* `protonet` (recognizability): one-shot prototypical training with each drawing's class exemplar as the support:
  every step is a B-way 1-shot task over the batch's exemplars (B = batch size, 60 by default as the paper's
  60-way tasks; two drawings of one class in a batch count as negatives of each other, as in the prototype
  regulariser), squared Euclidean distances in the 128-d metric space.
* `simclr` (originality): NT-Xent (τ = 0.5) between two augmented views (τ_A/τ_B of A.2.3) on the 128-d
  projection; the originality features are the 256-d features before it.

Each critic trains with the generic sweep trainer (one member) in `<workdir>/<critic>` and loads with `load`.
"""

from __future__ import annotations

import json
import logging
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ldm_jax import augment, distributed, regularizers as R
from ldm_jax.data import pipeline
from ldm_jax.models.critics import build_critic, critic_input, embed_fn
from ldm_jax.train import loop, rae as rae_job

log = logging.getLogger(__name__)
CRITICS = {"protonet": "metric", "simclr": "projection"}


def build_model(cfg, critic: str):
  return build_critic(cfg.critics.arch[critic], CRITICS[critic], rae_job.resolve_conv_impl(cfg.critics.conv_impl))


def make_optimizer(cfg) -> optax.GradientTransformation:
  return optax.adam(cfg.train.lr)


def make_loss_fn(model, cfg, critic: str):
  aug = augment.AugmentParams(**cfg.augment.to_dict())
  size = cfg.data.image_size

  def loss_fn(params, batch_stats, hparams, batch, rng):
    del hparams
    x = batch["image"]
    if critic == "protonet":
      inputs = jnp.concatenate([x, batch["exemplar"]])
    else:
      k_a, k_b = jax.random.split(rng)
      inputs = jnp.concatenate([augment.augment_batch(k_a, x, aug), augment.augment_batch(k_b, x, aug)])
    inputs = critic_input(inputs, size)
    (_, head), updates = model.apply({"params": params, "batch_stats": batch_stats}, inputs, True,
                                     mutable=["batch_stats"])
    b = x.shape[0]
    if critic == "protonet":
      value = R.prototype_loss(head[:b], head[b:])
    else:
      value = R.nt_xent_loss(head[:b], head[b:], cfg.critics.temperature)
    return value, (updates["batch_stats"], {})

  return loss_fn


def train_one(cfg, critic: str, train: dict, workdir: pathlib.Path, resume: bool):
  model = build_model(cfg, critic)
  spe = pipeline.steps_per_epoch(len(train["labels"]), cfg.train.batch_size)
  if spe == 0:
    raise ValueError(f"batch_size {cfg.train.batch_size} exceeds the {len(train['labels'])} training drawings")
  tx = make_optimizer(cfg)
  size = cfg.data.image_size
  init_fn = lambda key: model.init(key, jnp.zeros((2, size, size, 1)), False)
  loop.fit(workdir=workdir, config=cfg, init_fn=init_fn, loss_fn=make_loss_fn(model, cfg, critic), tx=tx,
           hparams={"member": jnp.arange(1)}, members=[{"name": critic}], data=pipeline.to_device(train),
           resume=resume and (workdir / "checkpoints").exists(), desc=critic)
  distributed.write_text(workdir / "critic.json", json.dumps({"critic": critic, "steps_per_epoch": spe}))


def load(workdir: str | pathlib.Path, critic: str):
  """(model, variables) of a trained critic, alone."""
  d = pathlib.Path(workdir) / critic
  cfg = ml_collections.ConfigDict(json.loads((d / "config.json").read_text()))
  model = build_model(cfg, critic)
  size = cfg.data.image_size
  init_fn = lambda key: model.init(key, jnp.zeros((2, size, size, 1)), False)
  (variables,) = loop.restore_member_variables(d, cfg.to_dict(), init_fn, make_optimizer(cfg), 1, cfg.seed)
  return model, variables




def differentiable_features(model, variables, size: int):
  """(images [N, H, W] floats in [0, 1]) → features [N, 256], differentiable: `critic_input` without the final
  binarisation (whose gradient is zero), for feature-space training losses (e.g. IMLE's d in place of LPIPS)."""

  def features(images):
    x = jax.image.resize(images[..., None], (images.shape[0], size, size, 1), "bilinear")
    lo = jnp.min(x, axis=(1, 2, 3), keepdims=True)
    x = (x - lo) / jnp.maximum(jnp.max(x, axis=(1, 2, 3), keepdims=True) - lo, 1e-6)
    return model.apply(variables, x, False)[0]

  return features


def train_and_evaluate(cfg: ml_collections.ConfigDict, workdir: str, resume: bool = False) -> dict:
  from ldm_jax.eval import scores
  out = pathlib.Path(workdir)
  train = rae_job.load_split(cfg, cfg.data.split, cfg.data.max_train_examples)
  test = rae_job.load_split(cfg, cfg.data.eval_split)
  summary = {}
  for critic in cfg.critics.train:
    train_one(cfg, critic, train, out / critic, resume)
    records = loop.read_metrics(out / critic)
    first, last = records[0]["loss"], records[-1]["loss"]
    summary[critic] = {"loss_first_epoch": first, "loss_last_epoch": last}
  if "protonet" in cfg.critics.train:
    # The human point's recognizability: real test drawings as queries, exemplars as support.
    model, variables = load(out, "protonet")
    emb = np.asarray(embed_fn(model, True, cfg.data.image_size)(variables, jnp.asarray(test["images"])))
    split = pipeline.to_device(test)
    queries = pipeline.non_exemplar_rows(split, cfg.critics.human_samples)
    rec = scores.recognizability(jnp.asarray(emb)[queries], jnp.asarray(emb)[np.asarray(split.exemplar_index)],
                                 jax.random.PRNGKey(cfg.seed))
    summary["protonet"]["human_recognizability"] = float(rec.mean())
    log.info("protonet: 20-way 1-shot recognizability of the real test drawings %.3f (chance 0.05)",
             float(rec.mean()))
  distributed.write_text(out / "summary.json", json.dumps(summary, indent=1))
  return summary
