"""The SketchEmbedNet job: train on (image, strokes) pairs with the α curriculum, orbax checkpoints with resume,
then few-shot classification on Omniglot's Vinyals test classes (trained vs randomly initialised encoder, mean ±
95 % CI), one-shot sketches of unseen characters (grid, and originality/recognizability when critics are given),
and a latent interpolation figure."""

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

from ldm_jax import checkpoint
from ldm_jax import data as data_lib
from ldm_jax.data import pipeline
from ldm_jax.data.sketches import load_sketches
from ldm_jax.eval.figures import write_grid
from ldm_jax.sketch import fewshot, latent
from ldm_jax.sketch.losses import curriculum_alpha, sketch_losses
from ldm_jax.sketch.model import SketchEmbedNet
from ldm_jax.train import loop, sweep

log = logging.getLogger(__name__)


def build_model(mc) -> SketchEmbedNet:
  return SketchEmbedNet(encoder=mc.encoder, z_dim=mc.z_dim, units=mc.units, hyper_units=mc.hyper_units,
                        hyper_embedding=mc.hyper_embedding, mixtures=mc.mixtures)


def make_optimizer(tc) -> optax.GradientTransformation:
  """Adam, lr decayed continuously by `lr_decay` every `lr_decay_every` steps, values clipped at `clip` (App. B)."""
  schedule = optax.exponential_decay(tc.lr, tc.lr_decay_every, tc.lr_decay)
  return optax.chain(optax.clip(tc.clip), optax.adam(schedule))


def init_state(model: SketchEmbedNet, tx, key: jax.Array, images: jax.Array, strokes: jax.Array) -> dict:
  variables = model.init(key, images[:2], strokes[:2])
  return {"params": variables["params"], "batch_stats": variables["batch_stats"],
          "opt_state": tx.init(variables["params"]), "step": jnp.zeros((), jnp.int32)}


