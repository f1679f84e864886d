"""Config values checked before a job loads data or writes a file: each failure is one line naming the key.

`validate(config)` walks the config and every nested job config (the demo's stages): run lengths and batch sizes
must be positive, enumerated options known, and a β sweep must vary an active regularizer into distinct members.
Key and type errors are caught earlier, by the locked config (`ldm_jax.main`).
"""

from __future__ import annotations

import jax
import ml_collections

from ldm_jax.models.rae import KL_LATENTS, PROJECTORS, SIMCLR_HEADS
from ldm_jax.regularizer_registry import REGULARIZERS
from ldm_jax.regularizers import BARLOW_SIMILARITIES, SIMCLR_LOSSES
from ldm_jax.sampling import SAMPLERS
from ldm_jax.train.precision import COMPUTE_DTYPES
from ldm_jax.train.sweep import SWEEP_MODES

RUN_LENGTH_KEYS = ("epochs", "steps")   # an epoch-based job (RAE, LDM, critics, IMLE) | SketchEmbedNet
# Keys that were renamed when every trainer moved onto the one host loop: an override of the old name is told the new.
RENAMED_KEYS = {"train.iterations": "train.epochs",
                "train.checkpoint_every_iterations": "train.checkpoint_every_epochs"}
RENAMED_SECTIONS = {"evaluate": "eval", "sample": "eval"}   # every job's evaluation settings are its `eval` section


def renamed(key: str) -> str | None:
  """The current name of a config key that was renamed, or None."""
  if key in RENAMED_KEYS:
    return RENAMED_KEYS[key]
  section, _, rest = key.partition(".")
  return f"{RENAMED_SECTIONS[section]}.{rest}" if section in RENAMED_SECTIONS and rest else None
POSITIVE_KEYS = ("batch_size", *RUN_LENGTH_KEYS)


class ConfigError(ValueError):
  """A config value that would fail (or silently mislead) later; the message names the key."""


def _check_train(train: ml_collections.ConfigDict, prefix: str) -> None:
  units = [k for k in RUN_LENGTH_KEYS if k in train]
  if len(units) > 1:
    raise ConfigError(f"{prefix}train has both {units[0]} and {units[1]}: one run length, in one unit")
  for key in train:   # checkpoint/log intervals count the run's own unit
    if key.startswith(("checkpoint_every_", "log_every_")) and units and not key.endswith("_" + units[0]):
      raise ConfigError(f"{prefix}train.{key} counts another unit than train.{units[0]}")
  for key in POSITIVE_KEYS:
    if key in train and not train[key] > 0:
      raise ConfigError(f"{prefix}train.{key} must be positive, got {train[key]!r}")
  if "sweep_mode" in train and train.sweep_mode not in SWEEP_MODES:
    raise ConfigError(f"{prefix}train.sweep_mode must be one of {SWEEP_MODES}, got {train.sweep_mode!r}")
  if train.get("sweep_mode") == "unroll" and jax.device_count() > 1:   # the mesh spans every device
    raise ConfigError(f"{prefix}train.sweep_mode='unroll' runs on one device, and the mesh spans all "
                      f"{jax.device_count()}: use 'vmap' (or 'auto')")
  if "compute_dtype" in train and train.compute_dtype not in COMPUTE_DTYPES:
    raise ConfigError(f"{prefix}train.compute_dtype must be one of {COMPUTE_DTYPES}, got {train.compute_dtype!r}")
  if train.get("tensorboard", False):
    from ldm_jax.train import tensorboard
    if not tensorboard.available():
      raise ConfigError(f"{prefix}{tensorboard.MISSING}")
  if "keep_checkpoints" in train and train.keep_checkpoints < 1:
    raise ConfigError(f"{prefix}train.keep_checkpoints must be at least 1, got {train.keep_checkpoints!r}")


RAE_CHOICES = {"prototype_projector": PROJECTORS, "barlow_projector": PROJECTORS, "simclr_head": SIMCLR_HEADS,
               "simclr_loss": SIMCLR_LOSSES, "simclr_target": ("online", "ema"),
               "barlow_similarity": BARLOW_SIMILARITIES}


def _check_rae(rae: ml_collections.ConfigDict, prefix: str) -> None:
  for key, choices in RAE_CHOICES.items():
    if key in rae and rae[key] not in choices:
      raise ConfigError(f"{prefix}rae.{key} must be one of {choices}, got {rae[key]!r}")
  if "simclr_ema_momentum" in rae and not 0.0 <= rae.simclr_ema_momentum < 1.0:
    raise ConfigError(f"{prefix}rae.simclr_ema_momentum must be in [0, 1), got {rae.simclr_ema_momentum!r}")


