"""Orbax checkpoints of a run: the full (stacked) train state plus a JSON record of the config and members.

A run directory holds `checkpoints/<epoch>/{state,meta}`. Restoring checks that the saved config equals the
current one (up to keys that may change on resume, e.g. the number of epochs) and refuses otherwise, naming the
keys that differ. Every finished step also gets a checksum manifest (`ldm_jax.manifest`), verified before it is
restored: orbax reads a flipped byte back as a wrong number.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

from ldm_jax import distributed, manifest
from ldm_jax.workdir import ExistingRunError  # noqa: F401  (raised here; one class for every refusal)

log = logging.getLogger(__name__)

# Keys that a resumed run may change without invalidating the checkpoint.
# (`eval`: every job's evaluation settings, applied after training.)
RESUMABLE_KEYS = ("train.epochs", "train.checkpoint_every_epochs", "train.log_every_epochs", "train.keep_checkpoints",
                  "train.steps", "train.checkpoint_every_steps", "train.log_every_steps", "train.resume", "eval",
                  "demo", "data.data_dir", "data.build_dir")


class ConfigMismatchError(ValueError):
  pass


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(flatten(v, key + "."))
    else:
      out[key] = list(v) if isinstance(v, tuple) else v
  return out


def config_diff(saved: dict, current: dict, ignore=RESUMABLE_KEYS) -> dict[str, tuple[Any, Any]]:
  """Keys whose values differ between two config dicts: {key: (saved, current)}."""
  a, b = flatten(saved), flatten(current)
  skip = lambda k: any(k == i or k.startswith(i + ".") for i in ignore)
  return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if not skip(k) and a.get(k) != b.get(k)}


class Checkpointer:
  """Saves and restores one run's stacked train state."""

  def __init__(self, workdir: str | pathlib.Path, config: dict, keep: int = 2):
    self.directory = pathlib.Path(workdir).absolute() / "checkpoints"
    self.config = config
    self.manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        item_names=("state", "meta"))

  def latest_epoch(self) -> int | None:
    return self.manager.latest_step()

  def save(self, epoch: int, state, meta: dict | None = None) -> None:
    self._write_manifests()   # of the previous (asynchronous) save, now finished
    meta = {"config": self.config, "epoch": epoch, **(meta or {})}
    self.manager.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     meta=ocp.args.JsonSave(meta)))

  def _write_manifests(self) -> None:
    self.manager.wait_until_finished()
    if not distributed.is_primary():
      return
    for step in self.manager.all_steps():
      step_dir = self.directory / str(step)
      if step_dir.is_dir() and not manifest.exists(step_dir):
        manifest.write(step_dir)

  def _verify(self, epoch: int) -> None:
    step_dir = self.directory / str(epoch)
    if manifest.exists(step_dir):
      manifest.verify(step_dir, f"checkpoint {step_dir}")
    else:   # killed between orbax's commit and the manifest, or written by an older ldm_jax
      log.warning("checkpoint %s has no checksum manifest; restoring it unverified", step_dir)

  def read_meta(self, epoch: int | None = None) -> dict:
    epoch = self.latest_epoch() if epoch is None else epoch
    self._verify(epoch)
    return self.manager.restore(epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def check_config(self, epoch: int | None = None) -> None:
    diff = config_diff(self.read_meta(epoch)["config"], self.config)
    if diff:
      lines = "\n".join(f"  {k}: checkpoint={a!r} now={b!r}" for k, a, b in ((k, *v) for k, v in diff.items()))
      raise ConfigMismatchError(f"the checkpoint in {self.directory} was written by another config; differing "
                                f"keys:\n{lines}")

  def restore(self, abstract_state, epoch: int | None = None):
    """(state, epoch) from the latest (or given) checkpoint, placed like `abstract_state` (ShapeDtypeStructs with
    shardings, e.g. from `jax.eval_shape`)."""
    epoch = self.latest_epoch() if epoch is None else epoch
    self.check_config(epoch)
    restored = self.manager.restore(epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
    return restored["state"], epoch

  def restore_or_start(self, state, resume: bool, total: int | None = None, length_key: str = "the run length",
                       unit: str = "epoch"):
    """(state, first unit): the fresh `state` and 0 in an empty workdir; the latest checkpoint (placed like
    `state`) with --resume; refuses to overwrite existing checkpoints otherwise, and refuses a checkpoint past
    `total` units (its parameters would be reported as those of a shorter run)."""
    latest = self.latest_epoch()
    if latest is None:
      return state, 0
    workdir = self.directory.parent
    if not resume:
      raise ExistingRunError(f"{workdir} already holds checkpoints (latest {unit} {latest}): pass --resume to "
                             f"continue that run, or choose another --workdir")
    if total is not None and latest > total:
      raise ConfigMismatchError(f"{workdir} holds a checkpoint at {unit} {latest}, past {length_key}={total}: resume "
                                f"with --config.{length_key}={latest} or more (the results would otherwise be those "
                                f"of {unit} {latest})")
    state, start = self.restore(abstract_like(state))
    logging.getLogger(__name__).info("resumed from %s %d", unit, start)
    return state, start

  def wait(self) -> None:
    self._write_manifests()

  def close(self) -> None:
    self.manager.close()


def abstract_like(tree, shardings=None):
  """ShapeDtypeStructs of a pytree (with a sharding for every leaf, or one for all)."""
  if shardings is None or not isinstance(shardings, jax.sharding.Sharding):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
                        tree)
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=shardings), tree)
