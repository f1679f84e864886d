"""The LDM job on real Omniglot: a diffusion model per RAE of a sweep as one program, exported checkpoints that
regenerate identical samples in another process, and clear errors."""

import json

import jax
import numpy as np
import pytest
from conftest import run_main

from ldm_jax import ldm as ldm_lib
from ldm_jax.eval.oneshot import exemplar_fidelity
from ldm_jax.train import loop

pytestmark = pytest.mark.real_data

RAE_TINY = ["--config=configs/rae.py:omniglot,tiny", "--config.data.max_train_examples=640",
            "--config.train.batch_size=32", "--config.eval.episodes=10"]
LDM_TINY = ["--config=configs/ldm.py:omniglot,tiny", "--config.data.max_train_examples=640",
            "--config.train.batch_size=32", "--config.train.epochs=4", "--config.eval.max_classes=6",
            "--config.eval.per_exemplar=3"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp("ldm")
  r = run_main(*RAE_TINY, f"--workdir={root}/rae")
  assert r.returncode == 0, r.stderr[-3000:]
  out = run_main(*LDM_TINY, f"--config.ldm.rae_workdir={root}/rae", f"--workdir={root}/ldm")
  assert out.returncode == 0, out.stderr[-3000:]
  return root


def test_one_diffusion_model_per_rae_with_its_own_latent_scaling(trained):
  summary = json.loads((trained / "ldm" / "summary.json").read_text())
  members = summary["members"]
  assert [m["rae_member"] for m in members] == [0, 1]
  assert [m["beta"]["prototype"] for m in members] == [0.0, 1.0]
  assert members[0]["latent_std"] != members[1]["latent_std"] and all(m["latent_std"] > 0 for m in members)
  for i, m in enumerate(members):
    losses = [r["loss"] for r in loop.read_metrics(trained / "ldm", i)]
    assert len(losses) == 4 and losses[-1] < losses[0], losses      # the denoising loss falls
    assert m["nonfinite_steps"] == 0
    assert (trained / "ldm" / f"samples_{i}.png").stat().st_size > 1000
    assert 0.0 <= m["pixel_nearest"] <= 1.0 and m["chance_nearest"] == pytest.approx(1 / 6)


def test_exported_ldm_regenerates_identical_samples_in_a_fresh_process(trained):
  # The job ran in its own process; this one loads the exported model and samples again with the same key.
  saved = np.load(trained / "ldm" / "samples_1.npz")
  model, spec = ldm_lib.load(trained / "ldm" / "models" / "1")
  assert spec["space"] == "latent" and spec["member"]["beta"]["prototype"] == 1.0
  assert model.schedule.timesteps == 50
  out = ldm_lib.generate(model, saved["exemplars"], 3, jax.random.PRNGKey(0), guidance=1.0)
  assert out["images"].shape == (6, 3, 48, 48)
  np.testing.assert_array_equal(out["images"], saved["images"])
  np.testing.assert_array_equal(out["codes"], saved["codes"])
  assert 0.0 <= out["images"].min() and out["images"].max() <= 1.0
  # another key gives other samples
  other = ldm_lib.generate(model, saved["exemplars"], 3, jax.random.PRNGKey(1), guidance=1.0)
  assert np.abs(other["codes"] - out["codes"]).max() > 1e-3


def test_latent_job_needs_an_rae_sweep(tmp_path):
  out = run_main(*LDM_TINY, f"--workdir={tmp_path}/w")
  assert out.returncode == 2 and "rae_workdir" in out.stderr
  out = run_main(*LDM_TINY, f"--config.ldm.rae_workdir={tmp_path}/nothing", f"--workdir={tmp_path}/w2")
  assert out.returncode == 2 and "no trained RAE sweep" in out.stderr


def test_exemplar_fidelity_known_values():
  ex = np.eye(4, dtype=np.float32) * 10                        # four far-apart exemplars
  own = np.repeat(ex[:, None], 3, axis=1) + 0.5                # at their own exemplar (exact in f32: ties stay ties)
  f = exemplar_fidelity(own, ex)
  assert float(f["nearest"]) == 1.0 and float(f["pairwise"]) == 1.0
  wrong = np.roll(own, 1, axis=0)                              # every sample at the next class's exemplar
  f = exemplar_fidelity(wrong, ex)
  assert float(f["nearest"]) == 0.0 and float(f["pairwise"]) == 0.0   # ties (equidistant others) are not wins


def test_pixel_space_ldm_round_trips_through_its_checkpoint(tmp_path):
  from ldm_jax import diffusion
  from ldm_jax.models.pixel_denoiser import PixelDenoiser
  denoiser = PixelDenoiser(unet="small", conv_impl="xla")
  x = jax.numpy.zeros((1, 48, 48, 1))
  params = denoiser.init(jax.random.PRNGKey(0), x, x, jax.numpy.zeros((1,), jax.numpy.int32))["params"]
  dc = {"timesteps": 4, "beta_start": 1e-2, "beta_end": 2e-2, "schedule": "linear", "cond_drop_prob": 0.1}
  model = ldm_lib.LDM(denoiser_params=params, schedule=diffusion.make_schedule(4, 1e-2, 2e-2), rae_variables=None,
                      latent_mean=jax.numpy.float32(0), latent_std=jax.numpy.float32(1), denoiser=denoiser, rae=None)
  ldm_lib.save(tmp_path / "m", model, {"space": "pixel", "unet": "small", "latent_dim": 0, "image_size": 48,
                                       "conv_impl": "xla", "diffusion": dc})
  loaded, spec = ldm_lib.load(tmp_path / "m")
  assert loaded.space == "pixel" and spec["diffusion"]["timesteps"] == 4
  exemplars = np.zeros((2, 48, 48), np.uint8)
  exemplars[:, 20:28, 10:38] = 255
  a = ldm_lib.generate(model, exemplars, 2, jax.random.PRNGKey(3))
  b = ldm_lib.generate(loaded, exemplars, 2, jax.random.PRNGKey(3))
  assert a["images"].shape == (2, 2, 48, 48) and a["codes"].shape == (2, 2, 48, 48, 1)
  np.testing.assert_array_equal(a["images"], b["images"])
  assert a["images"].min() >= 0.0 and a["images"].max() <= 1.0


@pytest.fixture(scope="module")
def critics(trained):
  out = run_main("--config=configs/critics.py:omniglot,tiny", f"--workdir={trained}/critics")
  assert out.returncode == 0, out.stderr[-3000:]
  return trained / "critics"


def test_evaluate_job_scores_exported_models_sample_files_and_humans(trained, critics):
  """Critics → the evaluate job on the exported LDMs (generated anew), a sample file, and the human point; then
  the feature-importance study on three ClickMe categories."""
  _check_judges(critics)
  out = run_main("--config=configs/evaluate.py:omniglot,tiny", f"--workdir={trained}/eval",
                 f"--config.eval.critics_workdir={trained}/critics",
                 f"--config.eval.ldm_workdirs=('{trained}/ldm',)",
                 f"--config.eval.sample_files=('{trained}/ldm/samples_1.npz',)",
                 "--config.importance.enabled=True", "--config.importance.models=all",
                 "--config.importance.categories=3")
  assert out.returncode == 0, out.stderr[-3000:]
  summary = json.loads((trained / "eval" / "scores.json").read_text())
  points = {p["name"]: p for p in summary["points"]}
  assert set(points) == {"humans", "ldm_prototype=0", "ldm_prototype=1", "samples_1"}
  assert points["ldm_prototype=0"]["regularizer"] == "none"
  assert points["ldm_prototype=1"]["regularizer"] == "prototype" and points["ldm_prototype=1"]["beta"] == 1.0
  assert points["humans"]["distance_to_human"] == 0.0
  norm = [p["originality_norm"] for p in points.values()]
  assert min(norm) == 0.0 and max(norm) == 1.0
  for name, p in points.items():
    classes = 6 if name == "samples_1" else 20      # the LDM job sampled 6 classes; the evaluation 20
    assert len(p["per_class_recognizability"]) == classes   # every class has n samples: the mean is their mean
    assert p["recognizability"] == pytest.approx(np.mean(p["per_class_recognizability"]), abs=1e-6)
    h = points["humans"]         # the plane's distance: normalised originality and recognizability
    assert p["distance_to_human"] == pytest.approx(np.hypot(p["originality_norm"] - h["originality_norm"],
                                                            p["recognizability"] - h["recognizability"]), abs=1e-6)
    if name != "samples_1":                        # 3 samples per class do not split into 10 bins
      assert len(p["binned_originality"]) == 10 and np.all(np.diff(p["binned_originality"]) >= 0)
  for name in ("originality_recognizability.png", "table.md", "samples_humans.png", "importance_maps.png",
               "samples_by_regularizer.png",
               "samples/ldm_prototype=1.npz"):
    assert (trained / "eval" / name).exists(), name
  imp = summary["importance"]
  assert len(imp["categories"]) == 3 and 0.0 < imp["human_consistency"] <= 1.0
  assert set(imp["spearman"]) == {"ldm_prototype=0", "ldm_prototype=1"}
  assert all(-1.0 <= v <= 1.0 for s in imp["spearman"].values() for v in s["per_category"])
  assert set(imp["wilcoxon_greater"]["ldm_prototype=1"]) == {"ldm_prototype=0"}


@pytest.mark.slow
def test_one_shot_rs_imle_in_the_rae_latent_space_is_scored_like_the_ldms(trained, critics):
  """Conditional IMLE and RS-IMLE on the prototype RAE's latents, resumed after an interruption; samples of the test
  characters written in the evaluate job's format and judged by the same critics against the human point."""
  args = ["--config=configs/imle_oneshot.py:tiny", f"--config.imle.rae_workdir={trained}/rae",
          "--config.imle.rae_member=1", f"--config.eval.critics_workdir={critics}"]
  first = run_main(*args, "--config.train.epochs=2", f"--workdir={trained}/imle_oneshot")
  assert first.returncode == 0, first.stderr[-3000:]
  resumed = run_main(*args, f"--workdir={trained}/imle_oneshot", "--resume")
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  summary = json.loads((trained / "imle_oneshot" / "summary.json").read_text())
  lines = (trained / "imle_oneshot" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(line)["epoch"] for line in lines] == [1, 1, 2, 2, 3, 3, 4, 4]
  assert [m["method"] for m in summary["members"]] == ["IMLE", "RS-IMLE"]
  assert summary["members"][0]["rejected_fraction_last"] == 0.0
  s = summary["scores"]
  assert set(s) == {"humans", "IMLE", "RS-IMLE"} and s["humans"]["distance_to_human"] == 0.0
  assert all(0.0 <= v["recognizability"] <= 1.0 and 0.0 <= v["originality_norm"] <= 1.0 for v in s.values())
  shots = np.load(trained / "imle_oneshot" / "samples_RS-IMLE.npz")
  assert shots["images"].shape == (20, 4, 48, 48) and shots["exemplars"].shape == (20, 48, 48)


def _check_judges(critics_dir):
  """The tiny critics (2 epochs, 320 drawings) on real sets: both losses fall; humans far above 20-way chance and
  uniform noise at chance; copies of the exemplar have originality 0, growing with flipped pixels."""
  from ldm_jax import data
  from ldm_jax.eval import judge
  summary = json.loads((critics_dir / "summary.json").read_text())
  for name in ("protonet", "simclr"):
    assert summary[name]["loss_last_epoch"] < summary[name]["loss_first_epoch"], summary
  assert summary["protonet"]["human_recognizability"] > 0.2
  judges = judge.load_judges(critics_dir)
  test48 = data.load("omniglot", "paper_test", image_size=48)
  humans, exemplars = judge.human_set(test48, per_class=10, classes=40)
  key = jax.random.PRNGKey(0)
  human = judge.score_set(judges, humans, exemplars, key, tasks_per_class=5)
  assert human["recognizability"].shape == (40, 10) and human["recognizability_mean"] > 0.2
  rng = np.random.default_rng(0)
  noise = judge.score_set(judges, rng.uniform(0, 1, humans.shape).astype(np.float32), exemplars, key,
                          tasks_per_class=5)
  assert abs(noise["recognizability_mean"] - 0.05) < 0.1
  copies = np.repeat(exemplars[:, None] / 255.0, 10, axis=1).astype(np.float32)
  means = []
  for flip_rate in (0.0, 0.01, 0.03):           # pixels flipped at random
    noisy = np.where(rng.uniform(size=copies.shape) < flip_rate, 1.0 - copies, copies).astype(np.float32)
    means.append(judge.score_set(judges, noisy, exemplars, key, tasks_per_class=5)["originality_mean"])
  assert means[0] == 0.0 and means[0] < means[1] < means[2], means
  from ldm_jax.jobs.sketch import (
    judge_one_shot,  # SketchEmbedNet's one-shot sketches go through the same API
  )
  sketched = judge_one_shot(critics_dir, exemplars[:8] / 255.0, humans[:8, :4] / 255.0, humans[:8, 4:8] / 255.0, 0)
  assert set(sketched) == {"sketchembednet", "humans"} and sketched["humans"]["n_way"] == 8
  assert all(0.0 <= v["recognizability"] <= 1.0 and v["originality"] > 0.0 for v in sketched.values())
  h, s = sketched["humans"], sketched["sketchembednet"]   # placed on the plane as every job places its sets
  assert h["distance_to_human"] == 0.0 and {h["originality_norm"], s["originality_norm"]} == {0.0, 1.0}
  assert s["distance_to_human"] == pytest.approx(np.hypot(1.0, h["recognizability"] - s["recognizability"]))
  from ldm_jax.jobs.imle import make_loss  # IMLE's d with the originality critic's feature term
  x, y = (jax.numpy.asarray(humans[:4, k] / 127.5 - 1.0, jax.numpy.float32) for k in (0, 1))
  pixel, with_features = make_loss(0.0, ""), make_loss(0.5, str(critics_dir))
  assert float(jax.numpy.abs(with_features(x, x)).max()) == 0.0
  assert np.all(np.asarray(with_features(x, y)) > np.asarray(pixel(x, y)))
  grad = np.asarray(jax.grad(lambda v: with_features(x, v).sum())(y))
  assert np.isfinite(grad).all() and np.abs(grad).max() > 0


# --- trust: corrupted exports, non-finite samples, stale caches, refused runs (the README's Guarantees) ------------

def _copy_ldm(trained, tmp_path, name="ldm_copy"):
  import shutil
  dst = tmp_path / name
  shutil.copytree(trained / "ldm", dst)
  return dst


def test_a_corrupted_or_truncated_export_is_refused_naming_the_file(trained, tmp_path):
  from ldm_jax import manifest
  export = _copy_ldm(trained, tmp_path) / "models" / "1"
  ldm_lib.load(export)                                     # intact: loads
  biggest = max((p for p in (export / "arrays").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
  data = bytearray(biggest.read_bytes())
  data[len(data) // 2] ^= 0x40                             # one flipped bit
  biggest.write_bytes(bytes(data))
  with pytest.raises(manifest.CorruptFileError, match=f"{biggest.relative_to(export)}.*checksum"):
    ldm_lib.load(export)
  biggest.write_bytes(bytes(data[: len(data) // 3]))      # truncated
  with pytest.raises(manifest.CorruptFileError, match="bytes"):
    ldm_lib.load(export)
  (export / "ldm.json").unlink()
  with pytest.raises(FileNotFoundError, match="no exported LDM"):
    ldm_lib.load(export)


def test_generation_that_returns_nonfinite_samples_is_an_error_naming_the_model(trained):
  model, _ = ldm_lib.load(trained / "ldm" / "models" / "1")
  broken = model.replace(denoiser_params=jax.tree.map(lambda p: p * np.nan, model.denoiser_params))
  exemplars = np.load(trained / "ldm" / "samples_1.npz")["exemplars"][:2]
  with pytest.raises(ldm_lib.NonFiniteSamplesError, match="model ldm_x generated 6 of 6"):
    ldm_lib.generate(broken, exemplars, 3, jax.random.PRNGKey(0), name="model ldm_x")


def _evaluate(trained, workdir, ldm_dirs=(), files=(), extra=()):
  return run_main("--config=configs/evaluate.py:omniglot,tiny", f"--workdir={workdir}",
                  f"--config.eval.critics_workdir={trained}/critics",
                  f"--config.eval.ldm_workdirs={tuple(str(d) for d in ldm_dirs)!r}",
                  f"--config.eval.sample_files={tuple(str(f) for f in files)!r}", *extra)


def test_nonfinite_or_out_of_range_sample_sets_stop_the_evaluation(trained, critics, tmp_path):
  good = np.load(trained / "ldm" / "samples_1.npz")
  images = good["images"].astype(np.float32)
  nan = images.copy()
  nan[0, :2] = np.nan                                      # two samples of one class
  np.savez(tmp_path / "nan.npz", images=nan, exemplars=good["exemplars"])
  np.savez(tmp_path / "range.npz", images=images * 255.0, exemplars=good["exemplars"])   # 0..255 floats
  (tmp_path / "text.npz").write_text("images, exemplars\n1, 2\n")
  for name, message in (("nan", "set 'nan': 2 of 18 samples hold NaN/inf"),
                        ("range", "set 'range': .* outside \\[0, 1\\]"), ("text", "text.npz is not an npz")):
    out = _evaluate(trained, tmp_path / f"eval_{name}", files=(tmp_path / f"{name}.npz",))
    assert out.returncode == 2, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and __import__("re").search(message, last), last
    assert not (tmp_path / f"eval_{name}" / "scores.json").exists()      # no partial scores


def test_sample_cache_is_used_only_for_the_model_and_settings_that_made_it(trained, critics, tmp_path):
  from ldm_jax import manifest
  from ldm_jax.jobs import evaluate
  eval_dir = tmp_path / "eval"
  small = ("--config.eval.max_classes=6", "--config.eval.samples_per_class=4",
           "--config.eval.human_per_class=4")
  first = _evaluate(trained, eval_dir, ldm_dirs=(trained / "ldm",), extra=small)
  assert first.returncode == 0, first.stderr[-2000:]
  cache = eval_dir / "samples" / "ldm_prototype=1.npz"
  with np.load(cache) as z:
    before, provenance = z["images"], json.loads(str(z["provenance"]))
  assert provenance["export"] == manifest.identity(trained / "ldm" / "models" / "1")
  # Another LDM workdir with the same member names: model 1 re-exported with other weights.
  other = _copy_ldm(trained, tmp_path, "ldm_other")
  model, spec = ldm_lib.load(other / "models" / "1")
  ldm_lib.save(other / "models" / "1", model.replace(denoiser_params=jax.tree.map(lambda p: p * 0.5,
                                                                                 model.denoiser_params)), spec)
  again = _evaluate(trained, eval_dir, ldm_dirs=(other,), extra=small)
  assert again.returncode == 0, again.stderr[-2000:]
  with np.load(cache) as z:
    after, provenance = z["images"], json.loads(str(z["provenance"]))
  assert provenance["export"] == manifest.identity(other / "models" / "1")
  assert np.abs(after.astype(int) - before).max() > 0      # generated anew, not the old model's samples
  scores = json.loads((eval_dir / "scores.json").read_text())
  point = next(p for p in scores["points"] if p["name"] == "ldm_prototype=1")
  assert point["path"] == str(other / "models" / "1")
  # Same model, another guidance weight: generated anew too; same settings again: the cache is read back.
  info = {"name": "ldm_prototype=1", "path": str(other / "models" / "1")}
  cfg = __import__("configs.evaluate", fromlist=["x"]).get_config("omniglot,tiny").eval
  cfg.update(max_classes=6, samples_per_class=4, human_per_class=4, guidance=2.0)
  ex = np.load(cache)["exemplars"]
  assert evaluate._cached(cache, evaluate.sample_provenance(info, ex, cfg)) is None
  cfg.guidance = 1.0
  np.testing.assert_array_equal(evaluate._cached(cache, evaluate.sample_provenance(info, ex, cfg))["images"], after)


def _tree_bytes(root):
  return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
          and p.name != ".lock"}


def test_a_refused_run_writes_nothing(trained):
  from ldm_jax import rae
  before = _tree_bytes(trained / "rae")
  other = run_main(*RAE_TINY, "--config.data.max_train_examples=320", f"--workdir={trained}/rae")  # no --resume
  assert other.returncode == 2 and "--resume" in other.stderr, other.stderr[-2000:]
  past = run_main(*RAE_TINY, "--config.train.epochs=1", "--resume", f"--workdir={trained}/rae")
  assert past.returncode == 2 and "past train.epochs=1" in past.stderr, past.stderr[-2000:]
  assert _tree_bytes(trained / "rae") == before
  model, variables, member = rae.load_member(trained / "rae", 1)     # the finished run still loads
  assert member["beta"]["prototype"] == 1.0


def test_a_corrupted_checkpoint_is_refused_before_it_is_restored(trained, tmp_path):
  import shutil

  from ldm_jax import manifest, rae
  work = tmp_path / "rae"
  shutil.copytree(trained / "rae", work)
  step = work / "checkpoints" / "2"
  assert manifest.exists(step)
  rae.load_member(work, 1)                                 # intact: loads
  blob = max((p for p in (step / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
  data = bytearray(blob.read_bytes())
  data[len(data) // 2] ^= 0x01
  blob.write_bytes(bytes(data))
  with pytest.raises(manifest.CorruptFileError, match=f"checkpoint .*{blob.name}.*checksum"):
    rae.load_member(work, 1)
  out = run_main(*RAE_TINY, "--config.train.epochs=3", "--resume", f"--workdir={work}")
  assert out.returncode == 2 and "does not match its checksum" in out.stderr.strip().splitlines()[-1]


def test_evaluate_job_judges_with_published_torch_critic_files(trained, tmp_path):
  from test_critics import _torch_like_state_dict, _write_torch_zip
  _write_torch_zip(tmp_path / "proto.pt", _torch_like_state_dict("metric", seed=1))
  _write_torch_zip(tmp_path / "simclr.pt", _torch_like_state_dict("projection", seed=2))
  out = run_main("--config=configs/evaluate.py:omniglot,tiny", f"--workdir={tmp_path}/eval",
                 f"--config.eval.critics_torch=('{tmp_path}/proto.pt','{tmp_path}/simclr.pt')",
                 f"--config.eval.sample_files=('{trained}/ldm/samples_1.npz',)",
                 "--config.eval.max_classes=6", "--config.eval.human_per_class=4")
  assert out.returncode == 0, out.stderr[-3000:]
  summary = json.loads((tmp_path / "eval" / "scores.json").read_text())
  assert summary["critics"] == {"kind": "torch", "recognizer": f"{tmp_path}/proto.pt",
                                "featurizer": f"{tmp_path}/simclr.pt"}
  assert {p["name"] for p in summary["points"]} == {"humans", "samples_1"}
  assert (tmp_path / "eval" / "table.md").read_text().startswith("Critics: the published PyTorch critics")


def test_generate_cli_from_a_users_drawings(trained, tmp_path):
  """`python -m ldm_jax.generate` on the exported model with two PNGs (one inverted, one larger): the exemplars are
  prepared like the data layer's, n samples each in the evaluate job's npz format; an unreadable file is one
  line, exit 2, nothing written."""
  import subprocess
  import sys

  from PIL import Image

  from ldm_jax import data
  from ldm_jax.generate import prepare_drawing
  test = data.load("omniglot", "paper_test")
  a, b = test["images"][test["exemplar_index"][:2]]
  Image.fromarray(255 - a).save(tmp_path / "a.png")                        # black on white, like a scan
  Image.fromarray(np.kron(b, np.ones((2, 2), np.uint8))).save(tmp_path / "b.png")   # 96×96, white on black
  model = trained / "ldm" / "models" / "1"
  cmd = [sys.executable, "-m", "ldm_jax.generate", f"--model={model}", "--exemplar", str(tmp_path / "a.png"),
         str(tmp_path / "b.png"), "--n=3", f"--out={tmp_path}/out/grid.png"]
  out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  got = np.load(tmp_path / "out" / "grid.npz")
  assert got["images"].shape == (2, 3, 48, 48) and np.isfinite(got["images"]).all()
  np.testing.assert_array_equal(got["exemplars"][0], a)
  np.testing.assert_array_equal(got["exemplars"][1], prepare_drawing(tmp_path / "b.png", 48))
  assert (tmp_path / "out" / "grid.png").stat().st_size > 1000
  (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
  bad = subprocess.run([*cmd[:5], str(tmp_path / "bad.png"), "--n=3", f"--out={tmp_path}/bad/grid.png"],
                       capture_output=True, text=True, timeout=600)
  lines = bad.stderr.strip().splitlines()
  assert bad.returncode == 2 and len(lines) == 1 and "bad.png: not a readable image" in lines[0], bad.stderr
  assert not (tmp_path / "bad").exists()
