"""β sweeps of regularized autoencoders (paper §4.1, A.3, A.5).

    python -m ldm_jax.main --config=configs/rae.py:omniglot --workdir=runs/rae_proto
    python -m ldm_jax.main --config=configs/rae.py:omniglot --workdir=runs/rae_kl \
        --config.rae.regularizers='("kl",)' --config.sweep.regularizer=kl --config.sweep.betas='(1e-4,1e-3,1e-2)'

Arg: a dataset (`omniglot`, `quickdraw` (QuickDraw-FS settings: d = 128, 200 epochs, no lr decay)), `tiny` for a
seconds-long smoke run (tests), `reg=<regularizer>` to sweep one regularizer over the paper's A.5 range, `variant=code`
for the authors' released code where it differs from the paper
(projectors, SimCLR loss/head/EMA target, Barlow centring; configs/common.py: AUTHORS_CODE).
"""

import ml_collections

from configs import common
from ldm_jax import regularizer_registry

PAPER_BETAS = regularizer_registry.paper_betas()   # A.5's β ranges (ldm_jax.regularizer_registry)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = common.parse_arg(arg, dataset="omniglot", tiny=False, reg="prototype", variant="paper")
  qd = a.dataset in ("quickdraw", "quickdraw_seen")
  c = ml_collections.ConfigDict()
  c.job = "rae"
  c.seed = 0
  c.data = common.data_config(a.dataset)
  c.rae = common.rae_config(latent_dim=128 if qd else 64)
  c.rae.regularizers = (a.reg,)
  if a.variant == "code":
    c.rae.update(common.AUTHORS_CODE)
  elif a.variant != "paper":
    raise ValueError(f"variant must be 'paper' or 'code', got {a.variant!r}")
  c.augment = common.augment_config()
  # One regularizer's β swept (the others at rae.beta), or `members`: a mixed sweep, each member its own
  # regularizers and β ('kl=0.001', 'prototype=2,barlow=30', 'none'; then betas=()), one program for a whole figure.
  c.sweep = ml_collections.ConfigDict({"regularizer": a.reg, "betas": tuple(float(b) for b in PAPER_BETAS[a.reg]),
                                       "members": ()})
  c.train = common.rae_train_config(epochs=200 if qd else 300)
  if qd:
    c.train.lr_decay_every_epochs = 0
  c.mesh = common.mesh_config()
  # One-shot accuracy on the latents the decoder was trained on (KL: 'sample' | 'mean'; VQ: codewords).
  c.eval = ml_collections.ConfigDict({"n_way": 20, "episodes": 500, "kl_latent": "sample"})
  if a.tiny:
    c.data.max_train_examples = 1280
    c.sweep.betas = (0.0, 1.0)
    c.train.epochs = 2
    c.train.batch_size = 64
    c.train.checkpoint_every_epochs = 1
    c.eval.episodes = 50
  return c
