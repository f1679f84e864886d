"""The LDM job: guided diffusion models for every RAE of a trained sweep, trained as one compiled program
(paper §4.2, A.4.3), then one-shot generation for the held-out characters.

Latent space: each RAE's training latents are computed once (frozen encoder, eval mode), standardised by ONE scalar
mean and std of that RAE's training latents, and cached on the device; member i's diffusion model trains on RAE
i's latents (a leading member axis on the data). Pixel space (the baseline): one denoiser on 48×48 images in
[−1, 1]. Every model is exported with `ldm_jax.ldm.save` to `<workdir>/models/<member>`.
"""

from __future__ import annotations

import functools
import json
import logging
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ldm_jax import data as data_lib
from ldm_jax import diffusion, distributed
from ldm_jax import ldm as ldm_lib
from ldm_jax import rae as rae_job
from ldm_jax.data import pipeline
from ldm_jax.eval.figures import write_grid
from ldm_jax.eval.oneshot import exemplar_fidelity
from ldm_jax.train import loop, precision, tensorboard

log = logging.getLogger(__name__)


def make_optimizer(cfg: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.GradientTransformation:
  """AdamW (PyTorch defaults but eps 1e-5, as the authors), lr ÷ 10 every 200 epochs (A.4.3)."""
  tc = cfg.train
  lr = tc.lr
  if tc.lr_decay_every_epochs > 0:
    lr = optax.exponential_decay(tc.lr, transition_steps=tc.lr_decay_every_epochs * steps_per_epoch,
                                 decay_rate=tc.lr_decay_factor, staircase=True)
  return optax.adamw(lr, b1=0.9, b2=0.999, eps=tc.adam_eps, weight_decay=tc.weight_decay)


def _mixed_eps(eps_fn, dtype, params, x_t, cond, t):
  cast = lambda a: precision.cast_floating(a, dtype)
  return eps_fn(cast(params), cast(x_t), cast(cond), t).astype(jnp.float32)


def make_loss_fn(denoiser, cfg: ml_collections.ConfigDict, space: str):
  schedule = diffusion.schedule_from_config(cfg.diffusion)
  eps_fn = ldm_lib.denoiser_eps_fn(denoiser)
  dtype = precision.compute_dtype(cfg.train.get("compute_dtype", "float32"))
  if dtype != jnp.float32:  # the network in the compute dtype; noising and the MSE in float32
    eps_fn = functools.partial(_mixed_eps, eps_fn, dtype)

  def loss_fn(params, batch_stats, hparams, batch, rng):
    del hparams
    if space == "latent":
      x0, cond = batch["x"], batch["cond"]
    else:
      x0, cond = batch["image"] * 2.0 - 1.0, batch["exemplar"] * 2.0 - 1.0
    value = diffusion.loss(eps_fn, params, schedule, x0, cond, rng, cfg.diffusion.cond_drop_prob)
    return value, (batch_stats, {})

  return loss_fn


def latent_scaling(latents: np.ndarray) -> tuple[float, float]:
  """ONE scalar mean and std over all training latents of one RAE."""
  return float(latents.mean()), float(latents.std())


def _latent_data(cfg, train: dict[str, Any]):
  """Encodes the training split with every RAE of the sweep → (LatentSplit [K, N, d], members, RAE bundle)."""
  rae_cfg, rae_models, rae_vars, rae_members, run = rae_job.load_sweep(cfg.ldm.rae_workdir)
  if rae_cfg.data.image_size != cfg.data.image_size:
    raise ValueError(f"the RAEs in {cfg.ldm.rae_workdir} take {rae_cfg.data.image_size}px images; "
                     f"data.image_size is {cfg.data.image_size}")
  chosen = list(cfg.ldm.rae_members) or list(range(len(rae_members)))
  rae_summary = pathlib.Path(cfg.ldm.rae_workdir, "summary.json")
  rae_diverged = ({i for i, m in enumerate(json.loads(rae_summary.read_text())["members"]) if m.get("diverged")}
                  if rae_summary.exists() else set())
  encoders = {m: rae_job.encode_fn(m, cfg.ldm.kl_latent) for m in dict.fromkeys(rae_models)}
  images = jnp.asarray(train["images"])
  latents, members = [], []
  for i in chosen:   # the latents each decoder was trained on: codewords (VQ), one posterior sample (KL)
    z = np.asarray(encoders[rae_models[i]](rae_vars[i], images, jax.random.fold_in(jax.random.PRNGKey(cfg.seed), i)))
    mean, std = latent_scaling(z)
    latents.append((z - mean) / std)
    members.append({**rae_members[i], "rae_member": i, "latent_mean": mean, "latent_std": std,
                    "rae_diverged": i in rae_diverged})
  k = len(chosen)
  data = pipeline.LatentSplit(latents=jnp.asarray(np.stack(latents), jnp.float32),
                              labels=jnp.tile(jnp.asarray(train["labels"], jnp.int32), (k, 1)),
                              exemplar_index=jnp.tile(jnp.asarray(train["exemplar_index"], jnp.int32), (k, 1)))
  # Each chosen RAE as a model of its own (a mixed sweep's member: its own regularizers' config and parameters).
  bundle = {"configs": [rae_job.member_config(rae_cfg, rae_members[i]) for i in chosen],
            "models": [rae_models[i] for i in chosen], "variables": [rae_vars[i] for i in chosen], "run": run}
  return data, members, bundle


def _spec(cfg, space: str, latent_dim: int, member: dict, rae: dict | None, i: int = 0) -> dict:
  spec = {"space": space, "unet": cfg.ldm.unet, "latent_dim": latent_dim, "image_size": cfg.data.image_size,
          "kl_latent": cfg.ldm.kl_latent,
          "conv_impl": rae_job.resolve_conv_impl(cfg.ldm.conv_impl, "pixel_denoiser"),
          "diffusion": cfg.diffusion.to_dict(), "member": member}
  if rae is not None:
    spec.update(rae_config=rae["configs"][i].to_dict(), rae_num_classes=rae["run"]["num_classes"],
                rae_workdir=str(cfg.ldm.rae_workdir))
  return spec


def _fmt(x) -> str:
  return "—" if x is None else f"{x:.4f}"


def first_and_last_loss(workdir, member: int) -> tuple[float, float]:
  recs = loop.read_metrics(workdir, member)
  return recs[0]["loss"], recs[-1]["loss"]


def evaluate_member(model: ldm_lib.LDM, cfg, test: dict[str, Any], key: jax.Array) -> tuple[dict, dict]:
  """Samples for every test exemplar; fidelity to the own exemplar in the sampler's space and in pixels."""
  ex_rows = np.asarray(test["exemplar_index"])[: cfg.eval.max_classes or None]
  exemplars = np.asarray(test["images"])[ex_rows]
  out = ldm_lib.generate(model, exemplars, cfg.eval.per_exemplar, key, guidance=cfg.eval.guidance,
                         sampler=cfg.eval.sampler, ddim_steps=cfg.eval.ddim_steps, chunk=cfg.eval.chunk,
                         ddim_eta=cfg.eval.ddim_eta)
  c, n = out["images"].shape[:2]
  pix = exemplar_fidelity(jnp.asarray(out["images"].reshape(c, n, -1)), jnp.asarray(exemplars.reshape(c, -1) / 255.0))
  scores = {"classes": int(c), "per_exemplar": int(n), "chance_nearest": 1.0 / c,
            "pixel_nearest": float(pix["nearest"]), "pixel_pairwise": float(pix["pairwise"])}
  if model.space == "latent":
    lat = exemplar_fidelity(jnp.asarray(out["codes"]), jnp.asarray(out["exemplar_codes"]))
    scores.update(latent_nearest=float(lat["nearest"]), latent_pairwise=float(lat["pairwise"]))
  return scores, {**out, "exemplars": exemplars}


def write_sample_grid(path: pathlib.Path, samples: dict, classes: int, rows: int, title: str) -> None:
  """Fig. 2 layout: exemplars on top, one column per class, samples below."""
  images = samples["images"][:classes]                     # [C, n, H, W]
  grid = [samples["exemplars"][:classes] / 255.0] + [images[:, j] for j in range(min(rows, images.shape[1]))]
  write_grid(path, grid, ["exemplar"] + [""] * (len(grid) - 1), title=title)


def train_and_evaluate(cfg: ml_collections.ConfigDict, workdir: str, resume: bool = False) -> dict[str, Any]:
  space = cfg.ldm.space
  if space not in ldm_lib.SPACES:
    raise ValueError(f"ldm.space must be one of {ldm_lib.SPACES}, got {space!r}")
  if space == "latent" and not cfg.ldm.rae_workdir:
    raise ValueError("ldm.rae_workdir is required in latent space: the workdir of a trained RAE sweep")
  train = data_lib.load_split(cfg, cfg.data.split, cfg.data.max_train_examples)
  test = data_lib.load_split(cfg, cfg.data.eval_split)
  rae = None
  if space == "latent":
    data, members, rae = _latent_data(cfg, train)
    latent_dim = int(data.latents.shape[-1])
  else:
    data, members, latent_dim = pipeline.to_device(train), [{"name": "pixel"}], 0
  denoiser = ldm_lib.build_denoiser(space, cfg.ldm.unet, latent_dim, cfg.ldm.conv_impl)
  spe = pipeline.steps_per_epoch(data.num_examples, cfg.train.batch_size)
  if spe == 0:
    raise ValueError(f"batch_size {cfg.train.batch_size} exceeds the {data.num_examples} training drawings")
  tx = make_optimizer(cfg, spe)
  x_init = jnp.zeros((2, latent_dim) if space == "latent" else (2, cfg.data.image_size, cfg.data.image_size, 1))
  init_fn = lambda key: denoiser.init(key, x_init, x_init, jnp.zeros((2,), jnp.int32))
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  states, _ = loop.fit(workdir=workdir, config=cfg, init_fn=init_fn, loss_fn=make_loss_fn(denoiser, cfg, space),
                       tx=tx, hparams={"member": jnp.arange(len(members))}, members=members, data=data,
                       resume=resume, desc=f"ldm-{space}", member_data=space == "latent")

  diverged = loop.diverged_members(workdir)
  for i, member in enumerate(members):   # travels in every export's spec, so the evaluation sees it
    member["diverged"] = i in diverged or bool(member.get("rae_diverged"))
  schedule = diffusion.schedule_from_config(cfg.diffusion)
  board = tensorboard.Board(workdir, cfg.train.get("tensorboard", False))
  summary = {"space": space, "unet": cfg.ldm.unet, "guidance": cfg.eval.guidance, "sampler": cfg.eval.sampler,
             "ddim_steps": cfg.eval.ddim_steps, "ddim_eta": cfg.eval.ddim_eta, "members": []}
  for i, member in enumerate(members):
    params = jax.tree.map(lambda x: x[i], states.params)
    model = ldm_lib.LDM(denoiser_params=params, schedule=schedule,
                        rae_variables=rae["variables"][i] if rae else None,
                        latent_mean=jnp.float32(member.get("latent_mean", 0.0)),
                        latent_std=jnp.float32(member.get("latent_std", 1.0)), denoiser=denoiser,
                        rae=rae["models"][i] if rae else None, kl_latent=cfg.ldm.kl_latent)
    ldm_lib.save(workdir / "models" / str(i), model, _spec(cfg, space, latent_dim, member, rae, i))
    scores, samples = evaluate_member(model, cfg, test, jax.random.PRNGKey(cfg.eval.seed))
    if distributed.is_primary():  # every process sampled the same; one writes
      np.savez_compressed(workdir / f"samples_{i}.npz", images=samples["images"], exemplars=samples["exemplars"],
                          codes=samples["codes"])
      write_sample_grid(workdir / f"samples_{i}.png", samples, cfg.eval.grid_classes, cfg.eval.grid_rows,
                        f"{space} LDM, {member['name']}, guidance {cfg.eval.guidance:g}")
      board.image(f"samples/member_{i}", workdir / f"samples_{i}.png", cfg.train.epochs)
    first, last = first_and_last_loss(workdir, i)
    summary["members"].append({**member, "loss_first_epoch": first, "loss_last_epoch": last, **scores,
                               "nonfinite_steps": int(states.nonfinite_steps[i])})
    log.info("%s: denoising loss %s → %s; own exemplar nearest %.3f (chance %.3f) in pixels%s%s", member["name"],
             _fmt(first), _fmt(last), scores["pixel_nearest"], scores["chance_nearest"],
             f", {scores['latent_nearest']:.3f} in the latent" if "latent_nearest" in scores else "",
             " (DIVERGED)" if member["diverged"] else "")
  board.close()
  distributed.write_text(workdir / "summary.json", json.dumps(summary, indent=1))
  return summary
