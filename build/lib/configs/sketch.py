"""SketchEmbedNet: learn to sketch images as strokes; embeddings for few-shot classification, one-shot sketching.

    python -m ldm_jax.main --config=configs/sketch.py --workdir=runs/sketch            # the paper's sizes (GPU)
    python -m ldm_jax.main --config=configs/sketch.py:cpu --workdir=runs/sketch_cpu    # a short CPU run

Arg: the stroke source (`omniglot`: Lake's labelled stroke subsets with their images, default; `omniglot_npz`:
sketch-rnn's unlabelled Omniglot strokes; `quickdraw`), `cpu` for a small model and short curriculum, `tiny` for a
smoke run (tests). Few-shot evaluation is always on Omniglot's Vinyals test classes.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = common.parse_arg(arg, source="omniglot", cpu=False, tiny=False)
  c = ml_collections.ConfigDict()
  c.job = "sketch"
  c.seed = 0
  c.data = ml_collections.ConfigDict({
      "source": a.source,
      "split": "",               # '' = the source's training split (omniglot: background; npz: train)
      "max_len": 64,             # T; longer drawings are dropped and counted
      "image_size": 28,
      "rdp_epsilon": -1.0,       # < 0 = the source's default (2 for Lake's Omniglot strokes; others simplified)
      "variant": "simplified",   # QuickDraw ndjson variant
      "max_examples": 0,
      "data_dir": "",
      "build_dir": "",
  })
  c.model = ml_collections.ConfigDict({
      "encoder": "conv4",        # 'conv4' | 'resnet12'
      "z_dim": 256,
      "units": 1024,
      "hyper_units": 512,
      "hyper_embedding": 64,
      "mixtures": 30,
  })
  c.train = ml_collections.ConfigDict({
      "steps": 300_000,
      "batch_size": 256,
      "lr": 1e-3,
      "lr_decay": 0.85,
      "lr_decay_every": 15_000,
      "clip": 1.0,               # element-wise gradient clipping
      "alpha_increment": 0.05,   # the pixel-loss curriculum: α += 0.05 every 10k steps up to α_max
      "alpha_every": 10_000,
      "alpha_max": 0.5,
      "log_every_steps": 100,
      "checkpoint_every_steps": 5_000,
      "keep_checkpoints": 2,
  })
  c.eval = ml_collections.ConfigDict({
      "fewshot_split": "vinyals_test",
      "max_classes": 0,          # 0 = every class of the split
      "settings": ((5, 1), (5, 5), (20, 1), (20, 5)),   # (way, shot), Table 1's columns
      "episodes": 1000,
      "generation_classes": 12,
      "samples_per_class": 5,
      "temperature": 0.1,
      "max_steps": 64,
      "interpolation_steps": 8,
      "critics_workdir": "",     # a critics run: score the one-shot sketches (originality, recognizability)
  })
  if a.cpu:
    c.model.update(units=256, hyper_units=128, hyper_embedding=16, mixtures=10)
    c.train.update(steps=1500, batch_size=64, alpha_every=150, lr_decay_every=1500, log_every_steps=25,
                   checkpoint_every_steps=250)
  if a.tiny:
    c.data.max_examples = 256
    c.model.update(z_dim=32, units=32, hyper_units=16, hyper_embedding=8, mixtures=3)
    c.train.update(steps=6, batch_size=16, alpha_every=2, log_every_steps=2, checkpoint_every_steps=3)
    c.eval.update(settings=((5, 1), (20, 1)), episodes=50, max_classes=120, generation_classes=4, samples_per_class=2,
                  interpolation_steps=4, max_steps=32)
  return c
