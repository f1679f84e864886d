"""The host side of training — the one loop every trainer runs (`run`): resume, per-member metrics and NaN
accounting, progress lines, TensorBoard, checkpoints. No model knowledge.

A trainer hands `run` its stacked member states and an `advance(states, unit) → (states, metrics)` that does one
unit of work as compiled programs: an epoch of the sweep trainer (RAE, LDM, critics: `fit`), an outer iteration =
one pass over the few-shot set of (RS-)IMLE, a step of SketchEmbedNet. Host code runs only between units: one
device→host transfer of the unit's metrics, then logging and, every few units, an orbax checkpoint.
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
  """Appends one JSON line per (unit, member) to `metrics.jsonl`; `unit` names the counter ('epoch', 'step')."""

  def __init__(self, path: pathlib.Path, truncate_after_epoch: int | None = None, unit: str = "epoch"):
    self.path = path
    self.enabled = distributed.is_primary()  # one writer in a multi-host run
    # drop lines a killed run wrote after its checkpoint (a resumed run writes them again)
    if self.enabled and truncate_after_epoch is not None and path.exists():
      keep = [line for line in path.read_text().splitlines()
              if line.strip() and json.loads(line).get(unit, 0) <= truncate_after_epoch]
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
    record.update({k: None for k in record if k != "nonfinite_steps" and not k.endswith("_seconds")})
  return record


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  h, m, sec = seconds // 3600, seconds // 60 % 60, seconds % 60
  return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s" if m else f"{sec}s"


def progress_line(desc: str, epoch: int, total: int, losses: list[float | None], examples_per_second: float,
                  eta_seconds: float | None, unit: str = "epoch") -> str:
  """One line a person can follow in a log file: 'rae epoch 3/6 · loss 223.2 228.4 · 512 ex/s · ETA 2m10s'
  (members' losses in order, or min/median/max beyond 8 members; a diverged member's loss shows as nan)."""
  vals = [float("nan") if v is None else v for v in losses]
  if len(vals) <= 8:
    loss = " ".join(f"{v:.4g}" for v in vals)
  else:
    q = np.nanpercentile(vals, [0, 50, 100]) if np.isfinite(vals).any() else [float("nan")] * 3
    loss = f"min {q[0]:.4g} median {q[1]:.4g} max {q[2]:.4g} ({len(vals)} members)"
  eta = "" if eta_seconds is None else f" · ETA {_duration(eta_seconds)}"
  return f"{desc} {unit} {epoch}/{total} · loss {loss} · {examples_per_second:,.0f} ex/s{eta}"


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
  states, start = ckpt.restore_or_start(states, resume, tc.epochs, "train.epochs")
  if jax.process_count() > 1:  # host copies: each process places the same arrays on its share of the global mesh
    hparams, data = jax.device_get((hparams, data))
  hparams = sharding.shard_members(hparams, mesh)
  data = jax.device_put(data, sharding.member_sharding(mesh) if member_data else sharding.replicated(mesh))
  mode = sweep.resolve_sweep_mode(tc.sweep_mode, mesh.size)
  epoch_fn = sweep.make_epoch_fn(loss_fn, tx, tc.batch_size, mesh if mode != "sequential" else None, mode,
                                 member_data=member_data)
  steps = pipeline.steps_per_epoch(data.num_examples, tc.batch_size)
  states = run(workdir=workdir, config=config, states=states, advance=lambda st, _: epoch_fn(st, hparams, data),
               start=start, total=tc.epochs, members=members, steps_per_unit=steps,
               examples_per_unit=steps * tc.batch_size, checkpoint_every=tc.checkpoint_every_epochs,
               log_every=tc.get("log_every_epochs", 1), desc=desc, checkpointer=ckpt, meta=meta,
               tensorboard_on=tc.get("tensorboard", False))
  if jax.process_count() > 1:
    states = distributed.to_host(states)
  return states, mesh


def run(*, workdir: pathlib.Path, config, states, advance: Callable, start: int, total: int, members: list[dict],
        steps_per_unit: int, examples_per_unit: int, checkpoint_every: int, log_every: int, desc: str,
        checkpointer: checkpoint.Checkpointer, unit: str = "epoch", meta: dict | None = None,
        tensorboard_on: bool = False, record_every: int = 1):
  """The one host loop: units start+1..total of `advance(states, unit index) → (states, metrics)`, whose metrics
  hold one value per member ([K] arrays) including `nonfinite_steps` (of `steps_per_unit`: the trainer skips a
  non-finite step, keeping that member's last finite state). Per unit and member: one `metrics.jsonl` line
  (or every `record_every` units, and at any unit with a non-finite step; a member with no finite step reports
  null means, and a warning); every `log_every` units one progress line
  off a terminal (a tqdm bar on one); a checkpoint every `checkpoint_every` units and at the last; a
  FloatingPointError once every member went a whole unit without a finite step (the checkpoint keeps the last
  finite states). Lines a killed run wrote past its checkpoint are dropped on resume, so the file is the same as
  an uninterrupted run's. Returns the final states.

  The host waits for the device only at units it must act on (recorded, logged or checkpointed, and the last):
  the metrics of the units between stay on the device and come over in one transfer there, so a trainer whose
  unit is one small step (SketchEmbedNet) keeps the device busy between log intervals. Units fetched together
  share their window's wall time."""
  k = len(members)
  distributed.write_text(workdir / "config.json", json.dumps(config.to_dict(), indent=1, default=str))
  distributed.write_text(workdir / "members.json", json.dumps(members, indent=1))
  writer = MetricsWriter(workdir / "metrics.jsonl", truncate_after_epoch=start, unit=unit)
  every, record_every = max(1, checkpoint_every), max(1, record_every)
  # A progress bar on a terminal; elsewhere (CI, nohup, SLURM) one log line per `log_every` units.
  bar = tqdm(range(start + 1, total + 1), desc=desc, initial=start, total=total, disable=None)
  log_every = 0 if not bar.disable else max(1, log_every)
  sync_every = math.gcd(record_every, every, log_every) if log_every else math.gcd(record_every, every)
  seconds = []
  board = tensorboard.Board(workdir, tensorboard_on)
  records, pending, t0 = [], [], time.perf_counter()
  for u in bar:
    states, metrics = advance(states, u - 1)
    pending.append((u, metrics))
    if u % sync_every and u != total:
      continue
    fetched = jax.device_get([m for _, m in pending])   # one wait for the device per window
    window = (time.perf_counter() - t0) / len(pending)
    diverged_at = None
    for (v, _), metrics in zip(pending, fetched):
      seconds.append(window)
      metrics[f"{unit}_seconds"] = np.full(k, window)  # the first window includes compilation
      records = [epoch_record(metrics, i, steps_per_unit) for i in range(k)]
      if _account(records, members, v, total, record_every, steps_per_unit, unit, writer, board):
        diverged_at = v if diverged_at is None else diverged_at
    pending, t0 = [], time.perf_counter()
    if log_every and (u % log_every == 0 or u == total) and distributed.is_primary():
      log.info("%s", progress_line(desc, u, total, [r.get("loss") for r in records],
                                   examples_per_unit * k / seconds[-1], eta_seconds(seconds, total - u), unit))
    if u % every == 0 or u == total:
      checkpointer.save(u, states, {"members": members, **(meta or {})})
    if diverged_at is not None:
      checkpointer.wait()
      raise FloatingPointError(f"every member's loss was non-finite for all of {unit} {diverged_at}; the last "
                               f"checkpoint in {checkpointer.directory} holds the last finite parameters")
  checkpointer.wait()
  checkpointer.close()
  if records:
    board.hparams(members, records)
  board.close()
  return states


def _account(records, members, u: int, total: int, record_every: int, steps_per_unit: int, unit: str,
             writer: MetricsWriter, board) -> bool:
  """Writes unit `u`'s records where they are due (and wherever a step was non-finite), warns of non-finite
  steps; True when every member went the whole unit without a finite step."""
  recorded = u % record_every == 0 or u == total or any(r["nonfinite_steps"] for r in records)
  if recorded:
    board.epoch(u, members, records)
  diverged = 0
  for i, (member, record) in enumerate(zip(members, records)):
    if recorded:
      writer.write({unit: u, "member": i, **member, **record})
    if record["nonfinite_steps"] > 0:
      log.warning("member %d (%s): %d of %d steps non-finite (skipped) in %s %d", i, member.get("name", ""),
                  int(record["nonfinite_steps"]), steps_per_unit, unit, u)
    diverged += record["nonfinite_steps"] >= steps_per_unit
  return diverged == len(members)


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
