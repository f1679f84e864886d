"""The README's main job: a small one-shot latent diffusion model on Omniglot that finishes on a CPU.

    python -m ldm_jax.main --config=configs/demo.py --workdir=runs/demo

Stage 1 (`rae_job`, configs/rae.py): a prototype-regularised RAE beside a non-regularised one as one compiled
sweep, scored by 20-way 1-shot nearest-exemplar accuracy on the held-out characters. Stage 2 (`ldm_job`,
configs/ldm.py): a guided latent DDPM (the `small` UNet) on the prototype RAE's latents, then samples for 50
held-out characters' exemplars (`runs/demo/ldm/samples_0.png`) and their fidelity metrics. All RAEs of the sweep
get a diffusion model (one compiled program) with `--config.ldm_job.ldm.rae_members='()'`. Stage 3 (`critics_job`,
configs/critics.py): the two critics, briefly. Stage 4 (`eval_job`, configs/evaluate.py): originality,
recognizability and distance to the human point of the LDM's samples, and the plot
(`runs/demo/eval/originality_recognizability.png`). Override any stage, e.g. `--config.ldm_job.train.epochs=100`.
"""

import ml_collections

from configs import critics as critics_config
from configs import evaluate as evaluate_config
from configs import ldm as ldm_config
from configs import rae as rae_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  tiny = bool(arg and "tiny" in arg)
  r = rae_config.get_config("omniglot" + (",tiny" if tiny else ""))
  r.sweep.betas = (0.0, 1.0)
  l = ldm_config.get_config("omniglot,unet=small" + (",tiny" if tiny else ""))
  if not tiny:
    r.data.max_train_examples = 6000   # 300 training characters × 20 drawers
    r.train.batch_size = 32            # more updates per CPU minute than the paper's 128
    r.train.epochs = 8
    r.train.checkpoint_every_epochs = 2
    l.data.max_train_examples = 6000   # the same drawings
    l.ldm.rae_members = (1,)           # the prototype-regularised RAE
    # The paper's lr 1e-4 needs its ~1000 epochs; on a CPU budget lr 1e-3 for 150 epochs of batch 64 reaches a
    # denoising loss of ~0.10, where DDPM samples stop diverging (experiments/BENCHMARKS.md).
    l.train.lr = 1e-3
    l.train.batch_size = 64
    l.train.epochs = 150
    l.train.checkpoint_every_epochs = 50
    l.train.log_every_epochs = 10       # a progress line per 10 of the 150 short epochs
    l.eval.max_classes = 50
    l.eval.per_exemplar = 6
  l.data = r.data
  k = critics_config.get_config("omniglot" + (",tiny" if tiny else ""))
  e = evaluate_config.get_config("omniglot" + (",tiny" if tiny else ""))
  if not tiny:
    k.data.max_train_examples = 6000   # the same 300 training characters
    k.train.epochs = 3
    k.train.checkpoint_every_epochs = 1
    e.eval.max_classes = 50        # the LDM stage's 50 held-out characters
    e.eval.samples_per_class = 10
    e.eval.tasks_per_class = 5
  c = ml_collections.ConfigDict()
  c.job = "demo"
  c.rae_job = r
  c.ldm_job = l
  c.critics_job = k
  c.eval_job = e                       # its critics_workdir / ldm_workdirs are the demo's own stages
  c.demo = ml_collections.ConfigDict({"grid_classes": 20})
  return c
