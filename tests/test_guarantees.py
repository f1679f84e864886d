"""The README's guarantees: no silent wrong number, no run that damages another run, errors a user can act on.

Each test reproduces one failure case on real code paths (tiny configs, real data where data is involved).
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, run_main

_BUILD = """
import sys
from ldm_jax import data
d = data.load("clickme", "all", build_dir=sys.argv[1])
print(len(d["labels"]), int(d["images"].sum()))
"""


def _python(code, *args, **kw):
  return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.real_data
def test_two_processes_building_one_dataset_both_read_it(tmp_path):
  procs = [_python(_BUILD, str(tmp_path / "build")) for _ in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-2000:]
  assert outs[0][0] == outs[1][0] and outs[0][0].split()[0] == "250"


@pytest.mark.real_data
def test_a_killed_build_leaves_nothing_a_later_build_trips_on(tmp_path):
  build = tmp_path / "build"
  proc = _python(_BUILD, str(build))
  deadline = time.time() + 300
  while not list(build.rglob("incomplete.*")) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.01)
  assert proc.poll() is None, "the build finished before it could be interrupted"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert list(build.rglob("incomplete.*"))             # the debris of the killed build
  again = _python(_BUILD, str(build))
  out, err = again.communicate(timeout=600)
  assert again.returncode == 0, err[-2000:]
  assert out.split()[0] == "250" and not list(build.rglob("incomplete.*"))


# --- a busy workdir ---------------------------------------------------------------------------------------------

_HOLD = """
import sys, time
from ldm_jax import workdir
with workdir.hold(sys.argv[1]):
  print("held", flush=True)
  time.sleep(600)
