"""The IMLE job: a few-shot set of real drawings → IMLE and RS-IMLE generators (one member per ε, vmapped into
one program), orbax checkpoints with resume, then precision / recall and the Fréchet distance of each member's
samples against the set, and a sample grid."""

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
from ldm_jax.eval import distribution
from ldm_jax.eval.figures import write_grid
from ldm_jax.imle import algorithm, generator, search
from ldm_jax.train import loop

log = logging.getLogger(__name__)


def load_set(cfg) -> np.ndarray:
  """The few-shot set as floats in [−1, 1] [n, H, W] (strokes bright): the first `max_examples` drawings of a
  QuickDraw category or of an Omniglot alphabet (all its characters)."""
  dc = cfg.data
  kw = {"data_dir": dc.data_dir or None, "build_dir": dc.build_dir or None}
  d = data_lib.load(dc.name, "all", image_size=dc.image_size, exemplar_space="", **kw)
  rows, known = data_lib.set_rows(dc.name, d, dc.category)
  if not len(rows):
    raise ValueError(f"data.category {dc.category!r} is not in {dc.name}; choose one of {known}")
  images = d["images"][rows[: dc.max_examples]]
  if images.shape[1] != dc.image_size:
    raise ValueError(f"{dc.name} images are {images.shape[1]}px; data.image_size is {dc.image_size}")
  return images.astype(np.float32) / 127.5 - 1.0


def feature_fn(cfg):
  if cfg.eval.critics_workdir:
    from ldm_jax.eval.judge import load_judges
    judges = load_judges(cfg.eval.critics_workdir)
    return "simclr critic features", lambda x: np.asarray(judges.featurizer(jnp.asarray((x + 1.0) / 2.0)))
  side = cfg.data.image_size
  proj = np.asarray(jax.random.normal(jax.random.PRNGKey(7), (side * side, 64))) / side
  return "random projection of pixels (64-d)", lambda x: ((x + 1.0) / 2.0).reshape(len(x), -1) @ proj


def make_loss(feature_weight: float, critics_workdir: str):
  """d(x, G(z)) per example: pixel MSE, plus `feature_weight` × the squared distance of the originality critic's
  features (in place of the authors' LPIPS, whose weights are not available here) when the weight is > 0."""
  mse = lambda x, y: jnp.mean((x - y) ** 2, axis=(1, 2))
  if feature_weight <= 0:
    return mse
  if not critics_workdir:
    raise ValueError("imle.feature_weight > 0 needs trained critics: set eval.critics_workdir")
  from ldm_jax import critic
  model, variables = critic.load(critics_workdir, "simclr")
  size = ml_collections.ConfigDict(json.loads((pathlib.Path(critics_workdir) / "simclr" / "config.json")
                                              .read_text())).data.image_size
  features = critic.differentiable_features(model, variables, size)
  to_unit = lambda x: (x + 1.0) / 2.0
  return lambda x, y: mse(x, y) + feature_weight * jnp.mean((features(to_unit(x)) - features(to_unit(y))) ** 2, -1)


@functools.lru_cache(maxsize=8)
def _programs(generator_name: str, settings: algorithm.ImleSettings, optimizer: tuple, image_pixels: int,
              projection_dim: int, projection_seed: int, loss: tuple = (0.0, "")):
  """(model, tx, embed, jit(vmap(outer step)), jit(generate)) for one setting: built once per process, so repeated
  or resumed runs in one process reuse the compiled programs. `loss` = (feature weight, critics workdir)."""
  model = generator.build_generator(generator_name)
  lr, b1, b2, wd = optimizer
  tx = optax.adamw(lr, b1=b1, b2=b2, weight_decay=wd)
  projection = search.make_projection(jax.random.PRNGKey(projection_seed), image_pixels, projection_dim)
  embed = lambda x: search.project(x, projection)
  gen = lambda p, z: model.apply(p, z)
  step = algorithm.make_outer_step(gen, make_loss(*loss), embed, tx, settings, model.latent_dim, jit=False)
  vstep = jax.jit(jax.vmap(step, in_axes=(0, None, None, 0, 0)))      # every ε in one program
  return model, tx, jax.jit(embed), vstep, jax.jit(gen)




