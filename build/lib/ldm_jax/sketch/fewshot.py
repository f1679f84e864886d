"""Few-shot classification with frozen embeddings (SketchEmbedNet Table 1): N-way K-shot episodes, a multinomial
logistic-regression head fit on the support set of each episode, accuracy on every remaining drawing of the
episode's classes; all episodes of a setting in one jitted, vmapped program.

The head minimises sklearn's `LogisticRegression(C=1)` objective — C · Σ cross-entropy + ½‖W‖² (intercept not
penalised) — with L-BFGS (optax) from zero, as the authors' sklearn lbfgs head does.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax


def by_class(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """[N, D] features with labels → [C, P, D] (every class must hold the same number P of drawings)."""
  classes, counts = np.unique(labels, return_counts=True)
  if len(set(counts.tolist())) != 1:
    raise ValueError(f"classes hold different numbers of drawings: {sorted(set(counts.tolist()))}")
  order = np.argsort(labels, kind="stable")
  return np.asarray(features)[order].reshape(len(classes), counts[0], -1)


def fit_logistic(x: jax.Array, y: jax.Array, n_classes: int, c: float = 1.0, iterations: int = 50):
  """Multinomial logistic regression on x [n, D], y [n] → (W [D, C], b [C])."""
  def objective(params):
    w, b = params
    logits = x @ w + b
    ce = -jnp.sum(jax.nn.log_softmax(logits) * jax.nn.one_hot(y, n_classes))
    return c * ce + 0.5 * jnp.sum(w ** 2)

  solver = optax.lbfgs()
  params = (jnp.zeros((x.shape[1], n_classes), x.dtype), jnp.zeros((n_classes,), x.dtype))
  value_and_grad = optax.value_and_grad_from_state(objective)

  def step(carry, _):
    params, state = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = solver.update(grad, state, params, value=value, grad=grad, value_fn=objective)
    return (optax.apply_updates(params, updates), state), None

  (params, _), _ = jax.lax.scan(step, (params, solver.init(params)), None, length=iterations)
  return params


def episode(features: jax.Array, key: jax.Array, way: int, shot: int, c: float = 1.0) -> jax.Array:
  """Accuracy of one episode on features [C, P, D]: `way` random classes, `shot` random supports each, every other
  drawing of those classes a query."""
  k_cls, k_perm = jax.random.split(key)
  classes = jax.random.choice(k_cls, features.shape[0], (way,), replace=False)
  perms = jax.vmap(lambda k: jax.random.permutation(k, features.shape[1]))(jax.random.split(k_perm, way))
  chosen = jnp.take_along_axis(features[classes], perms[..., None], 1)               # [way, P, D]
  targets = jnp.broadcast_to(jnp.arange(way)[:, None], chosen.shape[:2])
  support, queries = chosen[:, :shot].reshape(way * shot, -1), chosen[:, shot:].reshape(-1, chosen.shape[-1])
  w, b = fit_logistic(support, targets[:, :shot].ravel(), way, c)
  return jnp.mean(jnp.argmax(queries @ w + b, -1) == targets[:, shot:].ravel())


@functools.partial(jax.jit, static_argnames=("way", "shot", "episodes", "chunk"))
def episode_accuracies(features: jax.Array, key: jax.Array, way: int, shot: int, episodes: int = 1000,
                       chunk: int = 100) -> jax.Array:
  """[episodes] accuracies on L2-normalised features [C, P, D], `chunk` episodes vmapped at a time."""
  features = features / jnp.linalg.norm(features, axis=-1, keepdims=True).clip(1e-12)
  return jax.lax.map(lambda k: episode(features, k, way, shot), jax.random.split(key, episodes), batch_size=chunk)


def mean_ci(accuracies) -> tuple[float, float]:
  """Mean and the 95 % confidence half-width 1.96 · std / √N (the paper's ±)."""
  a = np.asarray(accuracies, np.float64)
  return float(a.mean()), float(1.96 * a.std() / np.sqrt(len(a)))


SETTINGS = ((5, 1), (5, 5), (20, 1), (20, 5))    # Table 1's columns: (way, shot)
