"""RS-IMLE (and IMLE, ε = 0) few-shot synthesis on ~100 real drawings, both trained as ONE vmapped program.

    python -m ldm_jax.main --config=configs/imle.py --workdir=runs/imle_cat
    python -m ldm_jax.main --config=configs/imle.py:omniglot --workdir=runs/imle_greek \
        --config.data.category=Greek

Arg: `quickdraw_bitmap` (28×28, `data.category` a category name; default) or `omniglot` (48×48, an alphabet),
`tiny` for a smoke run (tests). Every ε in `imle.epsilons` is one member (0 = IMLE); `--resume` continues an
interrupted run to the same result. An epoch is one outer iteration (Algorithm 1: one pass over the set).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = common.parse_arg(arg, dataset="quickdraw_bitmap", tiny=False)
  qd = a.dataset == "quickdraw_bitmap"
  c = ml_collections.ConfigDict()
  c.job = "imle"
  c.seed = 0
  c.data = common.data_config(a.dataset)
  c.data.image_size = 28 if qd else 48
  c.data.category = "cat" if qd else "Greek"    # a QuickDraw category, or an Omniglot alphabet
  c.data.max_examples = 100                      # the few-shot set
  c.imle = ml_collections.ConfigDict({
      "generator": "small28" if qd else "small",   # 'paper' = the released widths (latent 1024)
      "epsilons": (0.0, 0.1),                     # one member per ε: IMLE and RS-IMLE side by side
      "pool_factor": 10,                          # m = pool_factor · n
      "inner_steps": 0,                           # L; 0 = n / batch_size (the authors' n/4 steps of batch 4)
      "batch_size": 4,
      "latent_noise": 1e-3,
      "projection_dim": 512,                      # the search space: fixed Gaussian projection, unit sphere
      "adaptive": False,                          # Adaptive IMLE's staleness rule for re-assigning latents
      "feature_weight": 0.0,                      # d = MSE + w·‖f(x) − f(G(z))‖², f = eval.critics_workdir's
                                                  # SimCLR features (in place of LPIPS); 0 = MSE only
  })
  c.train = ml_collections.ConfigDict({
      "epochs": 2000,                             # outer iterations, each one pass over the set (the paper: ~10,000)
      "lr": 2e-4,
      "b1": 0.9,
      "b2": 0.9,
      "weight_decay": 0.01,
      "checkpoint_every_epochs": 100,
      "log_every_epochs": 50,                     # one progress line per 50 epochs off a terminal
      "keep_checkpoints": 2,
  })
  c.eval = ml_collections.ConfigDict({
      "samples": 1000,
      "k": 3,                                     # precision / recall neighbourhood
      "critics_workdir": "",                      # features for the metrics; '' = a 64-d random pixel projection
      "grid": 12,
  })
  if a.tiny:
    c.data.max_examples = 24
    c.train.epochs = 4
    c.train.checkpoint_every_epochs = 2
    c.eval.samples = 64
  return c
