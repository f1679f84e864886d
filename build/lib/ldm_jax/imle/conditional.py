"""One-shot conditional (RS-)IMLE in an RAE's latent space, in place of the latent diffusion model.

The generator maps (noise z, exemplar latent e) to a latent code; for every class its drawings' latents are the
data and its exemplar the condition. One outer iteration draws `pool_factor` × k samples per class from
G(·, e_class), rejects those within ε of ANY drawing of that class (ε = 0: plain conditional IMLE), selects each
drawing's nearest remaining sample (per class: `search.rejection_nearest` vmapped over classes), then runs L
inner steps on random (drawing, selected noise) pairs. Distances live on the unit sphere of the standardised
latents, so ε is a chord distance as in the unconditional search.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ldm_jax.imle import search
from ldm_jax.imle.algorithm import ImleSettings, ImleState


class ConditionalLatentGenerator(nn.Module):
  """MLP on [z, e] predicting the offset from the exemplar's latent (residual: a fresh model draws the exemplar)."""
  latent_dim: int
  noise_dim: int = 32
  width: int = 512
  depth: int = 3

  @nn.compact
  def __call__(self, z, exemplar):
    h = jnp.concatenate([z, exemplar], -1)
    for i in range(self.depth):
      h = nn.gelu(nn.Dense(self.width, name=f"hidden{i}")(h))
    return exemplar + nn.Dense(self.latent_dim, kernel_init=nn.initializers.zeros, name="out")(h)


def on_sphere(x: jax.Array) -> jax.Array:
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True).clip(1e-12)


def make_conditional_step(generate, tx: optax.GradientTransformation, settings: ImleSettings, noise_dim: int):
  """(state, data [C, k, d], exemplars [C, d], key, epsilon) → (state, metrics); not jitted (vmap it over ε
  members first). state.latents holds the selected noise of every drawing, [C·k, noise_dim]."""

  def step(state: ImleState, data, exemplars, key, epsilon):
    c, k, d = data.shape
    m = settings.pool_factor * k
    k_pool, k_noise, k_batches = jax.random.split(key, 3)
    z_pool = jax.random.normal(k_pool, (c, m, noise_dim))
    params = jax.lax.stop_gradient(state.params)
    pool = jax.vmap(lambda z, e: generate(params, z, jnp.broadcast_to(e, (m, d))))(z_pool, exemplars)
    idx, dist, rejected = jax.vmap(search.rejection_nearest, in_axes=(0, 0, None))(on_sphere(data), on_sphere(pool),
                                                                                    epsilon)
    found = (idx >= 0).reshape(-1)
    chosen = jnp.take_along_axis(z_pool, jnp.maximum(idx, 0)[..., None], 1).reshape(c * k, noise_dim)
    chosen = chosen + settings.latent_noise * jax.random.normal(k_noise, chosen.shape)
    latents = jnp.where(found[:, None], chosen, state.latents)
    flat_x, flat_e = data.reshape(c * k, d), jnp.repeat(exemplars, k, axis=0)

    def inner(carry, key):
      p, opt_state = carry
      rows = jax.random.choice(key, c * k, (settings.batch_size,), replace=False)
      loss = lambda p: jnp.mean(jnp.sum((flat_x[rows] - generate(p, latents[rows], flat_e[rows])) ** 2, -1))
      value, grads = jax.value_and_grad(loss)(p)
      updates, opt_state = tx.update(grads, opt_state, p)
      return (optax.apply_updates(p, updates), opt_state), value

    (new_params, opt_state), losses = jax.lax.scan(inner, (state.params, state.opt_state),
                                                   jax.random.split(k_batches, settings.inner_steps))
    metrics = {"loss": losses.mean(), "rejected_fraction": rejected.mean(), "unmatched": jnp.sum(~found),
               "selected_distance": jnp.mean(jnp.where(idx >= 0, dist, 0.0))}
    return state.replace(params=new_params, opt_state=opt_state, latents=latents, step=state.step + 1), metrics

  return step