def train_and_evaluate(cfg: ml_collections.ConfigDict, workdir: str, resume: bool = False) -> dict:
  out = pathlib.Path(workdir)
  out.mkdir(parents=True, exist_ok=True)
  images = load_set(cfg)
  n = len(images)
  ic, tc = cfg.imle, cfg.train
  model = generator.build_generator(ic.generator)
  probe = jax.eval_shape(lambda: model.apply(model.init(jax.random.PRNGKey(0), jnp.zeros((1, model.latent_dim))),
                                             jnp.zeros((1, model.latent_dim))))
  if probe.shape[1] != cfg.data.image_size:
    raise ValueError(f"generator {ic.generator!r} draws {probe.shape[1]}px images; the data are "
                     f"{cfg.data.image_size}px")
  settings = algorithm.ImleSettings(pool_factor=ic.pool_factor,
                                    inner_steps=ic.inner_steps or max(n // ic.batch_size, 1),
                                    batch_size=ic.batch_size, latent_noise=ic.latent_noise, adaptive=ic.adaptive)
  model, tx, embed, vstep, gen = _programs(ic.generator, settings, (tc.lr, tc.b1, tc.b2, tc.weight_decay),
                                           int(images[0].size), ic.projection_dim, cfg.seed + 1,
                                           (ic.feature_weight, cfg.eval.critics_workdir))
  k = len(ic.epsilons)

  keys = jax.random.split(jax.random.PRNGKey(cfg.seed), k)
  init = lambda key: algorithm.init_state(model.init(key, jnp.zeros((1, model.latent_dim))), tx, n, model.latent_dim)
  states = jax.jit(jax.vmap(init))(keys)
  x = jnp.asarray(images)
  states = algorithm.fit_members(vstep, states, (x, embed(x)), ic.epsilons, jax.random.PRNGKey(cfg.seed + 2),
                                 workdir=out, config=cfg, resume=resume,
                                 examples_per_epoch=settings.inner_steps * settings.batch_size)

  space, features = feature_fn(cfg)
  real = features(images)
  rows, labels, members = [(images[: cfg.eval.grid] + 1) / 2], ["data"], []
  z = jax.random.normal(jax.random.PRNGKey(cfg.seed + 3), (cfg.eval.samples, model.latent_dim))
  records = loop.read_metrics(out)
  drawn = {}
  for m, eps in enumerate(ic.epsilons):
    params = jax.tree.map(lambda v: v[m], states.params)
    samples = drawn[f"samples_{m}"] = np.asarray(gen(params, z))
    fake = features(samples)
    prec, rec = distribution.precision_recall(jnp.asarray(real), jnp.asarray(fake), cfg.eval.k)
    mine = [r for r in records if r["member"] == m and r["loss"] is not None]   # its finite epochs
    members.append({"method": "RS-IMLE" if eps else "IMLE", "epsilon": eps, "precision": float(prec),
                    "recall": float(rec), "frechet_distance": distribution.frechet_distance(real, fake),
                    "loss_first": mine[0]["loss"], "loss_last": mine[-1]["loss"],
                    "rejected_fraction_last": mine[-1]["rejected_fraction"],
                    "nonfinite_epochs": sum(r["nonfinite_steps"] for r in records if r["member"] == m)})
    rows.append((samples[: cfg.eval.grid] + 1) / 2)
    labels.append(f"{members[-1]['method']} ε={eps:g}")
    log.info("%s: loss %.4f → %.4f, precision %.3f, recall %.3f, Fréchet %.3f (%s)", labels[-1],
             members[-1]["loss_first"], members[-1]["loss_last"], prec, rec, members[-1]["frechet_distance"], space)
  write_grid(out / "samples.png", rows, labels, title=f"{cfg.data.name} '{cfg.data.category}', n = {n}")
  # What the scores were computed on, in [-1, 1]: the set and every member's samples (member order = imle.epsilons).
  np.savez_compressed(out / "samples.npz", data=images, epsilons=np.asarray(ic.epsilons), **drawn)
  summary = {"data": cfg.data.name, "category": cfg.data.category, "n": n, "epochs": tc.epochs,
             "feature_space": space, "members": members}
  (out / "summary.json").write_text(json.dumps(summary, indent=1))
  return summary
