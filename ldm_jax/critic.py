"""A trained critic as a library object: the network a critics config describes (paper A.6), its optimizer (whose
state a checkpoint holds), `load(workdir, critic)` from a finished critics job (`ldm_jax.jobs.critics`), and its
features as a differentiable function of images.
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import optax

from ldm_jax.models.critics import build_critic
from ldm_jax.models.layers import resolve_conv_impl
from ldm_jax.train import loop

CRITICS = {"protonet": "metric", "simclr": "projection"}   # critic → its training head


def build_model(cfg, critic: str):
  return build_critic(cfg.critics.arch[critic], CRITICS[critic], resolve_conv_impl(cfg.critics.conv_impl, "critic"))


def make_optimizer(cfg) -> optax.GradientTransformation:
  return optax.adam(cfg.train.lr)


def load(workdir: str | pathlib.Path, critic: str):
  """(model, variables) of a trained critic, alone."""
  d = pathlib.Path(workdir) / critic
  cfg = ml_collections.ConfigDict(json.loads((d / "config.json").read_text()))
  model = build_model(cfg, critic)
  size = cfg.data.image_size
  init_fn = lambda key: model.init(key, jnp.zeros((2, size, size, 1)), False)
  (variables,) = loop.restore_member_variables(d, cfg.to_dict(), init_fn, make_optimizer(cfg), 1, cfg.seed)
  return model, variables


def differentiable_features(model, variables, size: int):
  """(images [N, H, W] floats in [0, 1]) → features [N, 256], differentiable: `critic_input` without the final
  binarisation (whose gradient is zero), for feature-space training losses (e.g. IMLE's d in place of LPIPS)."""

  def features(images):
    x = jax.image.resize(images[..., None], (images.shape[0], size, size, 1), "bilinear")
    lo = jnp.min(x, axis=(1, 2, 3), keepdims=True)
    x = (x - lo) / jnp.maximum(jnp.max(x, axis=(1, 2, 3), keepdims=True) - lo, 1e-6)
    return model.apply(variables, x, False)[0]

  return features
