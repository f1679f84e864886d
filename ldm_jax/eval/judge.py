"""Trained critics → originality and recognizability of a set of drawings (paper §5.1, A.6).

A set is `samples` [C, n, H, W] (floats in [0, 1] or uint8, strokes bright) with one exemplar [H, W] per class:
generated samples of a one-shot model, or real drawings for the human point. Both critics see every image through
`critic_input` (resize to the critic's size, min-max, binarise at 0.3); all classes go through the critics and
the scoring in one jit-compiled call each (`scores` is batched over classes and tasks).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ldm_jax.data import pipeline
from ldm_jax.eval import scores


@dataclasses.dataclass(frozen=True)
class Judges:
  """The recognizability critic (ProtoNet metric embeddings) and the originality critic (SimCLR features)."""
  recognizer: Callable[[jax.Array], jax.Array]     # images [N, H, W] → [N, 128]
  featurizer: Callable[[jax.Array], jax.Array]     # images [N, H, W] → [N, 256]


def load_judges(critics_workdir: str | pathlib.Path) -> Judges:
  """Both critics of a finished critics job (`configs/critics.py`)."""
  import json

  import ml_collections

  from ldm_jax import critic
  from ldm_jax.models.critics import embed_fn
  d = pathlib.Path(critics_workdir)
  for name in ("protonet", "simclr"):
    if not (d / name / "config.json").exists():
      raise FileNotFoundError(f"no trained {name} critic in {d}: run configs/critics.py with --workdir={d}")
  size = ml_collections.ConfigDict(json.loads((d / "protonet" / "config.json").read_text())).data.image_size
  (pm, pv), (sm, sv) = critic.load(d, "protonet"), critic.load(d, "simclr")
  proto, simclr = embed_fn(pm, True, size), embed_fn(sm, False, size)
  return Judges(recognizer=lambda x: proto(pv, x), featurizer=lambda x: simclr(sv, x))


class SampleSetError(ValueError):
  """A set of drawings that cannot be scored: non-finite or out-of-range pixels, or mismatched shapes."""


def check_set(name: str, samples, exemplars) -> None:
  """Refuses a set that the critics would silently misjudge: NaN/inf pixels (the binarisation turns them blank,
  and blank drawings score as 'original') or float pixels outside [0, 1]. uint8 sets are always in range."""
  for what, a in (("samples", np.asarray(samples)), ("exemplars", np.asarray(exemplars))):
    if a.dtype == np.uint8:
      continue
    if not np.issubdtype(a.dtype, np.floating):
      raise SampleSetError(f"set {name!r}: {what} have dtype {a.dtype}; expected uint8 or floats in [0, 1]")
    per_image = a.reshape(a.shape[0] * (a.shape[1] if a.ndim == 4 else 1), -1)
    nonfinite = int((~np.isfinite(per_image)).any(-1).sum())
    if nonfinite:
      raise SampleSetError(f"set {name!r}: {nonfinite} of {len(per_image)} {what} hold NaN/inf pixels; "
                           "nothing was scored")
    outside = int(((per_image < 0) | (per_image > 1)).any(-1).sum())
    if outside:
      raise SampleSetError(f"set {name!r}: {outside} of {len(per_image)} {what} have pixels outside [0, 1] "
                           f"(range {per_image.min():.3g}..{per_image.max():.3g}); nothing was scored")


TORCH_CRITIC_SIZE = 50    # the authors' Omniglot critics take 50×50 images


def load_torch_judges(recognizer_pt: str | pathlib.Path, featurizer_pt: str | pathlib.Path) -> Judges:
  """The authors' published Omniglot critics straight from their PyTorch files (no torch needed): the one-shot
  ProtoNet (`metric_layer.*`) as the recognizer and the SimCLR network (`projection.0.*`) as the featurizer.

  Input preparation (the paper's evaluation code, `critic_input`): each drawing, strokes bright, is resized
  bilinearly to 50×50, min-max scaled per image and binarised at 0.3; ProtoNet scores use its 128-d metric
  embeddings, originality the SimCLR network's 256-d features before its projection head.

  Raises:
    ValueError: a file holds the other critic (a SimCLR head given as the recognizer, or the reverse).
  """
  from ldm_jax.models import critics as critic_models
  judges = []
  for path, want in ((recognizer_pt, "metric"), (featurizer_pt, "projection")):
    variables, head = critic_models.import_torch_state_dict(path)
    if head != want:
      raise ValueError(f"{path} holds a {head!r} critic; expected the {want!r} one here "
                       "(critics_torch = (ProtoNet file, SimCLR file))")
    model = critic_models.Conv4Critic(head=head)
    judges.append((critic_models.embed_fn(model, want == "metric", TORCH_CRITIC_SIZE), variables))
  (proto, pv), (simclr, sv) = judges
  return Judges(recognizer=lambda x: proto(pv, x), featurizer=lambda x: simclr(sv, x))


def _as_float(images) -> jax.Array:
  images = jnp.asarray(images)
  return images.astype(jnp.float32) / 255.0 if images.dtype == jnp.uint8 else images.astype(jnp.float32)


def score_set(judges: Judges, samples, exemplars, key: jax.Array, n_way: int = 20, tasks_per_class: int = 10,
              bins: int = 10) -> dict[str, Any]:
  """Per-sample originality and recognizability of one set, their means, and the binned generalization curve.

  Returns numpy arrays: 'originality' [C, n], 'recognizability' [C, n], 'binned_originality' / 'binned_
  recognizability' [bins] (class-averaged; absent when n does not split into `bins`), and the two means.
  """
  check_set("samples", samples, exemplars)
  samples, exemplars = _as_float(samples), _as_float(exemplars)
  c, n = samples.shape[:2]
  flat = samples.reshape(c * n, *samples.shape[2:])
  feats = judges.featurizer(flat).reshape(c, n, -1)
  emb = judges.recognizer(flat).reshape(c, n, -1)
  ori = scores.originality(feats, judges.featurizer(exemplars))
  rec = scores.recognizability(emb, judges.recognizer(exemplars), key, n_way=min(n_way, c),
                               tasks_per_class=tasks_per_class)
  out = {"originality": np.asarray(ori), "recognizability": np.asarray(rec), "n_way": min(n_way, c),
         "originality_mean": float(ori.mean()), "recognizability_mean": float(rec.mean())}
  if n % bins == 0:
    bo, br = scores.binned_by_originality(ori, rec, bins)
    out.update(binned_originality=np.asarray(bo.mean(0)), binned_recognizability=np.asarray(br.mean(0)))
  return out


def judge_sets(judges: Judges, sets: dict[str, Any], exemplars, key: jax.Array, human: str = "humans",
               n_way: int = 20, tasks_per_class: int = 10) -> dict[str, dict[str, float]]:
  """Every named set of [C, n, H, W] drawings of the same exemplars scored and placed on the plane with the human
  set `sets[human]`: {name: originality (raw, normalised), recognizability, distance to human, n_way}."""
  names = list(sets)
  raw = {k: score_set(judges, sets[k], exemplars, key, n_way, tasks_per_class) for k in names}
  ori, dist = scores.place_on_human_plane([raw[k]["originality_mean"] for k in names],
                                          [raw[k]["recognizability_mean"] for k in names], names.index(human))
  return {k: {"originality": raw[k]["originality_mean"], "originality_norm": float(ori[i]),
              "recognizability": raw[k]["recognizability_mean"], "distance_to_human": float(dist[i]),
              "n_way": raw[k]["n_way"]} for i, k in enumerate(names)}


def human_set(split: dict[str, np.ndarray], per_class: int, classes: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """The human point's set: `per_class` real drawings of each class other than its exemplar (the first ones in
  drawing order), [C, per_class, H, W] uint8, and the exemplars [C, H, W]."""
  rows = pipeline.human_rows(split["labels"], split["exemplar_index"], per_class, classes)
  return split["images"][rows], split["images"][np.asarray(split["exemplar_index"])[:len(rows)]]
