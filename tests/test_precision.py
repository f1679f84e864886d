"""Mixed precision (`train.compute_dtype='bfloat16'`): bf16 compute, f32 parameters/gradients, losses ≈ f32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_sweep import small_setup

from configs import ldm as ldm_config
from ldm_jax.jobs import ldm as ldm_job
from ldm_jax.jobs import rae as rae_job
from ldm_jax.models import unet1d
from ldm_jax.train import precision

pytestmark = pytest.mark.real_data


def test_cast_floating_leaves_integers_alone():
  tree = {"w": jnp.ones((2,), jnp.float32), "label": jnp.arange(3), "step": np.int32(4)}
  out = precision.cast_floating(tree, jnp.bfloat16)
  assert out["w"].dtype == jnp.bfloat16 and out["label"].dtype == jnp.int32 and out["step"].dtype == np.int32
  with pytest.raises(ValueError, match="compute_dtype"):
    precision.compute_dtype("float16")


def _ops_dtypes(fn, *args) -> set[str]:
  """Operand dtypes of every convolution and matmul in fn's jaxpr (forward and backward)."""
  text = str(jax.make_jaxpr(fn)(*args))
  return {line.split("=")[0].split(":")[-1].split("[")[0].strip() for line in text.splitlines()
          if "dot_general[" in line or "conv_general_dilated[" in line}


def _rae_loss_fn(omniglot_test, dtype: str, regs):
  cfg, model, _, init_fn, data = small_setup(omniglot_test, regs=regs, batch=32)
  cfg.train.compute_dtype = dtype
  v = init_fn(jax.random.PRNGKey(0))
  grad_fn = jax.value_and_grad(rae_job.make_loss_fn(model, cfg), has_aux=True)
  beta = {"beta": jnp.array([1e-3, 0, 0, 1.0, 0, 0], jnp.float32)}
  return grad_fn, (v["params"], v["batch_stats"], beta, data.gather(jnp.arange(32)), jax.random.PRNGKey(1))


def test_bf16_rae_loss_matches_f32_with_f32_gradients(omniglot_test):
  # The autoencoder itself: every conv and matmul, forward and backward, runs in bf16 (f32 without the switch).
  grad_fn, args = _rae_loss_fn(omniglot_test, "bfloat16", ())
  assert _ops_dtypes(grad_fn, *args) == {"bf16"}
  out = {}
  for dtype in ("float32", "bfloat16"):
    grad_fn, args = _rae_loss_fn(omniglot_test, dtype, ("kl", "prototype"))
    out[dtype] = jax.jit(grad_fn)(*args)
  (loss32, (_, m32)), g32 = out["float32"]
  (loss16, (stats16, m16)), g16 = out["bfloat16"]
  assert loss16.dtype == jnp.float32
  for k in ("recon", "kl", "prototype"):
    np.testing.assert_allclose(m16[k], m32[k], rtol=2e-2, atol=1e-3, err_msg=k)
  # Gradients and running statistics stay f32: Adam and the checkpoint never see bf16.
  assert {x.dtype for x in jax.tree.leaves(g16)} == {jnp.dtype("float32")}
  assert {x.dtype for x in jax.tree.leaves(stats16)} == {jnp.dtype("float32")}
  flat = lambda g: jnp.concatenate([x.ravel() for x in jax.tree.leaves(g)])
  a, b = flat(g16), flat(g32)
  assert float(jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b))) > 0.98


def test_bf16_latent_diffusion_loss_matches_f32(omniglot_test):
  cfg = ldm_config.get_config("omniglot,tiny")
  unet = unet1d.build_unet("small", 64)
  # Real drawings as 64-d "latents" (8×8 average-pooled pixels): the loss is a function of the UNet, not the RAE.
  x = jnp.asarray(omniglot_test["images"][:64], jnp.float32).reshape(64, 8, 6, 8, 6).mean((2, 4)).reshape(64, 64)
  x = (x - x.mean()) / x.std()
  batch = {"x": x, "cond": x[::-1]}
  params = unet.init(jax.random.PRNGKey(0), x[:2], x[:2], jnp.zeros((2,), jnp.int32))["params"]
  out = {}
  for dtype in ("float32", "bfloat16"):
    cfg.train.compute_dtype = dtype
    loss_fn = ldm_job.make_loss_fn(unet, cfg, "latent")
    f = lambda p: loss_fn(p, {}, None, batch, jax.random.PRNGKey(3))[0]
    out[dtype] = jax.jit(jax.value_and_grad(f))(params)
  assert _ops_dtypes(jax.grad(f), params) == {"bf16"}
  (l32, _), (l16, g16) = out["float32"], out["bfloat16"]
  assert l16.dtype == jnp.float32 and {x.dtype for x in jax.tree.leaves(g16)} == {jnp.dtype("float32")}
  np.testing.assert_allclose(l16, l32, rtol=2e-2)
