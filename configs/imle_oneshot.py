"""One-shot conditional IMLE and RS-IMLE in a trained RAE's latent space (in place of the diffusion model).

    python -m ldm_jax.main --config=configs/imle_oneshot.py --workdir=runs/imle_oneshot \
        --config.imle.rae_workdir=runs/proto --config.imle.rae_member=1 \
        --config.eval.critics_workdir=runs/critics

The RAE sweep fixes the data (its training split, one exemplar per class) and the latent space; every ε in
`imle.epsilons` is one member of one vmapped program (0 = IMLE). Test-character samples are written as
`samples_<method>.npz`, which `configs/evaluate.py` takes in `eval.sample_files`. Arg: `tiny` (tests).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = common.parse_arg(arg, tiny=False)
  c = ml_collections.ConfigDict()
  c.job = "imle_oneshot"
  c.seed = 0
  c.data = ml_collections.ConfigDict({"max_train_examples": 0})   # a prefix of whole classes; 0 = all
  c.imle = ml_collections.ConfigDict({
      "rae_workdir": "",
      "rae_member": 0,
      "epsilons": (0.0, 0.3),     # chord distances on the unit sphere of the standardised latents (0.1 rejects
                                  # nothing in a 64-d RAE space: selected samples sit ≈ 0.36 away)
      "pool_factor": 10,          # samples per class = pool_factor × drawings per class
      "inner_steps": 50,
      "batch_size": 64,
      "latent_noise": 1e-3,
      "noise_dim": 32,
      "width": 512,
      "depth": 3,
  })
  c.train = ml_collections.ConfigDict({
      "epochs": 400, "lr": 2e-4, "b1": 0.9, "b2": 0.9, "weight_decay": 0.01,   # an epoch = one outer iteration
      "checkpoint_every_epochs": 50, "log_every_epochs": 20, "keep_checkpoints": 2,
  })
  c.eval = ml_collections.ConfigDict({"classes": 20, "samples_per_class": 10, "critics_workdir": ""})
  if a.tiny:
    c.imle.update(inner_steps=5, batch_size=16, width=64, depth=2)
    c.train.update(epochs=4, checkpoint_every_epochs=2)
    c.eval.samples_per_class = 4
  return c
