"""A trained one-shot generator, whole: the frozen RAE, the denoiser, the latent scaling and the schedule.

`generate` is the one-shot API: exemplar images → n samples per exemplar (encode → standardise → guided sampling →
de-standardise → decode), batched over all exemplars at once. `save`/`load` write and read one self-contained
orbax checkpoint directory per model, so a fresh process regenerates the same samples from a key. The pixel-space
baseline is the same object with no RAE (the sampler then runs on images in [−1, 1]).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from ldm_jax import diffusion, distributed, manifest, sampling
from ldm_jax.data import pipeline
from ldm_jax.models.layers import resolve_conv_impl
from ldm_jax.models.pixel_denoiser import PixelDenoiser
from ldm_jax.models.rae import decode_latents, encode_latents
from ldm_jax.models.unet1d import build_unet

SPACES = ("latent", "pixel")


@flax.struct.dataclass
class LDM:
  denoiser_params: Any
  schedule: diffusion.Schedule
  rae_variables: Any            # {'params', 'batch_stats'} of the frozen RAE; None in pixel space
  latent_mean: jax.Array        # scalar: the standardisation of the training latents (0 in pixel space)
  latent_std: jax.Array         # scalar (1 in pixel space)
  denoiser: Any = flax.struct.field(pytree_node=False)
  rae: Any = flax.struct.field(pytree_node=False)
  kl_latent: str = flax.struct.field(pytree_node=False, default="sample")   # a KL RAE's latents: 'sample' | 'mean'

  @property
  def space(self) -> str:
    return "pixel" if self.rae is None else "latent"

  def eps_fn(self, params, x, cond, t):
    return self.denoiser.apply({"params": params}, x, cond, t)


def build_denoiser(space: str, unet: str, latent_dim: int, conv_impl: str = "s2d"):
  """The 1D latent UNet, or the pixel-space conv denoiser with `conv_impl` ('auto' resolved per backend)."""
  if space == "latent":
    return build_unet(unet, latent_dim)
  if space == "pixel":
    return PixelDenoiser(unet=unet, conv_impl=resolve_conv_impl(conv_impl, "pixel_denoiser"))
  raise ValueError(f"unknown space {space!r}; choose from {SPACES}")


def denoiser_eps_fn(denoiser):
  return lambda params, x, cond, t: denoiser.apply({"params": params}, x, cond, t)


# --- images ↔ the sampler's space -------------------------------------------------------------------------------

@jax.jit
def encode(ldm: LDM, images_u8: jax.Array, key: jax.Array | None = None) -> jax.Array:
  """uint8 [N, H, W] → standardised latents [N, d] (latent space) or images in [−1, 1] [N, H, W, 1] (pixels).

  The latents are the ones the RAE's decoder was trained on (`models.rae.encode_latents`): codewords with VQ, a
  posterior sample with KL (drawn with `key`; the mean with `kl_latent='mean'` or no key).
  """
  if ldm.rae is None:
    return pipeline.to_float(images_u8) * 2.0 - 1.0
  kl_latent = ldm.kl_latent if key is not None else "mean"
  z = encode_latents(ldm.rae, ldm.rae_variables, images_u8, key if key is not None else jax.random.PRNGKey(0),
                     kl_latent)
  return (z - ldm.latent_mean) / ldm.latent_std


@jax.jit
def decode(ldm: LDM, x: jax.Array) -> jax.Array:
  """The sampler's output → images [N, H, W] in [0, 1] (latents snapped to the codebook first with VQ)."""
  if ldm.rae is None:
    return jnp.clip((x[..., 0] + 1.0) / 2.0, 0.0, 1.0)
  return decode_latents(ldm.rae, ldm.rae_variables, x * ldm.latent_std + ldm.latent_mean)


class NonFiniteSamplesError(FloatingPointError):
  """A model generated NaN or infinite values: its samples are not drawings and must not be scored."""


def generate(ldm: LDM, exemplars_u8, n: int, key: jax.Array, guidance: float = 1.0, sampler: str = "ddpm",
             ddim_steps: int = 50, chunk: int = 4096, name: str = "the model",
             ddim_eta: float = 0.0) -> dict[str, np.ndarray]:
  """n samples for each of C exemplar images, all in one batch (in chunks of `chunk` rows).

  Returns {'images': [C, n, H, W] in [0, 1], 'codes': [C, n, ...] the sampler's outputs (standardised latents or
  pixels), 'exemplar_codes': [C, ...]}.

  Raises:
    NonFiniteSamplesError: a sample (or its code) is not finite; the message names `name` and the count.
  """
  exemplars_u8 = jnp.asarray(exemplars_u8)
  c = exemplars_u8.shape[0]
  cond = encode(ldm, exemplars_u8, jax.random.fold_in(key, 1))   # the sampler keeps `key` itself
  cond_rep = jnp.repeat(cond, n, axis=0)                  # [C·n, ...], exemplar-major
  sample_fn = _sampler(ldm.denoiser, sampler, ddim_steps, ddim_eta)
  codes = sampling.chunked(sample_fn, ldm.denoiser_params, ldm.schedule, cond_rep, key, guidance, chunk)
  images = decode(ldm, codes)
  images, codes = np.asarray(images).reshape(c, n, *images.shape[1:]), np.asarray(codes).reshape(c, n, -1)
  bad = int((~np.isfinite(codes).all(-1) | ~np.isfinite(images.reshape(c, n, -1)).all(-1)).sum())
  if bad:
    raise NonFiniteSamplesError(f"{name} generated {bad} of {c * n} samples with NaN/inf values (a diverged or "
                                "corrupted model): nothing is scored")
  return {"images": images, "codes": codes.reshape(c, n, *np.shape(cond)[1:]), "exemplar_codes": np.asarray(cond)}


