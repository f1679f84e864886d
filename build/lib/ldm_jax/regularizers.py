"""The six latent regularizers of the paper as pure loss functions (they know nothing about models or optimisers).

Every function takes latents/projections as arrays and returns a scalar (mean over the batch unless stated), so
the RAE loss is `recon + Σ_r β_r · L_r` with β an array input of the compiled step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ldm_jax.distances import sq_distances

sg = jax.lax.stop_gradient


def reconstruction_loss(x: jax.Array, x_hat: jax.Array) -> jax.Array:
  """Squared error summed over pixels, mean over the batch (the authors' ℓ2 reconstruction, Eq. 1)."""
  return jnp.mean(jnp.sum(jnp.square(x - x_hat).reshape(x.shape[0], -1), axis=-1))


def reparameterize(key: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
  return mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)


def kl_loss(mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(μ, σ²) ‖ N(0, I)) summed over latent dims, mean over the batch (Eq. 2)."""
  return jnp.mean(jnp.sum(-0.5 * (1.0 + logvar - jnp.square(mean) - jnp.exp(logvar)), axis=-1))


def vq_snap(z: jax.Array, codebook: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(zq [B, d], codes [B, d/s]): every `code_dim` sub-vector of z replaced by its nearest codeword (exactly)."""
  b, d = z.shape
  s = codebook.shape[1]
  flat = z.reshape(b, d // s, s)
  dist = sq_distances(flat.reshape(-1, s), codebook).reshape(b, d // s, -1)   # [B, d/s, K]
  codes = jnp.argmin(dist, axis=-1)
  return codebook[codes].reshape(b, d), codes


def vq_quantize(z: jax.Array, codebook: jax.Array, codebook_weight: float = 1.0):
  """Snap every `code_dim` sub-vector of z to its nearest codeword (Eq. 10, Algo. 1).

  Args:
    z: [B, d] latents; d must be a multiple of the code size.
    codebook: [K, s] codewords.
    codebook_weight: weight of ‖zq − sg(z)‖² (the paper: 1; the authors' code: 2.5).
  Returns:
    (z_st, loss, codes): the straight-through quantized latents [B, d] (value zq, gradient identity on z), the
    quantization loss ‖sg(zq) − z‖² + w·‖zq − sg(z)‖² (means over elements, Eq. 12) and the code indices [B, d/s].
  """
  zq, codes = vq_snap(z, codebook)
  loss = jnp.mean(jnp.square(sg(zq) - z)) + codebook_weight * jnp.mean(jnp.square(zq - sg(z)))
  z_st = z + sg(zq - z)  # Algo. 1 line 5: straight-through estimator
  return z_st, loss, codes


def classification_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Cross-entropy of a linear head on the latent (Eq. 4)."""
  logp = jax.nn.log_softmax(logits)
  return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))


def prototype_loss(proj_z: jax.Array, proj_exemplar: jax.Array) -> jax.Array:
  """Prototypical loss against the in-batch exemplars (Eq. 5, Algo. 2).

  Row i's target is its own exemplar (row i of proj_exemplar); logits = −‖p(z_i) − p(e_j)‖² over every exemplar j
  of the batch (same-class duplicates count as negatives, as in the authors' code).
  """
  logits = -sq_distances(proj_z, proj_exemplar)   # exact: the loss rewards a sample near its exemplar
  return classification_loss(logits, jnp.arange(proj_z.shape[0]))


def _l2_normalize(x: jax.Array, eps: float = 1e-8) -> jax.Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def nt_xent_loss(h_a: jax.Array, h_b: jax.Array, temperature: float = 0.5) -> jax.Array:
  """Standard SimCLR NT-Xent (the authors' code, τ = 0.5): for each of the 2B views, the other view of the same
  image is the positive among the 2B − 1 other views; cosine similarities divided by τ; mean over the 2B anchors."""
  b = h_a.shape[0]
  h = _l2_normalize(jnp.concatenate([h_a, h_b], axis=0))
  logits = h @ h.T / temperature
  logits = jnp.where(jnp.eye(2 * b, dtype=bool), -jnp.inf, logits)
  positives = jnp.concatenate([jnp.arange(b, 2 * b), jnp.arange(b)])
  return classification_loss(logits, positives)


def simclr_eq14_loss(h_a: jax.Array, h_b: jax.Array) -> jax.Array:
  """The paper's SimCLR loss as written (Eq. 14, 16): mean over b of −sim(a_b, b_b) + log Σ_{b'≠b} exp(sim(a_b,
  b_b')): cosine similarities without a temperature, view A as anchors, the negatives are the OTHER images' view
  B (the positive is not in the denominator, unlike NT-Xent)."""
  sim = _l2_normalize(h_a) @ _l2_normalize(h_b).T                       # [B, B]
  others = jnp.where(jnp.eye(h_a.shape[0], dtype=bool), -jnp.inf, sim)
  return jnp.mean(-jnp.diagonal(sim) + jax.nn.logsumexp(others, axis=-1))


SIMCLR_LOSSES = ("eq14", "nt_xent")


def simclr_loss(h_a: jax.Array, h_b: jax.Array, kind: str = "eq14", temperature: float = 0.5) -> jax.Array:
  """'eq14': the paper's Eq. 14; 'nt_xent': the authors' code (symmetric NT-Xent at `temperature`)."""
  if kind == "eq14":
    return simclr_eq14_loss(h_a, h_b)
  if kind == "nt_xent":
    return nt_xent_loss(h_a, h_b, temperature)
  raise ValueError(f"simclr loss must be one of {SIMCLR_LOSSES}, got {kind!r}")


def _standardize_batch(x: jax.Array, eps: float = 1e-5) -> jax.Array:
  """BatchNorm without affine parameters (training statistics, biased variance)."""
  return (x - x.mean(0)) / jnp.sqrt(x.var(0) + eps)


BARLOW_SIMILARITIES = ("cosine", "standardized")


def barlow_loss(h_a: jax.Array, h_b: jax.Array, lambda_offdiag: float = 5e-3,
                similarity: str = "cosine") -> jax.Array:
  """Barlow Twins: Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij² with C the [F, F] similarity of the features over the batch.

  similarity='cosine' (the paper, Eq. 15–16): C_ij = ⟨a_·i, b_·j⟩ / (‖a_·i‖ ‖b_·j‖), uncentred.
  similarity='standardized' (the authors' code and Zbontar et al.): C = bn(a)ᵀ bn(b) / B, each feature centred and
  scaled by its batch std (a Pearson correlation).
  """
  if similarity == "cosine":
    c = _l2_normalize(h_a.T) @ _l2_normalize(h_b.T).T
  elif similarity == "standardized":
    c = _standardize_batch(h_a).T @ _standardize_batch(h_b) / h_a.shape[0]
  else:
    raise ValueError(f"barlow similarity must be one of {BARLOW_SIMILARITIES}, got {similarity!r}")
  on_diag = jnp.sum(jnp.square(1.0 - jnp.diagonal(c)))
  off_diag = jnp.sum(jnp.square(c)) - jnp.sum(jnp.square(jnp.diagonal(c)))
  return on_diag + lambda_offdiag * off_diag


def ema_update(target, online, momentum: float):
  """Momentum target (MoCo; the authors' SimCLR): m·target + (1 − m)·sg(online), leaf by leaf."""
  return jax.tree.map(lambda t, o: momentum * t + (1.0 - momentum) * sg(o).astype(t.dtype), target, online)
