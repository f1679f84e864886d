"""Longer real-data checks (`make test-slow`, marker `slow`)."""

import json

import pytest
from conftest import run_main

pytestmark = [pytest.mark.slow, pytest.mark.real_data]


def test_prototype_sweep_beats_unregularised_on_one_shot_accuracy(tmp_path):
  """The 4-β prototype sweep on Omniglot: reconstruction falls, and β > 0 gives higher 20-way 1-shot
  nearest-exemplar accuracy on the test characters than β = 0."""
  out = run_main("--config=configs/rae.py:omniglot", "--config.sweep.betas=(0.0,1.0,10.0,100.0)",
                 "--config.data.max_train_examples=8000", "--config.train.batch_size=32",
                 "--config.train.epochs=4", f"--workdir={tmp_path}", timeout=3600)
  assert out.returncode == 0, out.stderr[-2000:]
  members = json.loads((tmp_path / "summary.json").read_text())["members"]
  acc = {m["beta"]["prototype"]: m["oneshot_accuracy"] for m in members}
  print(json.dumps(acc))
  assert max(acc[1.0], acc[10.0], acc[100.0]) > acc[0.0]
  first = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][:4]
  assert all(m["recon"] < f["recon"] for m, f in zip(members, first))


def test_demo_ldm_samples_follow_their_exemplars(tmp_path):
  """The README demo end to end (~20 CPU minutes): the denoising loss falls, samples of held-out characters are
  nearest to their own exemplar far more often than chance, in the RAE latent and in pixels, and the critics
  recognise them above 20-way chance."""
  out = run_main("--config=configs/demo.py", f"--workdir={tmp_path}", timeout=3600)
  assert out.returncode == 0, out.stderr[-2000:]
  (m,) = json.loads((tmp_path / "ldm" / "summary.json").read_text())["members"]
  assert m["loss_last_epoch"] < 0.5 * m["loss_first_epoch"]
  assert m["latent_nearest"] > 3 * m["chance_nearest"] and m["pixel_nearest"] > 2 * m["chance_nearest"]
  assert m["latent_pairwise"] > 0.6 and m["pixel_pairwise"] > 0.6
  assert (tmp_path / "ldm" / "samples_0.png").exists()
  points = {p["name"]: p for p in json.loads((tmp_path / "eval" / "scores.json").read_text())["points"]}
  assert points["humans"]["recognizability"] > 0.5 and points["ldm_prototype=1"]["recognizability"] > 0.1
  assert (tmp_path / "eval" / "originality_recognizability.png").exists()


def test_pixel_space_baseline_trains(tmp_path):
  out = run_main("--config=configs/ldm.py:omniglot,tiny,space=pixel", "--config.data.max_train_examples=640",
                 "--config.train.batch_size=32", "--config.train.epochs=4", "--config.eval.max_classes=6",
                 "--config.eval.per_exemplar=3", f"--workdir={tmp_path}", timeout=3600)
  assert out.returncode == 0, out.stderr[-2000:]
  (m,) = json.loads((tmp_path / "summary.json").read_text())["members"]
  assert m["loss_last_epoch"] < m["loss_first_epoch"] and m["nonfinite_steps"] == 0


def test_sketchembednet_short_cpu_training_beats_a_random_encoder(tmp_path):
  """A short CPU SketchEmbedNet run on Lake's Omniglot strokes (~8 CPU minutes): pen, stroke and pixel losses all
  fall, and its embeddings beat the randomly initialised encoder on 20-way 1-shot Vinyals test episodes."""
  out = run_main("--config=configs/sketch.py:cpu", "--config.train.steps=300", "--config.eval.episodes=300",
                 "--config.eval.settings=((20,1),)", f"--workdir={tmp_path}", timeout=3600)
  assert out.returncode == 0, out.stderr[-2000:]
  summary = json.loads((tmp_path / "summary.json").read_text())
  print(json.dumps(summary["losses"]), json.dumps(summary["few_shot"]))
  for name in ("pen", "stroke", "pixel"):
    assert summary["losses"][name]["last"] < summary["losses"][name]["first"], name
  (trained, ci_t), (random, ci_r) = (summary["few_shot"][k]["20way1shot"] for k in ("trained", "random_init"))
  assert trained - ci_t > random + ci_r


def _study(script, root, *args):
  import os
  import subprocess
  import sys
  return subprocess.run([sys.executable, f"experiments/{script}", "--root", str(root), "--tiny", *args],
                        capture_output=True, text=True, timeout=3600, env={**os.environ})