"""


def test_a_workdir_is_held_by_one_job_and_a_killed_holder_is_taken_over(tmp_path):
  from ldm_jax import workdir
  holder = _python(_HOLD, str(tmp_path / "w"))
  assert holder.stdout.readline().strip() == "held"
  try:
    with pytest.raises(workdir.WorkdirBusyError, match=f"in use by pid {holder.pid} on "):
      with workdir.hold(tmp_path / "w"):
        pass
    out = run_main("--config=configs/rae.py:omniglot,tiny", f"--workdir={tmp_path}/w", timeout=120)
    assert out.returncode == 2 and f"in use by pid {holder.pid}" in out.stderr.strip().splitlines()[-1]
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == [".lock"]    # the second job did nothing
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  with workdir.hold(tmp_path / "w") as held:                # the stale lock of the killed job is taken over
    assert json.loads((held / ".lock").read_text())["pid"] == os.getpid()
    with workdir.hold(tmp_path / "w"):                       # re-entrant within one process
      pass


# --- errors a user can act on: one line, exit 2, before any work ------------------------------------------------

TINY_RAE = "--config=configs/rae.py:omniglot,tiny"


@pytest.mark.parametrize("override,message", [
    ("--config.rae.no_such_key=1", "unknown config key 'rae.no_such_key' .* keys under 'rae': barlow_lambda"),
    ("--config.train.batch_size=0", "train.batch_size must be positive, got 0"),
    ("--config.train.sweep_mode=fast", "train.sweep_mode must be one of"),
    ("--config.rae.simclr_loss=infonce", "rae.simclr_loss must be one of \\('eq14', 'nt_xent'\\)"),
    ("--config.rae.prototype_projector=deep", "rae.prototype_projector must be one of \\('linear', 'mlp'\\)"),
    ("--config.rae.regularizers=('kl',)", "sweep.regularizer='prototype' is not in rae.regularizers=\\('kl',\\)"),
    ("--config.sweep.members=('kl=0.1','none')", "sweep.members defines the sweep: set --config.sweep.betas='\\(\\)'"),
])
def test_config_errors_are_one_line_before_anything_is_written(tmp_path, override, message):
  import re
  out = run_main(TINY_RAE, override, f"--workdir={tmp_path}/w", timeout=120)
  lines = out.stderr.strip().splitlines()
  assert out.returncode == 2 and len(lines) == 1 and re.search(message, lines[0]), out.stderr[-3000:]
  assert not (tmp_path / "w").exists()


def test_a_one_device_sweep_mode_on_a_mesh_is_refused_before_any_work(tmp_path):
  """'unroll' writes every member into one device's program; with several devices (the mesh spans them all) it
  is refused by the config check, not after the data is loaded."""
  out = run_main(TINY_RAE, "--config.train.sweep_mode=unroll", f"--workdir={tmp_path}/w", timeout=120,
                 env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  lines = out.stderr.strip().splitlines()
  assert out.returncode == 2 and len(lines) == 1, out.stderr[-3000:]
  assert "train.sweep_mode='unroll' runs on one device, and the mesh spans all 2" in lines[0]
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("config,old,new", [
    ("imle.py:tiny", "train.iterations=3", "train.epochs"),
    ("ldm.py:omniglot,tiny", "sample.guidance=2", "eval.guidance"),
    ("evaluate.py:omniglot,tiny", "evaluate.max_classes=3", "eval.max_classes")])
def test_a_renamed_key_names_its_new_name(tmp_path, config, old, new):
  out = run_main(f"--config=configs/{config}", f"--config.{old}", f"--workdir={tmp_path}/w", timeout=120)
  lines = out.stderr.strip().splitlines()
  assert out.returncode == 2 and len(lines) == 1 and f"is now '{new}'" in lines[0], out.stderr[-2000:]
  assert not (tmp_path / "w").exists()


def test_every_trainer_counts_its_run_length_and_intervals_in_one_unit():
  """One host loop, one key pattern: train.<unit>, train.checkpoint_every_<unit>, train.log_every_<unit>."""
  import importlib

  from ldm_jax import config_checks
  for job, unit in (("rae", "epochs"), ("ldm", "epochs"), ("critics", "epochs"), ("imle", "epochs"),
                    ("imle_oneshot", "epochs"), ("sketch", "steps")):
    train = importlib.import_module(f"configs.{job}").get_config().train
    assert unit in train and f"checkpoint_every_{unit}" in train, job
  cfg = importlib.import_module("configs.imle").get_config()
  cfg.train.log_every_steps = 10
  with pytest.raises(config_checks.ConfigError, match="log_every_steps counts another unit than train.epochs"):
    config_checks.validate(cfg)


def test_config_values_are_checked_in_every_job_and_stage():
  import importlib

  from ldm_jax import config_checks
  for job in ("rae", "ldm", "critics", "evaluate", "imle", "imle_oneshot", "sketch", "demo"):
    config_checks.validate(importlib.import_module(f"configs.{job}").get_config())   # the shipped configs pass
  demo = importlib.import_module("configs.demo").get_config()
  demo.ldm_job.train.epochs = 0
  with pytest.raises(config_checks.ConfigError, match="^ldm_job.train.epochs must be positive"):
    config_checks.validate(demo)
  sketch = importlib.import_module("configs.sketch").get_config()
  sketch.train.steps = -5
  with pytest.raises(config_checks.ConfigError, match="train.steps must be positive"):
    config_checks.validate(sketch)
  rae = importlib.import_module("configs.rae").get_config("omniglot,reg=kl")
  rae.sweep.betas = (1e-3, 1e-3)
  with pytest.raises(config_checks.ConfigError, match="identical members"):
    config_checks.validate(rae)
  rae.sweep.betas = ()                                     # no sweep: one member of the configured β
  assert config_checks.sweep_betas(rae.rae, rae.sweep) == [(rae.rae.beta.kl, 0.0, 0.0, 0.0, 0.0, 0.0)]
  # A mixed sweep: each member names its own terms, all of them heads of the model; β exactly as named.
  rae.rae.regularizers = ("kl", "prototype", "barlow")
  rae.sweep.members = ("kl=0.001", "prototype=2,barlow=30", "none")
  assert config_checks.sweep_betas(rae.rae, rae.sweep) == [
      (1e-3, 0, 0, 0, 0, 0), (0, 0, 0, 2.0, 0, 30.0), (0, 0, 0, 0, 0, 0)]
  for members, message in ((("vq=1",), r"'vq=1' uses \['vq'\], not in rae.regularizers"),
                           (("kl=0",), "β of kl in 'kl=0' must be > 0"),
                           (("kl=x",), "β 'x' in 'kl=x' is not a number"),
                           (("kl=1,kl=2",), "distinct regularizers"),
                           (("none", "none"), "identical members")):
    rae.sweep.members = members
    with pytest.raises(config_checks.ConfigError, match=message):
      config_checks.validate(rae)
  for job, section in (("ldm", "eval"), ("evaluate", "eval")):
    for key, value, message in (("sampler", "euler", r"sampler must be one of \('ddpm', 'ddim'\)"),
                                ("ddim_eta", 1.5, r"ddim_eta must be in \[0, 1\]"),
                                ("ddim_steps", 0, "ddim_steps must be at least 1")):
      c = importlib.import_module(f"configs.{job}").get_config()
      c[section][key] = value
      with pytest.raises(config_checks.ConfigError, match=f"^{section}.{message}"):
        config_checks.validate(c)


# --- corrupt archives -------------------------------------------------------------------------------------------

def _rewrite_zip(src, dst, change):
  import zipfile
  with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
    for i, info in enumerate(zin.infolist()):
      name, data = change(i, info.filename, zin.read(info))
      zout.writestr(name, data)


@pytest.mark.real_data
@pytest.mark.parametrize("case", ["not_png", "folders"])
def test_an_image_zip_with_a_foreign_member_is_refused_naming_it(tmp_path, case):
  from conftest import SHARED_DATA

  from ldm_jax.data import DataError, sources
  data_dir = tmp_path / "data"
  (data_dir / "omniglot").mkdir(parents=True)
  src = pathlib.Path(os.environ.get("LDM_JAX_DATA_DIR", SHARED_DATA)) / "omniglot" / "images_evaluation.zip"
  if case == "not_png":
    change = lambda i, n, d: (n, b"this is not an image\n" if i == 500 else d)
    message = "is not a PNG file"
  else:
    change = lambda i, n, d: (n.replace("images_evaluation/", "evaluation_images/"), d)
    message = "wrongly named folders"
  _rewrite_zip(src, data_dir / "omniglot" / "images_evaluation.zip", change)
  with pytest.raises(DataError, match=message):
    sources.fetch(sources.OMNIGLOT_EVALUATION, str(data_dir), download=False)


# --- a diverged member is never a result ------------------------------------------------------------------------

@pytest.mark.real_data
def test_a_diverged_member_is_marked_everywhere_and_never_best(tmp_path):
  from ldm_jax.train import loop
  out = run_main(TINY_RAE, "--config.sweep.betas=(0.0,1e38)", "--config.data.max_train_examples=320",
                 "--config.train.batch_size=32", "--config.eval.episodes=10", f"--workdir={tmp_path}/w")
  assert out.returncode == 0, out.stderr[-3000:]
  for r in loop.read_metrics(tmp_path / "w", member=1):    # every step non-finite: no loss to report, not 0.0
    assert r["loss"] is None and r["recon"] is None and r["nonfinite_steps"] == 10
  assert all(r["loss"] > 0 for r in loop.read_metrics(tmp_path / "w", member=0))
  summary = json.loads((tmp_path / "w" / "summary.json").read_text())
  assert [m["diverged"] for m in summary["members"]] == [False, True]
  assert summary["members"][1]["recon"] is None and summary["members"][1]["nonfinite_steps"] == 20
  assert loop.diverged_members(tmp_path / "w") == {1}
  # Off a terminal (captured output): one progress line per epoch, the diverged member's loss as nan; no TPU noise.
  import re
  lines = re.findall(r"rae epoch (\d)/2 · loss (\S+) nan · [\d,]+ ex/s · ETA", out.stderr)
  first = loop.read_metrics(tmp_path / "w", member=0)[0]["loss"]
  assert [l[0] for l in lines] == ["1", "2"] and float(lines[0][1]) == pytest.approx(first, rel=1e-3), out.stderr
  assert "initialize backend 'tpu'" not in out.stderr


def test_progress_lines_and_eta():
  from ldm_jax.train import loop
  assert loop.progress_line("rae", 3, 6, [223.24, None], 512.4, 130) == \
      "rae epoch 3/6 · loss 223.2 nan · 512 ex/s · ETA 2m10s"
  many = loop.progress_line("ldm", 1, 2, [float(i) for i in range(1, 10)], 12345.0, None)
  assert many == "ldm epoch 1/2 · loss min 1 median 5 max 9 (9 members) · 12,345 ex/s"
  assert loop.eta_seconds([30.0, 2.0, 4.0], 5) == 15.0      # the first epoch (compilation) left out
  assert loop.eta_seconds([30.0], 2) == 60.0 and loop.eta_seconds([], 2) is None


def _point(name, reg, beta, ori, rec, kind="ldm", diverged=False):
  return {"name": name, "kind": kind, "regularizer": reg, "beta": beta, "originality": ori, "recognizability": rec,
          "diverged": diverged}


def test_diverged_models_are_excluded_from_closest_fits_and_marked_in_tables(tmp_path):
  from ldm_jax.jobs import evaluate
  results = [_point("humans", "", 0.0, 0.5, 0.9, kind="human"),
             _point("a", "prototype", 1.0, 0.4, 0.5), _point("b", "prototype", 10.0, 0.3, 0.6),
             _point("c", "prototype", 100.0, 0.2, 0.7), _point("d", "prototype", 1000.0, 0.5, 0.9, diverged=True)]
  evaluate.place_points(results)
  by = {r["name"]: r for r in results}
  assert by["d"]["distance_to_human"] == 0.0 and not by["d"].get("closest")   # on the human point, yet no result
  assert by["a"]["closest"] and sum(bool(r.get("closest")) for r in results) == 1
  fits = evaluate.parametric_fits(results)
  assert set(fits) == {"prototype"}                        # three non-diverged β: a fit, without the diverged one
  evaluate.write_table(tmp_path / "t.md", results)
  table = (tmp_path / "t.md").read_text()
  assert "| d (DIVERGED: not a trained model) |" in table and "| a (closest) |" in table


# --- TensorBoard event files (optional) -------------------------------------------------------------------------

def read_events(logdir):
  """Every Event in the TFRecord files under `logdir` (length, crc, payload, crc), parsed with tensorboardX's protos."""
  import struct

  from tensorboardX.proto import event_pb2
  events = []
  for path in sorted(pathlib.Path(logdir).rglob("events.out.tfevents.*")):
    raw = path.read_bytes()
    i = 0
    while i < len(raw):
      (n,) = struct.unpack("<Q", raw[i:i + 8])
      event = event_pb2.Event()
      event.ParseFromString(raw[i + 12:i + 12 + n])
      events.append((path, event))
      i += 12 + n + 4
  return events