def parse_member(spec: str) -> dict[str, float]:
  """A mixed sweep's member, 'prototype=2,barlow=30' (or 'none'), as {regularizer: β} with every β ≠ 0."""
  if spec.strip() == "none":
    return {}
  out = {}
  for part in spec.split(","):
    name, eq, value = part.strip().partition("=")
    if not eq or name not in REGULARIZERS or name in out:
      raise ConfigError(f"sweep.members: {spec!r} is not 'none' or 'reg=β,...' with distinct regularizers from "
                        f"{REGULARIZERS}")
    try:
      out[name] = float(value)
    except ValueError:
      raise ConfigError(f"sweep.members: β {value!r} in {spec!r} is not a number") from None
    if not out[name] > 0:
      raise ConfigError(f"sweep.members: β of {name} in {spec!r} must be > 0 (leave a term out to switch it off)")
  return out


def _mixed_betas(active, sweep) -> list[tuple[float, ...]]:
  if tuple(sweep.betas):
    raise ConfigError("sweep.members defines the sweep: set --config.sweep.betas='()' (both were given)")
  betas = []
  for spec in sweep.members:
    member = parse_member(spec)
    missing = [r for r in member if r not in active]
    if missing:
      raise ConfigError(f"sweep.members: {spec!r} uses {missing}, not in rae.regularizers={active} (the model "
                        f"holds the heads of every regularizer its members use)")
    betas.append(tuple(member.get(r, 0.0) for r in REGULARIZERS))
  if len(set(betas)) < len(betas):
    raise ConfigError(f"sweep.members={tuple(sweep.members)} gives identical members")
  return betas


def sweep_betas(rae: ml_collections.ConfigDict, sweep: ml_collections.ConfigDict) -> list[tuple[float, ...]]:
  """The β vector (in `REGULARIZERS` order) of every member of an RAE sweep; refuses a sweep that would train
  something other than what it names: an unknown or inactive swept regularizer, or two identical members.
  `sweep.members` (a mixed sweep: each member its own regularizers and β, e.g. ('kl=0.001', 'prototype=2,barlow=30',
  'none')) replaces `sweep.regularizer` / `sweep.betas`."""
  active = tuple(rae.regularizers)
  unknown = [r for r in active if r not in REGULARIZERS]
  if unknown:
    raise ConfigError(f"rae.regularizers: unknown {unknown}; known: {REGULARIZERS}")
  if tuple(sweep.get("members", ())):
    return _mixed_betas(active, sweep)
  values = tuple(sweep.betas)
  if values and sweep.regularizer not in active:
    raise ConfigError(f"sweep.regularizer={sweep.regularizer!r} is not in rae.regularizers={active}: the sweep "
                      f"would vary the β of an inactive term (set --config.sweep.regularizer to one of {active})")
  base = [float(rae.beta[r]) if r in active else 0.0 for r in REGULARIZERS]
  betas = []
  for v in values or (None,):
    b = list(base)
    if v is not None:
      b[REGULARIZERS.index(sweep.regularizer)] = float(v)
    betas.append(tuple(b))
  if len(set(betas)) < len(betas):
    raise ConfigError(f"sweep.betas={values} gives identical members (repeated β for {sweep.regularizer})")
  return betas


def _check_sampler(section: ml_collections.ConfigDict, prefix: str) -> None:
  if section.sampler not in SAMPLERS:
    raise ConfigError(f"{prefix}.sampler must be one of {SAMPLERS}, got {section.sampler!r}")
  if "ddim_steps" in section and not section.ddim_steps >= 1:
    raise ConfigError(f"{prefix}.ddim_steps must be at least 1, got {section.ddim_steps!r}")
  if "ddim_eta" in section and not 0.0 <= section.ddim_eta <= 1.0:
    raise ConfigError(f"{prefix}.ddim_eta must be in [0, 1] (1: DDPM's variance), got {section.ddim_eta!r}")


def validate(config: ml_collections.ConfigDict, prefix: str = "") -> None:
  """Raises ConfigError on the first inconsistent value of `config` (and of its nested job configs)."""
  if "train" in config:
    _check_train(config.train, prefix)
  if isinstance(config.get("rae"), ml_collections.ConfigDict):
    _check_rae(config.rae, prefix)
  for name, section in config.items():
    if isinstance(section, ml_collections.ConfigDict) and "kl_latent" in section \
        and section.kl_latent not in KL_LATENTS:
      raise ConfigError(f"{prefix}{name}.kl_latent must be one of {KL_LATENTS}, got {section.kl_latent!r}")
    if isinstance(section, ml_collections.ConfigDict) and "sampler" in section:
      _check_sampler(section, f"{prefix}{name}")
  if config.get("job") == "rae" or ("rae" in config and "sweep" in config):
    sweep_betas(config.rae, config.sweep)
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict) and "job" in value:
      validate(value, f"{prefix}{key}.")
