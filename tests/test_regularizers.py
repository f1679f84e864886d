"""Each regularizer against a tiny hand-computed case, and the straight-through estimator."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ldm_jax import regularizers as R


def test_reconstruction_is_summed_over_pixels_mean_over_batch():
  x = jnp.zeros((2, 2, 2, 1))
  x_hat = x.at[0].set(1.0)
  assert math.isclose(float(R.reconstruction_loss(x, x_hat)), 2.0)  # (4 + 0) / 2


def test_kl_hand_case():
  mean = jnp.array([[1.0, 0.0]])
  logvar = jnp.array([[0.0, math.log(2.0)]])
  assert math.isclose(float(R.kl_loss(mean, logvar)), 1.0 - 0.5 * math.log(2.0), rel_tol=1e-6)


def test_vq_hand_case():
  codebook = jnp.array([[0.0, 0.0], [1.0, 1.0]])
  z = jnp.array([[0.9, 1.2, 0.1, -0.1]])
  z_st, loss, codes = R.vq_quantize(z, codebook, codebook_weight=1.0)
  # z + stop_gradient(q − z): two float32 roundings of values ≤ max|z| = 1.2
  np.testing.assert_allclose(z_st, [[1.0, 1.0, 0.0, 0.0]], atol=2 * float(np.finfo(np.float32).eps) * 1.2)
  np.testing.assert_array_equal(codes, [[1, 0]])
  assert math.isclose(float(loss), 2 * 0.0175, rel_tol=1e-5)
  _, loss_code, _ = R.vq_quantize(z, codebook, codebook_weight=2.5)  # the authors' weighting
  assert math.isclose(float(loss_code), 0.0175 * 3.5, rel_tol=1e-5)


def test_vq_straight_through_gradient_is_identity_on_z():
  codebook = jax.random.normal(jax.random.PRNGKey(0), (16, 4))
  z = jax.random.normal(jax.random.PRNGKey(1), (3, 8))
  w = jax.random.normal(jax.random.PRNGKey(2), (3, 8))
  grad = jax.grad(lambda z: jnp.sum(w * R.vq_quantize(z, codebook)[0]))(z)
  np.testing.assert_allclose(grad, w, rtol=1e-6)


def test_classification_hand_case():
  logits = jnp.array([[0.0, math.log(3.0)]])
  assert math.isclose(float(R.classification_loss(logits, jnp.array([1]))), math.log(4 / 3), rel_tol=1e-6)


def test_prototype_hand_case():
  pz = jnp.array([[0.0, 0.0], [1.0, 0.0]])
  pe = jnp.array([[0.0, 0.0], [2.0, 0.0]])
  # squared distances [[0, 4], [1, 1]]; targets are the diagonal
  want = (math.log(1 + math.exp(-4)) + math.log(2)) / 2
  assert math.isclose(float(R.prototype_loss(pz, pe)), want, rel_tol=1e-6)


def test_nt_xent_hand_case():
  e = jnp.eye(2)
  # each anchor: positive similarity 1, two negatives of similarity 0 (τ = 1)
  assert math.isclose(float(R.nt_xent_loss(e, e, temperature=1.0)), math.log(1 + 2 / math.e), rel_tol=1e-6)
  # τ scales the logits
  assert math.isclose(float(R.nt_xent_loss(e, e, temperature=0.5)), math.log(1 + 2 / math.e ** 2), rel_tol=1e-6)


def test_barlow_hand_case():
  h = jnp.array([[1.0, -1.0], [-1.0, 1.0]])
  # standardised columns are ±1: C = [[1, -1], [-1, 1]] → on-diagonal 0, off-diagonal λ·2
  assert math.isclose(float(R.barlow_loss(h, h, 5e-3, "standardized")), 0.01, rel_tol=1e-4)
  assert float(R.barlow_loss(h, -h, 5e-3)) > 7.9  # anti-correlated views: (1 - (-1))² per feature


def test_simclr_eq14_hand_case():
  # Eq. 14: −sim(a_b, b_b) + log Σ_{b'≠b} exp(sim(a_b, b_b')); orthonormal views: positives 1, negatives 0
  e = jnp.eye(3)
  assert math.isclose(float(R.simclr_eq14_loss(e, e)), -1 + math.log(2), rel_tol=1e-6)
  # no temperature and cosine similarity: scaling a view changes nothing
  assert math.isclose(float(R.simclr_eq14_loss(3 * e, e)), -1 + math.log(2), rel_tol=1e-6)
  # the positive is not in the denominator (NT-Xent's is): two rows, a = [1, 0], [0, 1]; b = [1, 0], [1, 0]
  a, b = jnp.eye(2), jnp.array([[1.0, 0.0], [1.0, 0.0]])
  # row 0: −1 + log e^{1} = 0; row 1: −0 + log e^{0} = 0
  assert math.isclose(float(R.simclr_eq14_loss(a, b)), 0.0, abs_tol=1e-6)
  assert float(R.simclr_loss(e, e, "nt_xent", 1.0)) == float(R.nt_xent_loss(e, e, 1.0))
  with pytest.raises(ValueError, match="simclr loss must be one of"):
    R.simclr_loss(e, e, "infonce")


def test_barlow_cosine_vs_standardized_hand_case():
  h = jnp.array([[1.0, 2.0], [3.0, 4.0]])
  # paper (Eq. 15-16, uncentred): columns (1, 3) and (2, 4) → C_11 = C_22 = 1, C_12 = C_21 = 14 / √200
  want = 5e-3 * 2 * 14 ** 2 / 200
  assert math.isclose(float(R.barlow_loss(h, h, 5e-3, "cosine")), want, rel_tol=1e-5)
  # authors' code (centred): both columns standardise to (−1, 1) → C is all ones → off-diagonal λ·2
  assert math.isclose(float(R.barlow_loss(h, h, 5e-3, "standardized")), 0.01, rel_tol=1e-4)
  with pytest.raises(ValueError, match="barlow similarity must be one of"):
    R.barlow_loss(h, h, 5e-3, "pearson")


def test_ema_update_hand_case():
  target, online = {"w": jnp.zeros(3)}, {"w": jnp.array([1.0, 2.0, 3.0])}
  np.testing.assert_allclose(R.ema_update(target, online, 0.99)["w"], [0.01, 0.02, 0.03], rtol=1e-6)