def latent_kind(model, exemplars_u8) -> str:
  """What an exported LDM conditions on and decodes from: 'codewords' (every latent on the VQ codebook),
  'sampled' (two encodings with different keys differ: KL posterior samples) or 'deterministic'."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from ldm_jax import ldm as ldm_lib
  from ldm_jax.models.rae import RAE
  a = np.asarray(ldm_lib.encode(model, exemplars_u8, jax.random.PRNGKey(0)))
  b = np.asarray(ldm_lib.encode(model, exemplars_u8, jax.random.PRNGKey(1)))
  if "vq" in model.rae.regularizers:
    z = jnp.asarray(a * float(model.latent_std) + float(model.latent_mean))
    snapped = model.rae.apply(model.rae_variables, z, method=RAE.snap)
    return "codewords" if np.allclose(snapped, z, atol=1e-4 * float(jnp.abs(z).max())) else "continuous"
  return "sampled" if not np.allclose(a, b) else "deterministic"


@pytest.mark.parametrize("grid", ["mixed", "per-regularizer"])
def test_the_fig3_study_from_one_command_every_regularizer_through_to_the_ranking(tmp_path, grid):
  """The central study's one command, tiny (`study_fig3.py --scale cpu --tiny`): all six regularizers at their two
  spread β, the unregularised RAE, Barlow+Prototype (Fig. 4a) and the pixel baseline through RAE → latent DDPM →
  critics → evaluation → the ranking table, on real Omniglot drawings; as one mixed sweep per stage (the CPU's
  choice) and as one sweep per regularizer. Every LDM works on the latent kind its decoder was trained on."""
  out = _study("study_fig3.py", tmp_path, "--scale", "cpu", "--grid", grid)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  assert len(list((tmp_path / "omniglot").glob("rae_*"))) == (1 if grid == "mixed" else 8)
  check_study_results(tmp_path / "omniglot")
  again = _study("study_fig3.py", tmp_path, "--scale", "cpu", "--grid", grid)   # idempotent: nothing retrains
  assert again.returncode == 0 and "new →" not in again.stdout and "checkpoint" not in again.stdout, again.stdout


def check_study_results(root):
  import json

  import numpy as np

  from ldm_jax import data
  from ldm_jax import ldm as ldm_lib
  from ldm_jax.regularizer_registry import REGULARIZERS
  from ldm_jax.study.fig3 import spread_betas
  exemplars = data.load("omniglot", "paper_test")
  exemplars = exemplars["images"][exemplars["exemplar_index"][:8]]
  summary = json.loads((root / "eval" / "scores.json").read_text())
  points = [p for p in summary["points"] if p["kind"] == "ldm"]
  for p in points:   # KL: posterior samples, VQ: codewords, every other: the deterministic encoder mean
    model, _ = ldm_lib.load(p["path"])
    want = "sampled" if "kl" in p["betas"] else "codewords" if "vq" in p["betas"] else "deterministic"
    assert latent_kind(model, exemplars) == want, p["name"]
  for reg in REGULARIZERS:
    assert sorted(p["beta"] for p in points if p["regularizer"] == reg) == sorted(spread_betas(reg)), reg
  assert [p["name"] for p in points if p["regularizer"] == "none"] == ["ldm_none"]
  combo = [p for p in points if p["regularizer"] == "prototype+barlow"]
  assert sorted(p["beta"] for p in combo) == sorted(spread_betas("prototype")) and \
      {p["swept"] for p in combo} == {"prototype"} and {p["betas"]["barlow"] for p in combo} == {30.0}
  assert [p["kind"] for p in summary["points"]].count("pixel") == 1
  assert all(np.isfinite(p["distance_to_human"]) for p in summary["points"])
  for name in ("fig3.png", "table.md", *(f"beta_{r}.png" for r in REGULARIZERS)):
    assert (root / "eval" / name).exists(), name
  # The ranking: every evaluated model once, by distance to humans, with its RAE's and LDM's own numbers.
  rows = json.loads((root / "study.json").read_text())["rows"]
  assert len(rows) == len(summary["points"]) == 1 + 15 + 1
  d = [r["distance_to_human"] for r in rows]
  assert d == sorted(d) and rows[0]["kind"] == "human"
  ldm_rows = [r for r in rows if r["kind"] == "ldm"]
  assert all(0 <= r["rae_oneshot_accuracy"] <= 1 and r["rae_nonfinite_steps"] == 0 and
             np.isfinite(r["denoising_loss"]) for r in ldm_rows)
  table = (root / "study.md").read_text()
  assert all(f"| {r['name']}" in table for r in rows) and "Wall clock per stage" in table
