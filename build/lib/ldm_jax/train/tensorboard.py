"""Optional TensorBoard event files beside `metrics.jsonl` (`train.tensorboard=True`), written through tensorboardX
(no TensorFlow): every member's epoch metrics as scalars, its hyperparameters (β) with its final metrics, and the
jobs' sample grids as images. Off by default; `pip install 'ldm_jax[tensorboard]'`."""

from __future__ import annotations

import importlib.util
import pathlib
from typing import Any

import numpy as np

from ldm_jax import distributed

MISSING = "train.tensorboard=True needs tensorboardX: pip install 'ldm_jax[tensorboard]' (or tensorboardX)"


def available() -> bool:
  return importlib.util.find_spec("tensorboardX") is not None


def _tag(i: int, member: dict[str, Any]) -> str:
  """'member_<i>' (TensorBoard rewrites ':' and '=' in tags; the member's name and β are in its hparams row)."""
  return f"member_{i}"


class Board:
  """A run's event files under `<workdir>/tensorboard`; every method is a no-op when disabled or off process 0."""

  def __init__(self, workdir: str | pathlib.Path, enabled: bool):
    self.writer = None
    if enabled and distributed.is_primary():
      if not available():
        raise ImportError(MISSING)
      from tensorboardX import SummaryWriter
      self.logdir = pathlib.Path(workdir) / "tensorboard"
      self.writer = SummaryWriter(str(self.logdir))

  def epoch(self, epoch: int, members: list[dict], records: list[dict[str, Any]]) -> None:
    if self.writer is None:
      return
    for i, (member, record) in enumerate(zip(members, records)):
      for key, value in record.items():
        if value is not None and np.isfinite(value):
          self.writer.add_scalar(f"{key}/{_tag(i, member)}", value, epoch)
    self.writer.flush()

  def hparams(self, members: list[dict], records: list[dict[str, Any]]) -> None:
    """One hparams row per member: its β vector against its last epoch's metrics."""
    if self.writer is None:
      return
    for i, (member, record) in enumerate(zip(members, records)):
      hp = {"member": i, "name": str(member.get("name", i)),
            **{f"beta.{k}": float(v) for k, v in (member.get("beta") or {}).items()}}
      metrics = {f"final/{k}": v for k, v in record.items() if v is not None and np.isfinite(v)}
      self.writer.add_hparams(hp, metrics, name=f"member_{i}")

  def image(self, tag: str, png: str | pathlib.Path, step: int = 0) -> None:
    """A written PNG (e.g. a sample grid) as an image event."""
    if self.writer is None:
      return
    from PIL import Image
    self.writer.add_image(tag, np.asarray(Image.open(png).convert("RGB")), step, dataformats="HWC")
    self.writer.flush()

  def close(self) -> None:
    if self.writer is not None:
      self.writer.close()
