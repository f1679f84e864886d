"""The paper's studies as grids of runs of the one entry point: split over hosts, resumable, with a dry run.

A study is a list of `Run`s (a job config, overrides, a workdir under the study root). `execute` runs the ones this
host owns, in order, each as `python -m ldm_jax.main`: a run with a `summary.json` is done and skipped, a run with
checkpoints continues with `--resume`, so a preempted study restarted with the same command carries on where it
stopped and ends with the checkpoints an uninterrupted one would have written (resume is exact: tests/test_main.py).

Two ways to use many machines:
  * `--hosts N --host I`: independent runs split round-robin over N hosts (or SLURM array tasks);
  * one multi-host JAX program per run: start the same command on every host with the cluster's environment
    (`ldm_jax.distributed`); every run's sweep then spans all hosts' devices.

`--dry-run` prints the grid with each run's state and an estimate of its device-hours from a measured step time:
the run's own sweep (its members, batch size and mesh) compiled and timed for a few steps on this host's devices.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Sequence

import numpy as np

from ldm_jax import config_files

PROBE_STEPS = 4


@dataclasses.dataclass(frozen=True)
class Run:
  name: str                                  # unique in the study; also its workdir under the study root
  config: str                                # 'configs/rae.py:omniglot,reg=kl'
  overrides: tuple[tuple[str, str], ...] = ()  # (key, value) → --config.key=value
  requires: tuple[str, ...] = ()             # names of runs whose summary.json must exist first
  members: int = 1                           # models trained together in this run's sweep


def _coerce(old, value: str):
  """A command-line string as the type of the value it replaces (what `--config.k=v` does)."""
  if isinstance(old, str):
    return value
  parsed = ast.literal_eval(value)
  if isinstance(old, tuple):
    return tuple(parsed)
  if isinstance(old, float):
    return float(parsed)
  return parsed


def load_config(run: Run, extra: Sequence[tuple[str, str]] = ()):
  """The run's ConfigDict with its overrides (then `extra`) applied."""
  cfg = config_files.load(run.config)
  for key, value in (*run.overrides, *extra):
    *parents, leaf = key.split(".")
    node = cfg
    for part in parents:
      node = node[part]
    if leaf not in node:
      raise KeyError(f"{run.name}: unknown config key {key!r}")
    node[leaf] = _coerce(node[leaf], value)
  return cfg


def state(root: pathlib.Path, run: Run) -> str:
  """'done' (summary.json written), 'checkpoint <step>' (resumable) or 'new'."""
  work = root / run.name
  if (work / "summary.json").exists():
    return "done"
  steps = sorted(int(p.name) for p in (work / "checkpoints").glob("*") if p.name.isdigit()) \
      if (work / "checkpoints").exists() else []
  return f"checkpoint {steps[-1]}" if steps else "new"


def command(root: pathlib.Path, run: Run, extra: Sequence[tuple[str, str]] = (), python: str = sys.executable):
  cmd = [python, "-m", "ldm_jax.main", f"--config={run.config}", f"--workdir={root / run.name}"]
  cmd += [f"--config.{k}={v}" for k, v in (*run.overrides, *extra)]
  return cmd + (["--resume"] if state(root, run).startswith("checkpoint") else [])


def owned(runs: Sequence[Run], hosts: int, host: int) -> list[Run]:
  """This host's share: runs host, host + hosts, ... (round-robin keeps long and short runs mixed)."""
  if not 0 <= host < hosts:
    raise ValueError(f"--host {host} is not in 0..{hosts - 1}")
  return list(runs[host::hosts])


@functools.lru_cache(maxsize=None)
def _train_examples(name: str, split: str, limit: int, image_size: int) -> int:
  from ldm_jax import data as data_lib
  labels = data_lib.load(name, split, image_size=image_size)["labels"]
  if limit and limit < len(labels):  # data_lib.load_split's prefix of whole classes
    return int(np.isin(labels, np.unique(labels[:limit])).sum())
  return len(labels)


