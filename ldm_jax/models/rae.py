"""The regularized autoencoder of Table 1 (paper A.3.1), as Flax Linen modules: pure functions of (params, state, x).

Encoder: 4 × [Conv k4 s2 (no bias) → BatchNorm → ReLU], channels 16/32/64/128, paddings 1/1/2/1 (48→24→12→7→3),
flatten → Linear → d (plus a log-variance head for KL). Decoder: ConvT(d→128, k6) on the 1×1 latent (a Linear to
6·6·128), then 3 × [ConvT k4 s2 p1 → BN → ReLU] 128→64→32→16 (6→12→24→48), ZeroPad(right/bottom 1) →
Conv(16→1, k4, p1) → Sigmoid. The regularizers' heads live beside the autoencoder and are created only when their
regularizer is active, so the parameter tree is a static function of the config.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ldm_jax.data import pipeline
from ldm_jax.models.layers import Conv, StridedConv, UpConv
from ldm_jax.regularizer_registry import REGULARIZERS
from ldm_jax.regularizers import reparameterize, vq_snap


def _bn(train: bool, name: str | None = None, use_scale: bool = True, use_bias: bool = True):
  # PyTorch defaults: momentum 0.1 on the running stats, eps 1e-5.
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, use_scale=use_scale,
                      use_bias=use_bias, name=name)


class Encoder(nn.Module):
  latent_dim: int
  channels: Sequence[int] = (16, 32, 64, 128)
  paddings: Sequence[int] = (1, 1, 2, 1)
  variational: bool = False
  conv_impl: str = "s2d"

  @nn.compact
  def __call__(self, x, train: bool):
    """x [B, 48, 48, 1] → (mean [B, d], log-variance [B, d] or None)."""
    for c, p in zip(self.channels, self.paddings):
      x = nn.relu(_bn(train)(StridedConv(c, p, self.conv_impl)(x)))
    x = x.reshape(x.shape[0], -1)
    mean = nn.Dense(self.latent_dim, name="mean")(x)
    logvar = nn.Dense(self.latent_dim, name="logvar")(x) if self.variational else None
    return mean, logvar


class Decoder(nn.Module):
  channels: Sequence[int] = (128, 64, 32, 16)
  start_size: int = 6
  conv_impl: str = "s2d"

  @nn.compact
  def __call__(self, z, train: bool):
    """z [B, d] → images [B, 48, 48, 1] in (0, 1)."""
    s, c0 = self.start_size, self.channels[0]
    x = nn.Dense(s * s * c0, use_bias=False, name="project")(z).reshape(z.shape[0], s, s, c0)
    x = nn.relu(_bn(train)(x))
    for c in self.channels[1:]:
      x = nn.relu(_bn(train)(UpConv(c, self.conv_impl)(x)))
    x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))  # ZeroPad2d((0, 1, 0, 1))
    x = Conv(1, 4, padding=1, impl=self.conv_impl, name="to_pixels")(x)
    return nn.sigmoid(x)


class MLPProjector(nn.Module):
  """Linear (no bias) → BN → ReLU → Linear (no bias): the prototype and Barlow projectors."""
  hidden: int
  features: int

  @nn.compact
  def __call__(self, z, train: bool):
    h = nn.relu(_bn(train)(nn.Dense(self.hidden, use_bias=False)(z)))
    return nn.Dense(self.features, use_bias=False)(h)


PROJECTORS = ("linear", "mlp")   # the paper's linear probe h_θ | the authors' code's MLP
SIMCLR_HEADS = ("linear", "none")  # the paper's h^I to 128 | the authors' code: the L2-normalised latent itself


def _projector(kind: str, hidden: int, features: int):
  if kind == "linear":
    return nn.Dense(features, use_bias=False)
  if kind == "mlp":
    return MLPProjector(hidden, features)
  raise ValueError(f"projector must be one of {PROJECTORS}, got {kind!r}")


class VQCodebook(nn.Module):
  num_codes: int = 512
  code_dim: int = 4

  @nn.compact
  def __call__(self):
    init = lambda key, shape: jax.random.uniform(key, shape, minval=-1.0 / self.num_codes,
                                                 maxval=1.0 / self.num_codes)
    return self.param("codebook", init, (self.num_codes, self.code_dim))


class RAE(nn.Module):
  """Encoder, decoder and the heads of the active regularizers.

  Methods are separate entry points (`encode`, `decode`, `heads`) so that losses and evaluation call exactly the
  part they need via `model.apply(variables, ..., method=...)`.
  """
  latent_dim: int = 64
  regularizers: Sequence[str] = ()
  num_classes: int = 0          # classification head size
  head_dim: int = 128           # SimCLR / Barlow head width (paper A.2.3)
  vq_codes: int = 512
  vq_code_dim: int = 4
  conv_impl: str = "s2d"
  prototype_projection: str = "linear"  # h^PR (Eq. 5: a linear layer); 'mlp' as in the authors' code
  barlow_projection: str = "linear"     # h^B (A.2.3: a linear probe to 128); 'mlp' as in the authors' code
  simclr_projection: str = "linear"     # h^I (A.2.3: a linear probe to 128); 'none' as in the authors' code

  def setup(self):
    unknown = set(self.regularizers) - set(REGULARIZERS)
    if unknown:
      raise ValueError(f"unknown regularizers {sorted(unknown)}; choose from {REGULARIZERS}")
    self.encoder = Encoder(self.latent_dim, variational="kl" in self.regularizers, conv_impl=self.conv_impl)
    self.decoder = Decoder(conv_impl=self.conv_impl)
    if "vq" in self.regularizers:
      if self.latent_dim % self.vq_code_dim:
        raise ValueError(f"latent_dim {self.latent_dim} is not a multiple of vq_code_dim {self.vq_code_dim}")
      self.codebook = VQCodebook(self.vq_codes, self.vq_code_dim)
    if "classification" in self.regularizers:
      if self.num_classes < 2:
        raise ValueError("the classification regularizer needs num_classes >= 2")
      self.classifier = nn.Dense(self.num_classes)
    if "prototype" in self.regularizers:
      self.prototype_projector = _projector(self.prototype_projection, self.latent_dim, self.latent_dim)
    if "simclr" in self.regularizers and self.simclr_projection != "none":
      if self.simclr_projection != "linear":
        raise ValueError(f"simclr head must be one of {SIMCLR_HEADS}, got {self.simclr_projection!r}")
      self.simclr_head = nn.Dense(self.head_dim, use_bias=False)
    if "barlow" in self.regularizers:
      self.barlow_projector = _projector(self.barlow_projection, self.head_dim, self.head_dim)

  def encode(self, x, train: bool):
    return self.encoder(x, train)

  def decode(self, z, train: bool):
    return self.decoder(z, train)

  def get_codebook(self):
    return self.codebook()

  def snap(self, z):
    """With VQ the decoder only ever saw codewords: z snapped to the codebook; otherwise z itself."""
    if "vq" not in self.regularizers:
      return z
    return vq_snap(z, self.get_codebook().astype(z.dtype))[0]

  def classify(self, z):
    return self.classifier(z)

  def project_prototype(self, z, train: bool):
    return _apply_head(self.prototype_projector, z, train)

  def project_simclr(self, z):
    return z if self.simclr_projection == "none" else self.simclr_head(z)

  def project_barlow(self, z, train: bool):
    return _apply_head(self.barlow_projector, z, train)

  def __call__(self, x, train: bool = False):
    """Touches every submodule once (for `init`); returns the reconstruction of the encoder mean."""
    mean, _ = self.encode(x, train)
    if "vq" in self.regularizers:
      self.get_codebook()
    if "classification" in self.regularizers:
      self.classify(mean)
    if "prototype" in self.regularizers:
      self.project_prototype(mean, train)
    if "simclr" in self.regularizers:
      self.project_simclr(mean)
    if "barlow" in self.regularizers:
      self.project_barlow(mean, train)
    return self.decode(mean, train)


def _apply_head(head, z, train: bool):
  return head(z, train) if isinstance(head, MLPProjector) else head(z)


KL_LATENTS = ("sample", "mean")


def encode_latents(model: RAE, variables, images_u8: jax.Array, key: jax.Array, kl_latent: str = "sample",
                   chunk: int = 500) -> jax.Array:
  """uint8 images [N, H, W] → the latents [N, d] the decoder was trained on (eval mode, in chunks): the encoder
  mean; with KL a posterior sample μ + σ·ε (Eq. 6; `kl_latent='mean'` keeps μ); with VQ snapped to the codebook
  (after sampling, as in training)."""
  if kl_latent not in KL_LATENTS:
    raise ValueError(f"kl_latent must be one of {KL_LATENTS}, got {kl_latent!r}")

  def stats(xs):
    mean, logvar = model.apply(variables, pipeline.to_float(xs), False, method=RAE.encode)
    return jnp.stack([mean, jnp.zeros_like(mean) if logvar is None else logvar], 1)

  out = pipeline.map_in_chunks(stats, images_u8, chunk)
  mean, logvar = out[:, 0], out[:, 1]
  z = reparameterize(key, mean, logvar) if "kl" in model.regularizers and kl_latent == "sample" else mean
  return model.apply(variables, z, method=RAE.snap)


def decode_latents(model: RAE, variables, z: jax.Array, chunk: int = 500) -> jax.Array:
  """Latents [N, d] → images [N, H, W] in [0, 1]: snapped to the codebook first with VQ (a diffusion sample is
  continuous; the decoder saw only codewords), then decoded in eval mode, in chunks."""
  z = model.apply(variables, z, method=RAE.snap)
  return pipeline.map_in_chunks(lambda c: model.apply(variables, c, False, method=RAE.decode), z, chunk)[..., 0]
