"""Device-resident data: a whole split as one uint8 array on the device(s), sampled inside jit.

Batches, (image, exemplar, label) triples and N-way K-shot episodes are pure functions of a PRNG key and a step,
so a training epoch is one `lax.scan` with no host round-trips, and a resumed run sees the same data.
"""

from __future__ import annotations

from typing import Any, Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class DeviceSplit:
  images: jax.Array          # uint8 [N, H, W], strokes = 255 on 0
  labels: jax.Array          # int32 [N]
  exemplar_index: jax.Array  # int32 [C], row of each class's exemplar
  class_rows: jax.Array      # int32 [C, M], rows of each class, padded by repeating the class's first row
  class_sizes: jax.Array     # int32 [C]

  @property
  def num_examples(self) -> int:
    return self.images.shape[0]

  @property
  def num_classes(self) -> int:
    return self.exemplar_index.shape[0]

  def gather(self, rows: jax.Array) -> dict[str, jax.Array]:
    return gather_batch(self, rows)


@flax.struct.dataclass
class LatentSplit:
  """Cached latents of a split: the training data of a diffusion model, gathered like `DeviceSplit`.

  May carry leading member axes (one latent set per RAE of a sweep); the example axis is always -2.
  """
  latents: jax.Array         # float32 [..., N, d], standardised
  labels: jax.Array          # int32 [..., N]
  exemplar_index: jax.Array  # int32 [..., C]

  @property
  def num_examples(self) -> int:
    return self.latents.shape[-2]

  def gather(self, rows: jax.Array) -> dict[str, jax.Array]:
    """{'x': latents of the rows, 'cond': latents of their classes' exemplars}."""
    return {"x": self.latents[rows], "cond": self.latents[self.exemplar_index[self.labels[rows]]]}


def to_device(split: dict[str, Any], sharding: Optional[jax.sharding.Sharding] = None) -> DeviceSplit:
  """Puts a `data.load` split on the device(s) (replicated unless a sharding is given)."""
  labels = np.asarray(split["labels"], np.int32)
  n_classes = int(labels.max()) + 1
  sizes = np.bincount(labels, minlength=n_classes)
  if labels.min() < 0 or not sizes.all():
    raise ValueError("labels must be 0..C-1 with every class present (relabel with np.unique(return_inverse))")
  rows = np.zeros((n_classes, int(sizes.max())), np.int32)
  for c in range(n_classes):
    r = np.flatnonzero(labels == c)
    rows[c] = np.concatenate([r, np.full(rows.shape[1] - len(r), r[0])])
  host = DeviceSplit(images=np.asarray(split["images"], np.uint8), labels=labels,
                     exemplar_index=np.asarray(split["exemplar_index"], np.int32), class_rows=rows,
                     class_sizes=sizes.astype(np.int32))
  return jax.device_put(host, sharding) if sharding is not None else jax.device_put(host)


def to_float(images_u8: jax.Array) -> jax.Array:
  """uint8 [..., H, W] → float32 [..., H, W, 1] in [0, 1] (NHWC)."""
  return (images_u8.astype(jnp.float32) / 255.0)[..., None]


def human_rows(labels, exemplar_index, per_class: int, classes: int = 0) -> np.ndarray:
  """[C, per_class] rows: the first `per_class` drawings of each class (of the first `classes`; 0 = all) other
  than its exemplar, in drawing order — the real drawings that stand as the "samples" of the human point.
  Raises if a class has fewer."""
  labels, ex = np.asarray(labels), np.asarray(exemplar_index)
  c = len(ex) if not classes else min(classes, len(ex))
  out = []
  for k in range(c):
    own = np.flatnonzero(labels == k)
    own = own[own != ex[k]]
    if len(own) < per_class:
      raise ValueError(f"class {k} has {len(own)} drawings besides its exemplar; {per_class} are needed")
    out.append(own[:per_class])
  return np.stack(out)


def map_in_chunks(fn, x: jax.Array, chunk: int = 500) -> jax.Array:
  """fn over the rows of x in chunks of `chunk` (padded, `lax.map`): bounded memory for whole-split passes."""
  n = x.shape[0]
  pad = (-n) % chunk
  xs = jnp.pad(x, ((0, pad),) + ((0, 0),) * (x.ndim - 1)).reshape(-1, chunk, *x.shape[1:])
  out = jax.lax.map(fn, xs)
  return out.reshape(-1, *out.shape[2:])[:n]


def steps_per_epoch(n: int, batch_size: int) -> int:
  return n // batch_size  # the ragged tail is dropped; the next epoch's permutation covers it


def epoch_permutation(key: jax.Array, epoch: jax.Array, n: int) -> jax.Array:
  return jax.random.permutation(jax.random.fold_in(key, epoch), n)


def batch_rows(permutation: jax.Array, step_in_epoch: jax.Array, batch_size: int) -> jax.Array:
  return jax.lax.dynamic_slice_in_dim(permutation, step_in_epoch * batch_size, batch_size)


def gather_batch(split: DeviceSplit, rows: jax.Array) -> dict[str, jax.Array]:
  """(image, exemplar, label) triples of the given rows; images as float NHWC in [0, 1]."""
  labels = split.labels[rows]
  return {
      "image": to_float(split.images[rows]),
      "exemplar": to_float(split.images[split.exemplar_index[labels]]),
      "label": labels,
  }


def sample_batch(split: DeviceSplit, key: jax.Array, step: jax.Array, batch_size: int) -> dict[str, jax.Array]:
  """The batch of global step `step` of an epoch-wise shuffled stream: a pure function of (key, step)."""
  spe = steps_per_epoch(split.num_examples, batch_size)
  perm = epoch_permutation(key, step // spe, split.num_examples)
  return gather_batch(split, batch_rows(perm, step % spe, batch_size))


def sample_episode(split: DeviceSplit, key: jax.Array, n_way: int, k_shot: int, n_query: int) -> dict[str, jax.Array]:
  """An N-way K-shot episode: support [N, K, H, W, 1], query [N, Q, H, W, 1], labels 0..N-1 by class.

  Support and query drawings of a class are distinct (drawn without replacement from the class).
  """
  k_cls, k_rows = jax.random.split(key)
  classes = jax.random.choice(k_cls, split.num_classes, (n_way,), replace=False)
  m = split.class_rows.shape[1]

  def rows_of(c, k):
    noise = jax.random.uniform(k, (m,))
    noise = jnp.where(jnp.arange(m) < split.class_sizes[c], noise, 2.0)  # padded slots go last
    return split.class_rows[c][jnp.argsort(noise)[:k_shot + n_query]]

  rows = jax.vmap(rows_of)(classes, jax.random.split(k_rows, n_way))  # [N, K+Q]
  images = to_float(split.images[rows])
  return {
      "support": images[:, :k_shot],
      "query": images[:, k_shot:],
      "classes": classes,
      "labels": jnp.broadcast_to(jnp.arange(n_way)[:, None], (n_way, n_query)),
  }