@pytest.mark.real_data
def test_tensorboard_scalars_and_hparams_match_the_metrics_file(tmp_path):
  pytest.importorskip("tensorboardX", reason="tensorboardX (the tensorboard extra) is not installed")
  from ldm_jax.train import loop
  out = run_main(TINY_RAE, "--config.train.tensorboard=True", "--config.data.max_train_examples=320",
                 "--config.train.batch_size=32", "--config.eval.episodes=10", f"--workdir={tmp_path}/w")
  assert out.returncode == 0, out.stderr[-3000:]
  scalars = {(v.tag, e.step): v.simple_value for _, e in read_events(tmp_path / "w" / "tensorboard")
             for v in e.summary.value if v.HasField("simple_value")}
  records = loop.read_metrics(tmp_path / "w")
  assert {r["member"] for r in records} == {0, 1} and len(records) == 4
  for r in records:
    for key in ("loss", "recon", "prototype"):
      assert scalars[(f"{key}/member_{r['member']}", r["epoch"])] == pytest.approx(r[key], rel=1e-6)
  hparam_runs = {p.parent.name for p, e in read_events(tmp_path / "w" / "tensorboard")
                 if any(v.tag == "_hparams_/session_start_info" for v in e.summary.value)}
  assert hparam_runs == {"member_0", "member_1"}