def probe_step_seconds(cfg, members: int) -> float:
  """Seconds per optimizer step of the run's whole sweep on this host's devices (compiled, then timed)."""
  import jax
  import jax.numpy as jnp

  from ldm_jax import data as data_lib
  from ldm_jax import ldm as ldm_lib
  from ldm_jax import rae, sharding
  from ldm_jax.data import pipeline
  from ldm_jax.jobs import ldm as ldm_job
  from ldm_jax.jobs import rae as rae_job
  from ldm_jax.train import sweep

  batch = cfg.train.batch_size
  train = data_lib.load_split(cfg, cfg.data.split, batch * PROBE_STEPS)
  if cfg.job == "rae":
    model = rae.build_model(cfg, int(train["labels"].max()) + 1)
    loss_fn, tx = rae_job.make_loss_fn(model, cfg), rae.make_optimizer(cfg, 1)
    size = cfg.data.image_size
    init_fn = functools.partial(rae.init_variables, model, cfg)
    hparams = rae.sweep_hparams(cfg)   # the run's own members (a mixed sweep's forward pass per member)
    if len(hparams["beta"]) != members:
      raise ValueError(f"run has members={members} but its config sweeps {len(hparams['beta'])}")
    data, member_data = pipeline.to_device(train), False
  elif cfg.job == "ldm" and cfg.ldm.space == "pixel":
    size = cfg.data.image_size
    denoiser = ldm_lib.build_denoiser("pixel", cfg.ldm.unet, 0, cfg.ldm.conv_impl)
    loss_fn, tx = ldm_job.make_loss_fn(denoiser, cfg, "pixel"), ldm_job.make_optimizer(cfg, 1)
    x = jnp.zeros((2, size, size, 1))
    init_fn = lambda key: denoiser.init(key, x, x, jnp.zeros((2,), jnp.int32))
    data, hparams, member_data = pipeline.to_device(train), {"member": jnp.arange(members)}, False
  elif cfg.job == "ldm":
    from configs import rae as rae_config
    d = rae_config.get_config(cfg.data.name).rae.latent_dim
    denoiser = ldm_lib.build_denoiser("latent", cfg.ldm.unet, d, cfg.ldm.conv_impl)
    loss_fn, tx = ldm_job.make_loss_fn(denoiser, cfg, "latent"), ldm_job.make_optimizer(cfg, 1)
    x = jnp.zeros((2, d))
    init_fn = lambda key: denoiser.init(key, x, x, jnp.zeros((2,), jnp.int32))
    n = len(train["labels"])  # the step's cost does not depend on the latents' values: zeros of the right shape
    tile = lambda a: jnp.tile(jnp.asarray(a, jnp.int32), (members, 1))
    data = pipeline.LatentSplit(latents=jnp.zeros((members, n, d)), labels=tile(train["labels"]),
                                exemplar_index=tile(train["exemplar_index"]))
    hparams, member_data = {"member": jnp.arange(members)}, True
  else:
    raise ValueError(f"no step-time probe for job {cfg.job!r}")
  mesh = sharding.make_mesh(members, batch, cfg.mesh.sweep, cfg.mesh.data)
  mode = sweep.resolve_sweep_mode(cfg.train.sweep_mode, mesh.size)  # as loop.fit picks it
  epoch = sweep.make_epoch_fn(loss_fn, tx, batch, mesh if mode != "sequential" else None, mode, member_data)
  states = sweep.init_sweep(init_fn, tx, sweep.member_keys(0, members), mesh)
  hparams = sharding.shard_members(hparams, mesh)
  data = jax.device_put(data, sharding.member_sharding(mesh) if member_data else sharding.replicated(mesh))
  states, _ = epoch(states, hparams, data)  # compile
  jax.block_until_ready(states)
  t0 = time.perf_counter()
  states, metrics = epoch(states, hparams, data)
  jax.block_until_ready((states, metrics))
  return (time.perf_counter() - t0) / pipeline.steps_per_epoch(data.num_examples, batch)


def estimate(cfg, members: int, step_seconds: float) -> dict:
  """A run's steps and device-hours at `step_seconds` per step of its whole sweep on this host's devices."""
  import jax

  from ldm_jax.data import pipeline
  dc = cfg.data
  n = _train_examples(dc.name, dc.split, dc.max_train_examples, dc.image_size)
  steps = pipeline.steps_per_epoch(n, cfg.train.batch_size) * cfg.train.epochs
  return {"steps": steps, "step_seconds": step_seconds, "devices": jax.device_count(),
          "device_hours": step_seconds * steps * jax.device_count() / 3600}


