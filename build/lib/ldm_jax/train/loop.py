"""The host side of training: mesh, resume, epochs, per-member metrics and checkpoints. No model knowledge.

Host code runs only between compiled epochs: one device→host transfer of the epoch's metrics, then logging and,
every few epochs, an orbax checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import pathlib
import time
from typing import Any, Callable

import jax
import numpy as np
from tqdm.auto import tqdm

from ldm_jax import checkpoint, distributed, sharding
from ldm_jax.data import pipeline
from ldm_jax.train import sweep, tensorboard

log = logging.getLogger(__name__)


class MetricsWriter:
  """Appends one JSON line per (epoch, member) to `metrics.jsonl`."""

  def __init__(self, path: pathlib.Path, truncate_after_epoch: int | None = None):
    self.path = path
    self.enabled = distributed.is_primary()  # one writer in a multi-host run
    # drop lines a killed run wrote after its checkpoint
    if self.enabled and truncate_after_epoch is not None and path.exists():
      keep = [line for line in path.read_text().splitlines()
              if line.strip() and json.loads(line).get("epoch", 0) <= truncate_after_epoch]
      path.write_text("".join(line + "\n" for line in keep))

  def write(self, record: dict[str, Any]) -> None:
    if not self.enabled:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")


def epoch_record(metrics: dict[str, np.ndarray], member: int, steps: int) -> dict[str, Any]:
  """Member `member`'s epoch metrics as JSON values: an epoch with no finite step has no loss to report, so its
  means are None (null), never the 0.0 that a mean over zero finite steps would give."""
  record = {k: float(np.asarray(v)[member]) for k, v in metrics.items()}
  if record["nonfinite_steps"] >= steps:
    record.update({k: None for k in record if k not in ("nonfinite_steps", "epoch_seconds")})
  return record


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  h, m, sec = seconds // 3600, seconds // 60 % 60, seconds % 60
  return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s" if m else f"{sec}s"


def progress_line(desc: str, epoch: int, total: int, losses: list[float | None], examples_per_second: float,
                  eta_seconds: float | None) -> str:
  """One line a person can follow in a log file: 'rae epoch 3/6 · loss 223.2 228.4 · 512 ex/s · ETA 2m10s'
  (members' losses in order, or min/median/max beyond 8 members; a diverged member's loss shows as nan)."""
  vals = [float("nan") if v is None else v for v in losses]
  if len(vals) <= 8:
    loss = " ".join(f"{v:.4g}" for v in vals)
  else:
    q = np.nanpercentile(vals, [0, 50, 100]) if np.isfinite(vals).any() else [float("nan")] * 3
    loss = f"min {q[0]:.4g} median {q[1]:.4g} max {q[2]:.4g} ({len(vals)} members)"
  eta = "" if eta_seconds is None else f" · ETA {_duration(eta_seconds)}"
  return f"{desc} epoch {epoch}/{total} · loss {loss} · {examples_per_second:,.0f} ex/s{eta}"


def eta_seconds(epoch_seconds: list[float], epochs_left: int) -> float | None:
  """Remaining time from this run's epochs so far, leaving out the first (it includes compilation) once there
  are others."""
  times = epoch_seconds[1:] or epoch_seconds
  return float(np.mean(times)) * epochs_left if times else None


def diverged_members(workdir: str | pathlib.Path) -> set[int]:
  """Members of a run with at least one epoch in which no step was finite: their parameters stopped training
  (the sweep keeps the last finite ones), so their scores describe a broken model. Read from `metrics.jsonl`."""
  return {r["member"] for r in read_metrics(workdir) if r.get("loss", 0.0) is None}


def read_metrics(workdir: str | pathlib.Path, member: int | None = None) -> list[dict]:
  """Metric records of a run (of one member if given)."""
  lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
  records = [json.loads(line) for line in lines if line.strip()]
  return [r for r in records if member is None or r.get("member") == member]


def fit(*, workdir: str | pathlib.Path, config, init_fn: Callable, loss_fn: Callable, tx, hparams, members: list[dict],
        data, resume: bool = False, desc: str = "train", member_data: bool = False, meta: dict | None = None):
  """Trains the stacked sweep for `config.train.epochs` epochs; returns (states, mesh).

  Multi-host (after `distributed.initialize`): every process runs this with the same arguments; the mesh spans all
  devices, each process holds its members' shards, process 0 writes the metrics, orbax writes each shard once, and
  the returned states are gathered to every process (numpy) for the evaluation that follows.

  `data`: a `DeviceSplit` or `LatentSplit` shared by all members, or with `member_data` one per member (leading
  axis). `meta`: extra JSON saved with every checkpoint (e.g. each member's latent scaling).

  Raises:
    ExistingRunError: the workdir has checkpoints and `resume` is False (nothing is overwritten).
    ConfigMismatchError: resuming from a checkpoint of another config.
    FloatingPointError: every member of the sweep produced only non-finite losses in an epoch.
  """
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  tc = config.train
  k = len(members)
  mesh = sharding.make_mesh(k, tc.batch_size, config.mesh.sweep, config.mesh.data)
  ckpt = checkpoint.Checkpointer(workdir, config.to_dict(), keep=tc.keep_checkpoints)
  states = sweep.init_sweep(init_fn, tx, sweep.member_keys(config.seed, k), mesh)
  start = 0
  if ckpt.latest_epoch() is not None:
    if not resume:
      raise checkpoint.ExistingRunError(
          f"{workdir} already holds checkpoints (latest epoch {ckpt.latest_epoch()}): pass --resume to continue "
          f"that run, or choose another --workdir")
    latest = ckpt.latest_epoch()
    if latest > tc.epochs:
      raise checkpoint.ConfigMismatchError(
          f"{workdir} holds a checkpoint at epoch {latest}, past train.epochs={tc.epochs}: resume with "
          f"--config.train.epochs={latest} or more (the results would otherwise be those of epoch {latest})")
    states, start = ckpt.restore(checkpoint.abstract_like(states))
    log.info("resumed from epoch %d", start)
  distributed.write_text(workdir / "config.json", json.dumps(config.to_dict(), indent=1, default=str))
  distributed.write_text(workdir / "members.json", json.dumps(members, indent=1))
  if jax.process_count() > 1:  # host copies: each process places the same arrays on its share of the global mesh
    hparams, data = jax.device_get((hparams, data))
  hparams = sharding.shard_members(hparams, mesh)
  data = jax.device_put(data, sharding.member_sharding(mesh) if member_data else sharding.replicated(mesh))
  mode = sweep.resolve_sweep_mode(tc.sweep_mode, mesh.size)
  epoch_fn = sweep.make_epoch_fn(loss_fn, tx, tc.batch_size, mesh if mode != "sequential" else None, mode,
                                 member_data=member_data)
  writer = MetricsWriter(workdir / "metrics.jsonl", truncate_after_epoch=start)
  every = max(1, tc.checkpoint_every_epochs)
  # A progress bar on a terminal; elsewhere (CI, nohup, SLURM) one log line per `train.log_every_epochs`.
  bar = tqdm(range(start + 1, tc.epochs + 1), desc=desc, initial=start, total=tc.epochs, disable=None)
  log_every = 0 if not bar.disable else max(1, tc.get("log_every_epochs", 1))
  steps = pipeline.steps_per_epoch(data.num_examples, tc.batch_size)
  seconds = []
  board = tensorboard.Board(workdir, tc.get("tensorboard", False))
  records = []
  for epoch in bar:
    t0 = time.perf_counter()
    states, metrics = epoch_fn(states, hparams, data)
    metrics = jax.device_get(metrics)
    seconds.append(time.perf_counter() - t0)
    metrics["epoch_seconds"] = np.full(k, seconds[-1])  # the first epoch includes compilation
    diverged = []
    records = [epoch_record(metrics, i, steps) for i in range(k)]
    board.epoch(epoch, members, records)
    for i, (member, record) in enumerate(zip(members, records)):
      writer.write({"epoch": epoch, "member": i, **member, **record})
      if record["nonfinite_steps"] > 0:
        log.warning("member %d (%s): %d of %d steps non-finite (skipped) in epoch %d", i, member.get("name", ""),
                    int(record["nonfinite_steps"]), steps, epoch)
      if record["nonfinite_steps"] >= steps:
        diverged.append(i)
    if log_every and (epoch % log_every == 0 or epoch == tc.epochs) and distributed.is_primary():
      log.info("%s", progress_line(desc, epoch, tc.epochs, [r.get("loss") for r in records],
                                   steps * tc.batch_size * k / seconds[-1], eta_seconds(seconds, tc.epochs - epoch)))
    if epoch % every == 0 or epoch == tc.epochs:
      ckpt.save(epoch, states, {"members": members, **(meta or {})})
    if len(diverged) == k:
      ckpt.wait()
      raise FloatingPointError(f"every member's loss was non-finite for all of epoch {epoch}; the last checkpoint "
                               f"in {ckpt.directory} holds the last finite parameters")
  ckpt.wait()
  ckpt.close()
  if records:
    board.hparams(members, records)
  board.close()
  if jax.process_count() > 1:
    states = distributed.to_host(states)
  return states, mesh


def restore_member_variables(workdir: str | pathlib.Path, config: dict, init_fn: Callable, tx,
                             num_members: int, seed: int) -> list[dict]:
  """The latest checkpoint of a run written by `fit`, on one device, as one {'params', 'batch_stats'} per member
  (for evaluation or export: the optimizer state is restored and dropped)."""
  abstract = jax.eval_shape(lambda: sweep.init_sweep(init_fn, tx, sweep.member_keys(seed, num_members)))
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  states, _ = checkpoint.Checkpointer(workdir, config).restore(checkpoint.abstract_like(abstract, device))
  return [{"params": st.params, "batch_stats": st.batch_stats}
          for st in (sweep.take_member(states, i) for i in range(num_members))]


def steps_for_epochs(num_examples: int, batch_size: int, epochs: float) -> int:
  return int(math.ceil(epochs * pipeline.steps_per_epoch(num_examples, batch_size)))
