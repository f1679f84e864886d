"""The critics job: the two Omniglot critic networks, trained on the training characters at 50×50 (paper A.6).

* `protonet` (recognizability): one-shot prototypical training with each drawing's class exemplar as the support:
  every step is a B-way 1-shot task over the batch's exemplars (B = batch size, 60 by default as the paper's
  60-way tasks; two drawings of one class in a batch count as negatives of each other, as in the prototype
  regulariser), squared Euclidean distances in the 128-d metric space.
* `simclr` (originality): NT-Xent (τ = 0.5) between two augmented views (τ_A/τ_B of A.2.3) on the 128-d
  projection; the originality features are the 256-d features before it.

Each critic trains with the generic sweep trainer (one member) in `<workdir>/<critic>` and loads as a library
object (`ldm_jax.critic.load`).
"""

from __future__ import annotations

import json
import logging
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ldm_jax import augment, distributed
from ldm_jax import data as data_lib
from ldm_jax import regularizers as R
from ldm_jax.critic import build_model, load, make_optimizer
from ldm_jax.data import pipeline
from ldm_jax.models.critics import critic_input, embed_fn
from ldm_jax.train import loop

log = logging.getLogger(__name__)


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


def train_and_evaluate(cfg: ml_collections.ConfigDict, workdir: str, resume: bool = False) -> dict:
  from ldm_jax.eval import scores
  out = pathlib.Path(workdir)
  train = data_lib.load_split(cfg, cfg.data.split, cfg.data.max_train_examples)
  test = data_lib.load_split(cfg, cfg.data.eval_split)
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
    queries = pipeline.human_rows(test["labels"], test["exemplar_index"], cfg.critics.human_samples)
    rec = scores.recognizability(jnp.asarray(emb)[queries], jnp.asarray(emb)[np.asarray(test["exemplar_index"])],
                                 jax.random.PRNGKey(cfg.seed))
    summary["protonet"]["human_recognizability"] = float(rec.mean())
    log.info("protonet: 20-way 1-shot recognizability of the real test drawings %.3f (chance 0.05)",
             float(rec.mean()))
  distributed.write_text(out / "summary.json", json.dumps(summary, indent=1))
  return summary