def dry_run(root: pathlib.Path, runs: Sequence[Run], step_seconds: float | None = None, extra=(),
            out=sys.stdout) -> list[dict]:
  """Prints the grid, one JSON line per run, then the totals. `step_seconds`: seconds per step per model (e.g. from
  an earlier probe on the target accelerator); without it the step time of every distinct sweep (config,
  overrides, members) is measured once on this host."""
  import jax
  probes, rows = {}, []
  for run in runs:
    cfg = load_config(run, extra)
    row = {"run": run.name, "state": state(root, run), "job": cfg.job, "members": run.members,
           "config": run.config, "overrides": dict(run.overrides)}
    if cfg.job in ("rae", "ldm"):
      # Runs that differ only in their input workdirs (e.g. the RAE under each LDM) share one probe.
      key = (run.config, tuple(o for o in run.overrides if not o[0].endswith("workdir")), run.members)
      if step_seconds is not None:   # given per model: a sweep step costs that for each member
        probes[key] = step_seconds * run.members
      elif key not in probes:
        probes[key] = probe_step_seconds(cfg, run.members)
      row.update(estimate(cfg, run.members, probes[key]))
    rows.append(row)
    print(json.dumps(row), file=out, flush=True)
  left = [r for r in rows if r["state"] != "done"]
  total = {"runs": len(rows), "models": sum(r["members"] for r in rows), "runs_left": len(left),
           "device_hours_left": sum(r.get("device_hours", 0.0) for r in left),
           "not_estimated": sorted({r["job"] for r in rows if "device_hours" not in r}),
           "device": jax.devices()[0].device_kind, "devices": jax.device_count()}
  print(json.dumps(total), file=out, flush=True)
  return rows


def record_time(root: pathlib.Path, run: Run, started_from: str, seconds: float, rc: int) -> None:
  """One JSON line per attempt in `<root>/timings.jsonl`: the study's wall clock per run (and so per stage)."""
  row = {"run": run.name, "from": started_from, "seconds": round(seconds, 1), "rc": rc, "members": run.members,
         "end": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
  with open(root / "timings.jsonl", "a") as f:
    f.write(json.dumps(row) + "\n")


def execute(root: pathlib.Path, runs: Sequence[Run], extra=(), python: str = sys.executable) -> None:
  """Runs every unfinished run in order (resuming the interrupted one), each attempt's wall clock in
  `<root>/timings.jsonl`; stops at the first failure."""
  for run in runs:
    if state(root, run) == "done":
      print(f"[study] {run.name}: done", flush=True)
      continue
    missing = [r for r in run.requires if not (root / r / "summary.json").exists()]
    if missing:
      raise RuntimeError(f"{run.name} needs the finished run(s) {missing} under {root}: run that study first "
                         f"(or wait for the host that owns them)")
    cmd = command(root, run, extra, python)
    print(f"[study] {run.name}: {state(root, run)} → {' '.join(cmd[1:])}", flush=True)
    (root / run.name).mkdir(parents=True, exist_ok=True)
    start, t0 = state(root, run), time.perf_counter()
    rc = subprocess.call(cmd, env=os.environ.copy())   # this cwd: configs/ resolves as in load_config
    record_time(root, run, start, time.perf_counter() - t0, rc)
    if rc != 0:
      raise SystemExit(f"[study] {run.name} failed (exit {rc}); rerun the same command to resume it")


def parser(description: str) -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=description)
  p.add_argument("--root", required=True, help="study directory: one workdir per run under it")
  p.add_argument("--dry-run", action="store_true", help="print the grid and its device-hours; train nothing")
  p.add_argument("--step-seconds", type=float, default=None,
                 help="dry run: seconds per training step per model; measure nothing")
  p.add_argument("--hosts", type=int, default=int(os.environ.get("SLURM_ARRAY_TASK_COUNT", 1)),
                 help="split independent runs over this many hosts")
  p.add_argument("--host", type=int, default=int(os.environ.get("SLURM_ARRAY_TASK_ID", 0)))
  p.add_argument("--tiny", action="store_true", help="seconds-long smoke version of every run (tests)")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="an override for every run, e.g. --set train.epochs=10 (repeatable)")
  return p


def main(build_runs, description: str, argv=None) -> None:
  """The body of every `experiments/study_*.py`: `build_runs(args) -> [Run]`."""
  p = parser(description)
  add = getattr(build_runs, "add_arguments", None)
  if add:
    add(p)
  args = p.parse_args(argv)
  extra = tuple(tuple(s.split("=", 1)) for s in args.set)
  if any(len(e) != 2 for e in extra):
    p.error("--set takes KEY=VALUE")
  root = pathlib.Path(args.root).absolute()
  runs = owned(build_runs(args), args.hosts, args.host)
  if args.dry_run:
    dry_run(root, runs, args.step_seconds, extra)
  else:
    execute(root, runs, extra)
