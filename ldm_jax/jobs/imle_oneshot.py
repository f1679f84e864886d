"""The one-shot IMLE job: conditional IMLE and RS-IMLE (one member per ε, vmapped into one program) in a trained
RAE's latent space, conditioned on each class's exemplar; orbax checkpoints with resume; samples of the test
characters decoded by the RAE and written in the evaluate job's sample-file format (`samples_<method>.npz`), and,
with trained critics, their originality, recognizability and distance to the human point."""

from __future__ import annotations

import functools
import json
import logging
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ldm_jax import data as data_lib
from ldm_jax import rae as rae_job
from ldm_jax.eval.figures import write_grid
from ldm_jax.imle import algorithm, conditional
from ldm_jax.models.rae import RAE, decode_latents
from ldm_jax.train import loop

log = logging.getLogger(__name__)


def class_table(split: dict, latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(drawings [C, k, d], exemplars [C, d]): per class its exemplar and its first k other drawings (k = the
  smallest class size − 1, so the table is rectangular)."""
  labels, ex = np.asarray(split["labels"]), np.asarray(split["exemplar_index"])
  own = [np.setdiff1d(np.flatnonzero(labels == c), [ex[c]]) for c in range(len(ex))]
  k = min(len(o) for o in own)
  return np.stack([latents[o[:k]] for o in own]), latents[ex]


def _decode_fn(model: RAE):
  """jit: latents → images, snapped to the codebook first with VQ (`models.rae.decode_latents`)."""
  return jax.jit(lambda variables, z: decode_latents(model, variables, z))


@functools.lru_cache(maxsize=4)
def _programs(latent_dim: int, generator: tuple, settings: algorithm.ImleSettings, optimizer: tuple):
  noise_dim, width, depth = generator
  model = conditional.ConditionalLatentGenerator(latent_dim, noise_dim, width, depth)
  lr, b1, b2, wd = optimizer
  tx = optax.adamw(lr, b1=b1, b2=b2, weight_decay=wd)
  gen = lambda p, z, e: model.apply(p, z, e)
  step = conditional.make_conditional_step(gen, tx, settings, noise_dim)
  return model, tx, jax.jit(jax.vmap(step, in_axes=(0, None, None, 0, 0))), jax.jit(gen)


def train_and_evaluate(cfg: ml_collections.ConfigDict, workdir: str, resume: bool = False) -> dict:
  out = pathlib.Path(workdir)
  out.mkdir(parents=True, exist_ok=True)
  ic, tc, ec = cfg.imle, cfg.train, cfg.eval
  if not ic.rae_workdir:
    raise ValueError("imle.rae_workdir is required: a trained RAE sweep (configs/rae.py)")
  rae_cfg, rae_models, rae_vars, members, _ = rae_job.load_sweep(ic.rae_workdir)
  if not 0 <= ic.rae_member < len(members):
    raise ValueError(f"imle.rae_member {ic.rae_member} is not a member of the sweep in {ic.rae_workdir} "
                     f"(0..{len(members) - 1})")
  variables, rae_model = rae_vars[ic.rae_member], rae_models[ic.rae_member]
  encode, decode = rae_job.encode_fn(rae_model), _decode_fn(rae_model)
  train = data_lib.load_split(rae_cfg, rae_cfg.data.split, cfg.data.max_train_examples)
  z_train = np.asarray(encode(variables, jnp.asarray(train["images"]), jax.random.PRNGKey(cfg.seed)))
  mean, std = float(z_train.mean()), float(z_train.std())
  data, exemplars = class_table(train, (z_train - mean) / std)
  latent_dim = data.shape[-1]
  settings = algorithm.ImleSettings(pool_factor=ic.pool_factor, inner_steps=ic.inner_steps, batch_size=ic.batch_size,
                                    latent_noise=ic.latent_noise)
  model, tx, vstep, gen = _programs(latent_dim, (ic.noise_dim, ic.width, ic.depth), settings,
                                    (tc.lr, tc.b1, tc.b2, tc.weight_decay))
  k = len(ic.epsilons)
  n = data.shape[0] * data.shape[1]

  def init(key):
    params = model.init(key, jnp.zeros((1, ic.noise_dim)), jnp.zeros((1, latent_dim)))
    return algorithm.init_state(params, tx, n, ic.noise_dim)

  states = jax.jit(jax.vmap(init))(jax.random.split(jax.random.PRNGKey(cfg.seed), k))
  states = algorithm.fit_members(vstep, states, (jnp.asarray(data), jnp.asarray(exemplars)), ic.epsilons,
                                 jax.random.PRNGKey(cfg.seed + 1), workdir=out, config=cfg, resume=resume,
                                 examples_per_epoch=settings.inner_steps * settings.batch_size, desc="imle_oneshot")

  test = data_lib.load_split(rae_cfg, rae_cfg.data.eval_split)
  classes = min(ec.classes, len(test["exemplar_index"]))
  ex_images = test["images"][test["exemplar_index"][:classes]]
  e_test = (np.asarray(encode(variables, jnp.asarray(ex_images), jax.random.PRNGKey(cfg.seed + 1))) - mean) / std
  noise = jax.random.normal(jax.random.PRNGKey(cfg.seed + 2), (classes * ec.samples_per_class, ic.noise_dim))
  records = loop.read_metrics(out)
  members_out, sets = [], {}
  for m, epsilon in enumerate(ic.epsilons):
    params = jax.tree.map(lambda v: v[m], states.params)
    codes = gen(params, noise, jnp.repeat(jnp.asarray(e_test), ec.samples_per_class, 0)) * std + mean
    images = np.asarray(decode(variables, codes)).reshape(classes, ec.samples_per_class, *ex_images.shape[1:])
    method = "RS-IMLE" if epsilon else "IMLE"
    sets[method] = images
    np.savez_compressed(out / f"samples_{method}.npz", images=images, exemplars=ex_images)
    mine = [r for r in records if r["member"] == m and r["loss"] is not None]   # its finite epochs
    members_out.append({"method": method, "epsilon": epsilon, "loss_first": mine[0]["loss"],
                        "loss_last": mine[-1]["loss"], "rejected_fraction_last": mine[-1]["rejected_fraction"]})
  shown = min(classes, 12)
  rows = [ex_images[:shown] / 255.0]
  labels = ["exemplar"]
  for mm in members_out:
    rows += [sets[mm["method"]][:shown, j] for j in range(min(3, ec.samples_per_class))]
    labels += [mm["method"]] + [""] * (min(3, ec.samples_per_class) - 1)
  write_grid(out / "samples.png", rows, labels, title="one-shot IMLE in the RAE latent space")
  summary = {"rae_workdir": ic.rae_workdir, "rae_member": ic.rae_member, "rae": members[ic.rae_member],
             "classes": classes, "samples_per_class": ec.samples_per_class, "members": members_out}
  if ec.critics_workdir:
    summary["scores"] = judge_sets(ec.critics_workdir, sets, test, classes, ec.samples_per_class, cfg.seed)
  (out / "summary.json").write_text(json.dumps(summary, indent=1))
  return summary


def judge_sets(critics_workdir: str, sets: dict[str, np.ndarray], test: dict, classes: int, per_class: int,
               seed: int) -> dict:
  """Originality, recognizability and distance to the human point of each set and of the real test drawings."""
  from ldm_jax.eval import judge
  humans, exemplars = judge.human_set(test, per_class, classes)
  return judge.judge_sets(judge.load_judges(critics_workdir), {"humans": humans, **sets}, exemplars,
                          jax.random.PRNGKey(seed))