_SAMPLERS: dict = {}


def _sampler(denoiser, kind: str, ddim_steps: int, ddim_eta: float):
  """One compiled sampler per (denoiser, kind, DDIM settings): repeated calls reuse it."""
  k = (denoiser, kind, ddim_steps, float(ddim_eta))
  if k not in _SAMPLERS:
    _SAMPLERS[k] = sampling.make_sampler(denoiser_eps_fn(denoiser), kind, ddim_steps, float(ddim_eta))
  return _SAMPLERS[k]


# --- checkpoints ------------------------------------------------------------------------------------------------

def save(path: str | pathlib.Path, ldm: LDM, spec: dict) -> None:
  """Writes `path/ldm.json` (everything needed to rebuild the modules) and `path/arrays` (orbax).

  `spec`: {'space', 'unet', 'latent_dim', 'conv_impl', 'diffusion': {...}, 'rae_config': {...} | None,
  'rae_num_classes': int, plus any description (member, β, ...)}.
  """
  path = pathlib.Path(path).absolute()
  path.mkdir(parents=True, exist_ok=True)
  tree = {"denoiser": ldm.denoiser_params, "latent_mean": ldm.latent_mean, "latent_std": ldm.latent_std}
  if ldm.rae is not None:
    tree["rae"] = ldm.rae_variables
  ckptr = ocp.StandardCheckpointer()
  ckptr.save(path / "arrays", jax.device_get(tree), force=True)
  ckptr.wait_until_finished()
  distributed.write_text(path / "ldm.json", json.dumps(spec, indent=1, default=str))
  if distributed.is_primary():
    manifest.write(path)   # verified by `load`: a corrupted or truncated export is an error, not garbage


def load(path: str | pathlib.Path, verify: bool = True) -> tuple[LDM, dict]:
  """(LDM, spec) from a directory written by `save`; every file is checked against the export's manifest first
  (`verify=False` only for a caller that has just verified it).

  Raises:
    FileNotFoundError: `path` holds no export.
    manifest.CorruptFileError: a file is missing, truncated or changed since `save` (named in the message).
  """
  from ldm_jax import rae as rae_job
  path = pathlib.Path(path).absolute()
  if not (path / "ldm.json").exists():
    raise FileNotFoundError(f"{path} holds no exported LDM (no ldm.json): exports are <ldm workdir>/models/<i>")
  if verify:
    manifest.verify(path, f"LDM export {path}")
  spec = json.loads((path / "ldm.json").read_text())
  denoiser = build_denoiser(spec["space"], spec["unet"], spec["latent_dim"], spec.get("conv_impl", "s2d"))
  rae = None
  if spec["space"] == "latent":
    rae = rae_job.build_model(ml_collections.ConfigDict(spec["rae_config"]), spec["rae_num_classes"])
  abstract = jax.eval_shape(lambda: _init_tree(denoiser, rae, spec))
  tree = ocp.StandardCheckpointer().restore(path / "arrays", abstract)
  dc = ml_collections.ConfigDict(spec["diffusion"])
  ldm = LDM(denoiser_params=tree["denoiser"], schedule=diffusion.schedule_from_config(dc),
            rae_variables=tree.get("rae"), latent_mean=tree["latent_mean"], latent_std=tree["latent_std"],
            denoiser=denoiser, rae=rae, kl_latent=spec.get("kl_latent", "sample"))
  return ldm, spec


def _init_tree(denoiser, rae, spec):
  key = jax.random.PRNGKey(0)
  size = spec.get("image_size", 48)
  if spec["space"] == "latent":
    x = jnp.zeros((1, spec["latent_dim"]))
  else:
    x = jnp.zeros((1, size, size, 1))
  tree = {"denoiser": denoiser.init(key, x, x, jnp.zeros((1,), jnp.int32))["params"],
          "latent_mean": jnp.zeros(()), "latent_std": jnp.zeros(())}
  if rae is not None:
    tree["rae"] = rae.init(key, jnp.zeros((2, size, size, 1)), False)
  return tree