def test_tensorboard_images_and_the_missing_package_error(tmp_path, monkeypatch):
  pytest.importorskip("tensorboardX", reason="tensorboardX (the tensorboard extra) is not installed")
  import numpy as np
  from PIL import Image

  from ldm_jax import config_checks
  from ldm_jax.train import tensorboard
  Image.fromarray(np.full((30, 40), 200, np.uint8)).save(tmp_path / "grid.png")
  board = tensorboard.Board(tmp_path, True)
  board.image("samples/member_0", tmp_path / "grid.png", 7)
  board.close()
  images = [(e.step, v.image) for _, e in read_events(tmp_path / "tensorboard") for v in e.summary.value
            if v.HasField("image")]
  assert [(s, i.height, i.width) for s, i in images] == [(7, 30, 40)]
  monkeypatch.setattr(tensorboard, "available", lambda: False)
  cfg = __import__("configs.rae", fromlist=["x"]).get_config("omniglot,tiny")
  cfg.train.tensorboard = True
  with pytest.raises(config_checks.ConfigError, match=r"train.tensorboard=True needs tensorboardX: pip install"):
    config_checks.validate(cfg)


def test_the_host_loop_waits_for_the_device_only_at_units_it_acts_on(tmp_path, monkeypatch):
  """A trainer whose unit is one small step (SketchEmbedNet) must not sync host and device every step: metrics
  are fetched once per record/log/checkpoint window, and what is written is what a per-unit fetch would write —
  including a non-finite step inside a window and, once every member diverged, the unit that did it."""
  import jax.numpy as jnp
  import ml_collections

  from ldm_jax import checkpoint
  from ldm_jax.train import loop

  fetches = []
  real_get = loop.jax.device_get
  monkeypatch.setattr(loop.jax, "device_get", lambda x: fetches.append(len(x)) or real_get(x))
  cfg = ml_collections.ConfigDict({"seed": 0})
  bad = {7}   # the one unit with a non-finite step (of one member)

  def advance(state, u):
    state = {"w": state["w"] + 1.0}
    return state, {"loss": jnp.stack([state["w"], 2 * state["w"]]),
                   "nonfinite_steps": jnp.asarray([1.0 if u + 1 in bad else 0.0, 0.0])}

  def go(workdir, total, **kw):
    return loop.run(workdir=workdir, config=cfg, states={"w": jnp.zeros(())}, advance=advance, start=0, total=total,
                    members=[{"name": "a"}, {"name": "b"}], steps_per_unit=1, examples_per_unit=4,
                    checkpoint_every=10, log_every=5, desc="t", record_every=5, unit="step",
                    checkpointer=checkpoint.Checkpointer(workdir, cfg.to_dict()), **kw)

  final = go(tmp_path / "w", 12)
  assert float(final["w"]) == 12.0
  assert fetches == [5, 5, 2]           # one transfer per window (units 1–5, 6–10, 11–12), not one per unit
  rows = [(r["step"], r["member"], r["loss"], r["nonfinite_steps"]) for r in loop.read_metrics(tmp_path / "w")]
  assert rows == [(5, 0, 5.0, 0.0), (5, 1, 10.0, 0.0), (7, 0, None, 1.0), (7, 1, 14.0, 0.0), (10, 0, 10.0, 0.0),
                  (10, 1, 20.0, 0.0), (12, 0, 12.0, 0.0), (12, 1, 24.0, 0.0)]

  bad.clear()
  advance_all_bad = advance

  def advance(state, u):   # noqa: F811 — every member non-finite at unit 3, inside the first window
    state, m = advance_all_bad(state, u)
    return state, {**m, "nonfinite_steps": jnp.full(2, 1.0 if u + 1 == 3 else 0.0)}

  with pytest.raises(FloatingPointError, match="for all of step 3;"):
    go(tmp_path / "w2", 12)
