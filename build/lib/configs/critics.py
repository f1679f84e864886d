"""The two critic networks of the originality-vs-recognizability evaluation (paper A.6).

    python -m ldm_jax.main --config=configs/critics.py:omniglot --workdir=runs/critics

Arg: a dataset, `omniglot` (Conv4 critics at 50×50) or `quickdraw` (ResNet-18-like prototypical network, Conv3
SimCLR extractor, at 48×48, on every drawing of the ndjson subset), `tiny` for a smoke run (tests).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = common.parse_arg(arg, dataset="omniglot", tiny=False)
  c = ml_collections.ConfigDict()
  c.job = "critics"
  c.seed = 0
  c.data = common.data_config(a.dataset)
  qd = a.dataset in ("quickdraw", "quickdraw_seen")
  c.data.image_size = 48 if qd else 50       # the critics' input size
  c.critics = ml_collections.ConfigDict({
      "train": ("protonet", "simclr"),
      "arch": {"protonet": "resnet18" if qd else "conv4", "simclr": "conv3" if qd else "conv4"},
      "temperature": 0.5,                    # SimCLR's NT-Xent τ
      "human_samples": 19,                   # real test drawings per class for the human point
      "conv_impl": "auto",
  })
  c.augment = common.augment_config()
  c.train = ml_collections.ConfigDict({
      "batch_size": 60,                      # protonet: a 60-way 1-shot task per step
      "epochs": 60,
      "lr": 1e-3,
      "checkpoint_every_epochs": 10,
      "log_every_epochs": 1,     # off a terminal: one progress line per N epochs
      "tensorboard": False,      # event files in <workdir>/tensorboard (tensorboardX; the `tensorboard` extra)
      "keep_checkpoints": 2,
      "sweep_mode": "auto",
  })
  c.mesh = common.mesh_config()
  if a.tiny:
    c.data.max_train_examples = 320
    c.train.batch_size = 32
    c.train.epochs = 2
    c.train.checkpoint_every_epochs = 1
  return c
