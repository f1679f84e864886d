"""Guided latent diffusion models over a trained RAE sweep, or the pixel-space baseline (paper §4.2, A.4).

    python -m ldm_jax.main --config=configs/ldm.py:omniglot --workdir=runs/ldm_proto \
        --config.ldm.rae_workdir=runs/rae_proto          # one diffusion model per RAE of the sweep
    python -m ldm_jax.main --config=configs/ldm.py:omniglot,space=pixel --workdir=runs/pixel

Arg: a dataset (`omniglot`, `quickdraw`), `unet=paper|small`, `space=latent|pixel`, `tiny` for a smoke run.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = common.parse_arg(arg, dataset="omniglot", tiny=False, unet="paper", space="latent")
  c = ml_collections.ConfigDict()
  c.job = "ldm"
  c.seed = 0
  c.data = common.data_config(a.dataset)
  c.ldm = ml_collections.ConfigDict({
      "space": a.space,
      "unet": a.unet,
      "rae_workdir": "",     # a trained RAE sweep (configs/rae.py); required in latent space
      "rae_members": (),     # () = a diffusion model for every RAE of the sweep; else their indices
      "conv_impl": "auto",   # pixel-space denoiser's convolutions
      "kl_latent": "sample",  # a KL RAE's latents: 'sample' (Eq. 6, the authors' code) | 'mean'; VQ: codewords
  })
  c.diffusion = common.diffusion_config()
  c.train = common.ldm_train_config()
  c.mesh = common.mesh_config()
  c.eval = common.sample_config()
  if a.tiny:
    c.ldm.unet = "small"
    c.data.max_train_examples = 1280
    c.diffusion.timesteps = 50
    c.train.epochs = 3
    c.train.batch_size = 64
    c.train.checkpoint_every_epochs = 1
    c.eval.per_exemplar = 4
    c.eval.max_classes = 20
  return c