def make_train_step(model: SketchEmbedNet, tx, tc, image_size: int):
  """jit((state, images, strokes, all_indices, key) → (state, metrics)); the batch is gathered on device."""
  alpha_of = functools.partial(curriculum_alpha, increment=tc.alpha_increment, every=tc.alpha_every,
                               alpha_max=tc.alpha_max)

  def loss_fn(params, batch_stats, images, strokes, key, alpha):
    k_z, k_pix = jax.random.split(key)
    (out, _, _), updates = model.apply({"params": params, "batch_stats": batch_stats}, images, strokes, k_z,
                                       train=True, mutable=["batch_stats"])
    total, metrics = sketch_losses(out, strokes, k_pix, model.mixtures, image_size, alpha)
    return total, (metrics, updates["batch_stats"])

  def step(state, images, strokes, rows, key):
    (total, (metrics, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state["params"], state["batch_stats"], images[rows], strokes[rows], key, alpha_of(state["step"]))
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    # A non-finite step is skipped (the state stays the last finite one), as in the sweep trainer.
    finite = jnp.isfinite(total) & sweep.all_finite(grads)
    trained = sweep.keep_if_finite(finite, {"params": optax.apply_updates(state["params"], updates),
                                            "batch_stats": batch_stats, "opt_state": opt_state},
                                   {k: state[k] for k in ("params", "batch_stats", "opt_state")})
    return {**trained, "step": state["step"] + 1}, {**metrics, "nonfinite_steps": (~finite).astype(jnp.int32)}

  return jax.jit(step, donate_argnums=0)


@functools.lru_cache(maxsize=4)
def _programs(model_json: str, train_json: str, image_size: int):
  """(model, tx, jit(init), jit(train step)) built once per process for a config, so resumed or repeated runs in
  one process reuse the compiled programs."""
  mc, tc = (ml_collections.ConfigDict(json.loads(j)) for j in (model_json, train_json))
  model, tx = build_model(mc), make_optimizer(tc)
  return model, tx, jax.jit(functools.partial(init_state, model, tx)), make_train_step(model, tx, tc, image_size)


def batch_rows(seed: int, step: int, n: int, batch: int) -> np.ndarray:
  """Rows of step `step`: epoch-wise permutations fixed by (seed, epoch), so a resumed run sees the same batches."""
  per_epoch = max(n // batch, 1)
  epoch, k = divmod(step, per_epoch)
  return _permutation(seed, epoch, n)[k * batch:(k + 1) * batch]


@functools.lru_cache(maxsize=2)
def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  """One epoch's order, drawn once per epoch rather than at every step."""
  perm = np.random.default_rng([seed, epoch]).permutation(n)
  perm.flags.writeable = False
  return perm


@functools.partial(jax.jit, static_argnums=(0, 3))
def _encode_all(model, variables, images, chunk: int):
  """The encoder's means of every image, `chunk` rows at a time (one compiled program, bounded memory)."""
  return pipeline.map_in_chunks(lambda x: model.apply(variables, x, method=SketchEmbedNet.encode)[0], images,
                                min(chunk, images.shape[0]))


def encode_all(model, variables, images: np.ndarray, chunk: int = 2048) -> np.ndarray:
  return np.asarray(_encode_all(model, variables, jnp.asarray(images), chunk))


def few_shot_table(model, variables, test: dict, ec, seed: int) -> dict:
  """{'5way1shot': [mean, ci], ...} on the test split's classes."""
  feats = jnp.asarray(fewshot.by_class(encode_all(model, variables, test["images"]), test["labels"]))
  out = {}
  for i, (way, shot) in enumerate(ec.settings):
    acc = fewshot.episode_accuracies(feats, jax.random.PRNGKey(seed + i), way, shot, ec.episodes)
    out[f"{way}way{shot}shot"] = list(fewshot.mean_ci(acc))
  return out


def _generation_classes(test: dict, count: int) -> np.ndarray:
  """`count` unrotated test classes, evenly spread (so several alphabets appear)."""
  upright = np.unique(test["labels"][test["rotation"] == 0])
  return upright[np.linspace(0, len(upright) - 1, count).astype(int)]


def one_shot(model, variables, test: dict, ec, key) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(exemplars [G, H, W], samples [G, n, H, W], humans [G, n, H, W]) in [0, 1]: each class's first drawing is the
  exemplar, decoded `samples_per_class` times; the humans are the class's next drawings."""
  classes = _generation_classes(test, ec.generation_classes)
  rows = [np.flatnonzero(test["labels"] == c) for c in classes]
  exemplars = test["images"][[r[0] for r in rows]]
  humans = np.stack([test["images"][r[1:1 + ec.samples_per_class]] for r in rows]).astype(np.float32) / 255.0
  size = exemplars.shape[-1]
  z = _encode_all(model, variables, jnp.asarray(exemplars), 2048)
  z = jnp.repeat(z, ec.samples_per_class, 0)
  drawn = latent.draw(model, variables, z, key, size, ec.max_steps, ec.temperature)
  samples = np.asarray(drawn).reshape(len(classes), ec.samples_per_class, size, size)
  return exemplars.astype(np.float32) / 255.0, samples, humans


def judge_one_shot(critics_workdir: str, exemplars, samples, humans, seed: int) -> dict:
  from ldm_jax.eval import judge
  return judge.judge_sets(judge.load_judges(critics_workdir), {"sketchembednet": samples, "humans": humans},
                          exemplars, jax.random.PRNGKey(seed))


def interpolation_rows(model, variables, exemplars: np.ndarray, ec, key) -> list[np.ndarray]:
  z = _encode_all(model, variables, jnp.asarray((exemplars * 255).astype(np.uint8)), 2048)
  rows = []
  for a, b in zip(range(0, len(z) - 1, 2), range(1, len(z), 2)):
    codes = latent.interpolate(z[a], z[b], ec.interpolation_steps)
    rows.append(np.asarray(latent.draw(model, variables, codes, key, exemplars.shape[-1], ec.max_steps, 0.0)))
  return rows


def arithmetic_rows(model, variables, exemplars: np.ndarray, ec, key) -> list[np.ndarray]:
  """Rows [a, b, c, drawing of z_a − z_b + z_c] for consecutive triples of exemplars."""
  z = _encode_all(model, variables, jnp.asarray((exemplars * 255).astype(np.uint8)), 2048)
  rows = []
  for i in range(0, len(z) - 2, 3):
    code = latent.analogy(z[i], z[i + 1], z[i + 2])[None]
    drawn = np.asarray(latent.draw(model, variables, code, key, exemplars.shape[-1], ec.max_steps, 0.0))
    rows.append(np.concatenate([exemplars[i:i + 3], drawn]))
  return rows


def _mean(records, key, first: bool, window: int) -> float:
  vals = [r[key] for r in records]
  return float(np.mean(vals[:window] if first else vals[-window:]))


def train(cfg: ml_collections.ConfigDict, workdir: str, resume: bool = False):
  """The training stage → (model, trained variables, initial variables, summary of the data and losses)."""
  out = pathlib.Path(workdir)
  out.mkdir(parents=True, exist_ok=True)
  dc, tc = cfg.data, cfg.train
  kw = {"data_dir": dc.data_dir or None, "build_dir": dc.build_dir or None}
  sketches = load_sketches(dc.source, dc.split, max_len=dc.max_len, image_size=dc.image_size,
                           rdp_epsilon=None if dc.rdp_epsilon < 0 else dc.rdp_epsilon, variant=dc.variant,
                           max_examples=dc.max_examples, **kw)
  n = len(sketches["strokes"])
  if n < tc.batch_size:
    raise ValueError(f"{n} training drawings are fewer than train.batch_size={tc.batch_size}")
  log.info("%s: %d drawings (%d longer than %d dropped), offset scale %.3f", dc.source, n, sketches["dropped"],
           dc.max_len, sketches["scale"])
  images, strokes = jnp.asarray(sketches["images"]), jnp.asarray(sketches["strokes"])
  model, tx, init, train_step = _programs(json.dumps(cfg.model.to_dict(), sort_keys=True),
                                          json.dumps(tc.to_dict(), sort_keys=True), dc.image_size)
  state = init(jax.random.PRNGKey(cfg.seed), images[:2], strokes[:2])
  random_variables = jax.tree.map(jnp.copy, {"params": state["params"], "batch_stats": state["batch_stats"]})
  ckpt = checkpoint.Checkpointer(out, cfg.to_dict(), keep=tc.keep_checkpoints)
  state, start = ckpt.restore_or_start(state, resume, tc.steps, "train.steps", unit="step")
  base = jax.random.PRNGKey(cfg.seed + 1)

  def advance(state, step):
    rows = jnp.asarray(batch_rows(cfg.seed, step, n, tc.batch_size))
    state, metrics = train_step(state, images, strokes, rows, jax.random.fold_in(base, step))
    return state, jax.tree.map(lambda v: v[None], metrics)     # one member

  state = loop.run(workdir=out, config=cfg, states=state, advance=advance, start=start, total=tc.steps,
                   members=[{"name": "sketchembednet"}], steps_per_unit=1, examples_per_unit=tc.batch_size,
                   checkpoint_every=tc.checkpoint_every_steps, log_every=tc.log_every_steps, desc="sketch",
                   checkpointer=ckpt, unit="step", record_every=tc.log_every_steps,
                   tensorboard_on=tc.get("tensorboard", False))
  variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
  records = [r for r in loop.read_metrics(out) if r["loss"] is not None]
  window = max(1, min(5, len(records) // 4))
  summary = {"source": dc.source, "drawings": n, "dropped": int(sketches["dropped"]),
             "offset_scale": float(sketches["scale"]), "steps": tc.steps,
             "losses": {k: {"first": _mean(records, k, True, window), "last": _mean(records, k, False, window)}
                        for k in ("pen", "stroke", "pixel", "loss")}}
  return model, variables, random_variables, summary


def load_test_split(cfg) -> dict:
  """Omniglot's few-shot test split at the model's image size (the first `eval.max_classes` classes if set)."""
  dc, ec = cfg.data, cfg.eval
  test = data_lib.load("omniglot", ec.fewshot_split, image_size=dc.image_size, exemplar_space="",
                       data_dir=dc.data_dir or None, build_dir=dc.build_dir or None)
  if ec.max_classes:
    rows = test["labels"] < ec.max_classes
    test = {k: (v[rows] if isinstance(v, np.ndarray) and len(v) == len(rows) else v) for k, v in test.items()}
  return test


def train_and_evaluate(cfg: ml_collections.ConfigDict, workdir: str, resume: bool = False) -> dict:
  out = pathlib.Path(workdir)
  model, variables, random_variables, summary = train(cfg, workdir, resume)
  ec = cfg.eval
  test = load_test_split(cfg)
  summary["few_shot"] = {"trained": few_shot_table(model, variables, test, ec, cfg.seed),
                         "random_init": few_shot_table(model, random_variables, test, ec, cfg.seed)}
  for name, table in summary["few_shot"].items():
    log.info("few-shot (%s encoder): %s", name,
             ", ".join(f"{k} {100 * m:.2f} ± {100 * ci:.2f}" for k, (m, ci) in table.items()))

  exemplars, samples, humans = one_shot(model, variables, test, ec, jax.random.PRNGKey(cfg.seed + 2))
  np.savez_compressed(out / "one_shot.npz", exemplars=exemplars, samples=samples, humans=humans)
  write_grid(out / "one_shot.png", [exemplars, *samples.transpose(1, 0, 2, 3)],
             ["exemplar"] + [f"sample {i + 1}" for i in range(samples.shape[1])],
             title=f"SketchEmbedNet one-shot sketches of unseen {ec.fewshot_split} characters")
  if ec.critics_workdir:
    summary["one_shot_scores"] = judge_one_shot(ec.critics_workdir, exemplars, samples, humans, cfg.seed)
  rows = interpolation_rows(model, variables, exemplars, ec, jax.random.PRNGKey(cfg.seed + 3))
  write_grid(out / "interpolation.png", rows, title="linear interpolation between pairs of exemplar codes")
  write_grid(out / "arithmetic.png", arithmetic_rows(model, variables, exemplars, ec, jax.random.PRNGKey(cfg.seed + 4)),
             title="a, b, c, and the drawing of z_a − z_b + z_c")
  (out / "summary.json").write_text(json.dumps(summary, indent=1))
  return summary
