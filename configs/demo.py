"""The README's main job: a small one-shot pipeline on Omniglot that finishes in minutes on a CPU.

    python -m ldm_jax.main --config=configs/demo.py --workdir=runs/demo

Today it trains a prototype-regularised RAE next to a non-regularised one (one compiled sweep), scores both by
20-way 1-shot nearest-exemplar accuracy on the held-out characters, and writes the reconstructions of the test
exemplars. The latent diffusion stage and the originality/recognizability evaluation extend this config.
"""

import ml_collections

from configs import rae as rae_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = rae_config.get_config("omniglot" + (f",{arg}" if arg else ""))
  c.job = "demo"
  c.sweep.betas = (0.0, 1.0)
  if not (arg and "tiny" in arg):
    c.data.max_train_examples = 6000   # 300 training characters × 20 drawers
    c.train.batch_size = 32            # more updates per CPU minute than the paper's 128
    c.train.epochs = 8
    c.train.checkpoint_every_epochs = 2
  c.demo = ml_collections.ConfigDict({"grid_classes": 20})
  return c
