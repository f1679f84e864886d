"""Originality vs recognizability of trained one-shot generators against humans (paper §5, Fig. 3/4/5).

    python -m ldm_jax.main --config=configs/evaluate.py:omniglot --workdir=runs/eval \
        --config.eval.critics_workdir=runs/critics \
        --config.eval.ldm_workdirs='("runs/ldm_proto", "runs/ldm_kl", "runs/pixel")' \
        --config.eval.sample_files='("other_model_samples.npz",)'

Arg: a dataset (`omniglot`, `quickdraw`), `tiny` for a smoke run (tests). The feature-importance study (Fig. 5,
ClickMe-QuickDraw human maps) runs with `--config.importance.enabled=True` on latent models trained on QuickDraw.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = common.parse_arg(arg, dataset="omniglot", tiny=False)
  c = ml_collections.ConfigDict()
  c.job = "evaluate"
  c.seed = 0
  c.data = common.data_config(a.dataset)
  c.eval = ml_collections.ConfigDict({
      "critics_workdir": "",       # a finished critics job (configs/critics.py)
      "critics_torch": (),         # or the authors' PyTorch critics: ("protonet.pt", "simclr.pt") (judge.py)
      "ldm_workdirs": (),          # finished LDM jobs: every model in <dir>/models/* is scored
      "sample_files": (),          # npz files (images [C, n, H, W], exemplars [C, H, W]) of any other model
      "samples_per_class": 50,     # generated samples per test exemplar
      "max_classes": 0,            # 0 = every test class
      "human_per_class": 19,       # real drawings per class for the human point (Omniglot: all but the exemplar)
      "guidance": 1.0,
      "sampler": "ddpm",
      "ddim_steps": 50,
      "ddim_eta": 0.0,
      "chunk": 4096,
      "seed": 0,
      "n_way": 20,                 # recognizability: 20-way 1-shot tasks, exemplars as the support
      "tasks_per_class": 10,       # every class is the query class of this many tasks
      "bins": 10,                  # generalization curves: samples sorted by originality
      "grid_classes": 12,
      "grid_rows": 5,
  })
  c.importance = ml_collections.ConfigDict({
      "enabled": False,
      "models": "closest",         # 'closest': each regularizer's model nearest to humans (Fig. 5); 'all'
      "weighting": "score",        # 'score': J·∇log p (Eq. 9); 'eps': J·ε̂ (the authors' code)
      "jacobian_at": "next",       # decoder Jacobian at z_{t−1} = p_ψ(z_t) (Eq. 40–41) | 'current': at z_t
      "variations": 10,            # sampling runs averaged per category, all conditioned on its one exemplar (§4.4)
      "guidance": 1.0,
      "batch": 250,                # sampling runs per call (exemplars × variations)
      "categories": 0,             # 0 = all 25 ClickMe categories; else the first ones (smoke runs)
      "seed": 0,
  })
  if a.dataset in ("quickdraw", "quickdraw_seen"):
    c.eval.human_per_class = 10
  if a.tiny:
    c.eval.samples_per_class = 10
    c.eval.max_classes = 20
    c.eval.tasks_per_class = 2
    c.eval.human_per_class = 10
    c.eval.grid_classes = 6
    c.eval.grid_rows = 2
  return c
