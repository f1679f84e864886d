"""Pieces shared by the job configs (imported by them; not a job itself)."""

import ml_collections

from ldm_jax.regularizer_registry import REGULARIZERS


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """'omniglot,tiny' or 'dataset=omniglot,tiny=True' → ConfigDict of the defaults updated from the arg (big_vision
  style): a bare word sets the boolean flag of that name, else the value of the first string default."""
  out = ml_collections.ConfigDict(defaults)
  for token in filter(None, (arg or "").split(",")):
    if "=" in token:
      k, v = token.split("=", 1)
      if k not in defaults:
        raise ValueError(f"unknown config arg {k!r}; known: {sorted(defaults)}")
      out[k] = type(defaults[k])(v) if not isinstance(defaults[k], bool) else v.lower() in ("1", "true", "yes")
    elif token in defaults and isinstance(defaults[token], bool):
      out[token] = True
    else:
      strings = [k for k, v in defaults.items() if isinstance(v, str)]
      if not strings:
        raise ValueError(f"config arg {token!r} is not one of {sorted(defaults)}; use key=value")
      out[strings[0]] = token
  return out


# Train / evaluation splits per dataset name. QuickDraw's 'train' and 'test' are disjoint sets of categories (the
# one-shot task: evaluated on categories never seen in training); `quickdraw_seen` trains and evaluates on every
# category (generation of seen categories), under its own name so nobody mistakes it for the one-shot task.
SPLITS = {"omniglot": ("paper_train", "paper_test"), "quickdraw": ("train", "test"),
          "quickdraw_bitmap": ("train", "test"), "quickdraw_seen": ("all", "all"), "clickme": ("all", "all"),
          "quickdraw_fs": ("train", "test")}


def data_config(name: str = "omniglot") -> ml_collections.ConfigDict:
  if name not in SPLITS:
    raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(SPLITS)}")
  split, eval_split = SPLITS[name]
  return ml_collections.ConfigDict({
      "name": "quickdraw" if name == "quickdraw_seen" else name,
      "split": split,
      "eval_split": eval_split,
      "image_size": 48,
      "data_dir": "",          # raw archives; '' → env LDM_JAX_DATA_DIR → ~/.cache/ldm_jax
      "build_dir": "",         # built TFDS datasets; '' → env LDM_JAX_BUILD_DIR → ~/.cache/ldm_jax/tfds
      "max_train_examples": 0,  # 0 = all; else a prefix of whole classes (tests, smoke runs)
  })


def rae_config(latent_dim: int = 64) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      "latent_dim": latent_dim,
      "regularizers": ("prototype",),
      "beta": {r: 1.0 if r == "prototype" else 0.0 for r in REGULARIZERS},   # one key per registered regularizer
      "head_dim": 128,
      "vq_codes": 512,
      "vq_code_dim": 4,
      "vq_codebook_weight": 1.0,   # paper Eq. 12; the authors' code used 2.5
      "barlow_lambda": 5e-3,
      # Where the paper and the authors' code differ, the paper is the default; variant=code in configs/rae.py
      # selects every code choice (AUTHORS_CODE below).
      "prototype_projector": "linear",   # Eq. 5 h^PR: 'linear' (paper) | 'mlp' (code: Linear-BN-ReLU-Linear)
      "barlow_projector": "linear",      # Eq. 15 h^B: 'linear' (paper, to head_dim) | 'mlp' (code)
      "barlow_similarity": "cosine",     # Eq. 15-16 uncentred cosine (paper) | 'standardized' (code: BN'd)
      "simclr_loss": "eq14",             # Eq. 14 as written (paper) | 'nt_xent' (code: τ = simclr_temperature)
      "simclr_temperature": 0.5,         # used by 'nt_xent' only
      "simclr_head": "linear",           # Eq. 14 h^I: 'linear' (paper, to head_dim) | 'none' (code)
      "simclr_target": "online",         # view B through the same encoder (paper) | 'ema' (code: momentum copy)
      "simclr_ema_momentum": 0.99,
      "conv_impl": "auto",         # 'auto' | 'matmul' | 'im2col' | 'vjp' | 's2d' | 'xla' (experiments/BENCHMARKS.md)
  })


# The authors' released code where it differs from the paper (../shared/notes; latent_diffusion_reference.md).
AUTHORS_CODE = {"prototype_projector": "mlp", "barlow_projector": "mlp", "barlow_similarity": "standardized",
                "simclr_loss": "nt_xent", "simclr_head": "none", "simclr_target": "ema"}


def augment_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      "crop_scale": (0.1, 0.9),
      "crop_ratio": (0.8, 1.2),
      "rotation_deg": 15.0,
      "translate_px": 5.0,
      "zoom": (0.75, 1.25),
      "shear_deg": 10.0,
      "perspective_distortion": 0.5,
      "perspective_p": 0.5,
      "strength": 1.0,
  })


def rae_train_config(epochs: int = 300) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      "batch_size": 128,
      "epochs": epochs,
      "lr": 1e-4,
      "weight_decay": 1e-5,
      "lr_decay_every_epochs": 70,   # Omniglot: lr ÷ 4 every 70 epochs (A.3.2)
      "lr_decay_factor": 0.25,
      "checkpoint_every_epochs": 10,
      "log_every_epochs": 1,     # off a terminal: one progress line per N epochs
      "tensorboard": False,      # event files in <workdir>/tensorboard (tensorboardX; the `tensorboard` extra)
      "keep_checkpoints": 2,
      "sweep_mode": "auto",          # 'auto' | 'vmap' | 'map' | 'sequential' | 'unroll' (experiments/BENCHMARKS.md)
      "compute_dtype": "float32",    # 'bfloat16': bf16 forward/backward, f32 params and Adam (train/precision.py)
  })


def mesh_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({"sweep": -1, "data": -1})  # -1: as many devices on 'sweep' as divide it


def diffusion_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      "timesteps": 1000,
      "beta_start": 1.5e-3,
      "beta_end": 1.95e-2,
      "schedule": "linear",        # the paper; 'scaled_linear' (√β linear) is the authors' code
      "cond_drop_prob": 0.1,       # classifier-free guidance: null (zero) condition w.p. 0.1
  })


def ldm_train_config(epochs: int = 1000) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      "batch_size": 128,
      "epochs": epochs,
      "lr": 1e-4,
      "adam_eps": 1e-5,
      "weight_decay": 0.01,          # AdamW's default
      "lr_decay_every_epochs": 200,  # lr ÷ 10 every 200 epochs (A.4.3)
      "lr_decay_factor": 0.1,
      "checkpoint_every_epochs": 50,
      "log_every_epochs": 1,     # off a terminal: one progress line per N epochs
      "tensorboard": False,      # event files in <workdir>/tensorboard (tensorboardX; the `tensorboard` extra)
      "keep_checkpoints": 2,
      "sweep_mode": "auto",
      "compute_dtype": "float32",    # 'bfloat16': bf16 forward/backward, f32 params and Adam (train/precision.py)
  })


def sample_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      "guidance": 1.0,             # γ of Eq. 8
      "sampler": "ddpm",           # 'ddpm' (all T steps) | 'ddim'
      "ddim_steps": 50,
      "ddim_eta": 0.0,             # 0: deterministic DDIM; 1: DDPM's posterior variance on the strided schedule
      "per_exemplar": 10,          # samples per test exemplar
      "max_classes": 0,            # 0 = every test class
      "chunk": 4096,               # rows per sampler call
      "seed": 0,
      "grid_classes": 12,
      "grid_rows": 6,
  })
