"""The demo job (the README's main command): a small one-shot LDM on Omniglot, end to end.

RAE sweep (a non-regularised and a prototype-regularised autoencoder, one compiled program) → their one-shot
scores and reconstructions → a guided latent diffusion model on the prototype RAE's latents (`ldm.rae_members`;
`()` gives every RAE its own, trained as one compiled program) → samples for the
held-out characters, the sample grids (exemplars on top) and the fidelity metrics → the two critics → the
samples' originality, recognizability and distance to the human point, with the plot. Stages live in
`<workdir>/{rae,ldm,critics,eval}`; a re-run resumes the stage that was interrupted.
"""

from __future__ import annotations

import json
import logging
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ldm_jax import data as data_lib
from ldm_jax import rae
from ldm_jax.eval.figures import write_grid
from ldm_jax.jobs import critics, evaluate, ldm
from ldm_jax.jobs import rae as rae_job
from ldm_jax.models.rae import RAE, decode_latents, encode_latents

log = logging.getLogger(__name__)


def reconstruct(model: RAE, variables, images_u8: np.ndarray) -> np.ndarray:
  """Decoded encoder means (codewords with VQ)."""
  z = encode_latents(model, variables, jnp.asarray(images_u8), jax.random.PRNGKey(0), kl_latent="mean")
  return np.asarray(decode_latents(model, variables, z))


def _stage_done(workdir: pathlib.Path) -> bool:
  return (workdir / "summary.json").exists()


def _run_stage(fn, cfg, workdir: pathlib.Path, resume: bool):
  if _stage_done(workdir) and resume:
    return json.loads((workdir / "summary.json").read_text())
  return fn(cfg, str(workdir), resume=resume)   # resuming a stage that never started just starts it


def train_and_evaluate(cfg, workdir: str, resume: bool = False):
  out = pathlib.Path(workdir)
  rae_summary = _run_stage(rae_job.train_and_evaluate, cfg.rae_job, out / "rae", resume)
  test = data_lib.load_split(cfg.rae_job, cfg.rae_job.data.eval_split)
  exemplars = test["images"][test["exemplar_index"][: cfg.demo.grid_classes]]
  rows, labels = [exemplars / 255.0], ["exemplar"]
  _, models, variables, members, _ = rae.load_sweep(out / "rae")
  for model, v, member in zip(models, variables, members):
    rows.append(reconstruct(model, v, exemplars))
    labels.append(member["name"])
  write_grid(out / "reconstructions.png", rows, labels)

  ldm_cfg = ml_collections.ConfigDict(cfg.ldm_job.to_dict())
  ldm_cfg.ldm.rae_workdir = str((out / "rae").absolute())
  ldm_summary = _run_stage(ldm.train_and_evaluate, ldm_cfg, out / "ldm", resume)
  critics_summary = _run_stage(critics.train_and_evaluate, cfg.critics_job, out / "critics", resume)
  eval_cfg = ml_collections.ConfigDict(cfg.eval_job.to_dict())
  eval_cfg.eval.critics_workdir = str((out / "critics").absolute())
  eval_cfg.eval.ldm_workdirs = (str((out / "ldm").absolute()),)
  eval_summary = evaluate.train_and_evaluate(eval_cfg, str(out / "eval"), resume=resume)
  metrics = {"rae": rae_summary, "ldm": ldm_summary, "critics": critics_summary,
             "eval": {"points": [{k: p[k] for k in ("name", "originality", "originality_norm", "recognizability",
                                                   "distance_to_human")} for p in eval_summary["points"]]}}
  (out / "demo_metrics.json").write_text(json.dumps(metrics, indent=1))
  line = {m["name"]: {"oneshot_accuracy": round(m["oneshot_accuracy"], 4)} for m in rae_summary["members"]}
  for m in ldm_summary["members"]:
    line[m["name"]].update({k: round(m[k], 4) for k in ("loss_first_epoch", "loss_last_epoch", "pixel_nearest",
                                                        "latent_nearest", "chance_nearest") if k in m})
  for p in metrics["eval"]["points"]:
    line.setdefault(p["name"], {}).update({k: round(p[k], 4) for k in ("originality_norm", "recognizability",
                                                                          "distance_to_human")})
  log.info("wrote %s, %s, %s and %s", out / "reconstructions.png", out / "ldm" / "samples_*.png",
           out / "eval" / "originality_recognizability.png", out / "demo_metrics.json")
  print(json.dumps(line))
  return metrics
