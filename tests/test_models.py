"""The RAE of Table 1: parameter counts, exact conv implementations, gradients, augmentations."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import rae as rae_config
from ldm_jax import augment, rae
from ldm_jax.jobs import rae as rae_job
from ldm_jax.models import layers
from ldm_jax.models.rae import RAE
from ldm_jax.regularizer_registry import REGULARIZERS


def n_params(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


def test_parameter_counts_match_table_1():
  v = RAE(latent_dim=128).init(jax.random.PRNGKey(0), jnp.zeros((1, 48, 48, 1)))
  assert n_params(v["params"]["encoder"]) == 320_352  # Table 1's encoder rows, exactly
  assert abs(n_params(v["params"]) - 1.08e6) / 1.08e6 < 0.01


@pytest.mark.parametrize("impl", ["s2d", "matmul", "vjp"])
def test_conv_implementations_are_exact_with_gradients(impl):
  k = jax.random.normal(jax.random.PRNGKey(0), (4, 4, 3, 5))
  for h, p in ((48, 1), (12, 2), (7, 1), (9, 0)):   # (9, 0): a row no kept output reads is cropped, not padded
    x = jax.random.normal(jax.random.PRNGKey(h), (2, h, h, 3))
    f = lambda x, k, i: jnp.sum(jnp.sin(layers.conv4x4_stride2(x, k, p, i)))
    np.testing.assert_allclose(f(x, k, impl), f(x, k, "xla"), rtol=1e-4)
    for a, b in zip(jax.grad(f, (0, 1))(x, k, impl), jax.grad(f, (0, 1))(x, k, "xla")):
      np.testing.assert_allclose(a, b, atol=1e-4)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 6, 6, 3))
  g = lambda x, k, i: jnp.sum(jnp.sin(layers.conv_transpose4x4_stride2(x, k, i)))
  np.testing.assert_allclose(g(x, k, impl), g(x, k, "xla"), rtol=1e-4)
  for a, b in zip(jax.grad(g, (0, 1))(x, k, impl), jax.grad(g, (0, 1))(x, k, "xla")):
    np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("kh,cin,cout,h",
                         [(2, 4, 16, 25), (2, 64, 32, 13), (2, 64, 128, 4), (3, 128, 256, 8), (4, 16, 1, 51)])
def test_custom_vjp_convolution_gradients_equal_autodiff(kh, cin, cout, h):
  """The kernel sizes and channel counts the RAE's layers reduce to (s2d 2×2, sub-pixel 3×3, the 4×4 output conv).
  Each gradient entry sums ≤ B·H·W·kh² products; two float32 orders of that sum differ by ≲ ε·terms·max|g|."""
  x = jax.random.normal(jax.random.PRNGKey(h), (2, h, h, cin))
  k = jax.random.normal(jax.random.PRNGKey(kh), (kh, kh, cin, cout)) / np.sqrt(kh * kh * cin)
  w = jax.random.normal(jax.random.PRNGKey(7), (2, h - kh + 1, h - kh + 1, cout))
  f = lambda x, k, impl: jnp.sum(w * layers.conv_valid(x, k, impl))
  eps = float(np.finfo(np.float32).eps)
  # 'matmul' takes the output-side custom VJP (conv_valid_output_side) where it moves less, e.g. the 16 → 1 layer.
  for impl in ("vjp", "matmul"):
    np.testing.assert_allclose(f(x, k, impl), f(x, k, "xla"), rtol=1e-4)
    for got, want in zip(jax.grad(f, (0, 1))(x, k, impl), jax.grad(f, (0, 1))(x, k, "xla")):
      terms = 2 * h * h * kh * kh * max(cin, cout)
      np.testing.assert_allclose(got, want, atol=eps * terms * float(jnp.abs(want).max()))


@pytest.mark.parametrize("cin,cout,h", [(128, 64, 6), (64, 32, 12), (32, 16, 24)])
def test_exact_phase_transposed_conv_gradients_equal_autodiff(cin, cout, h):
  """'matmul' runs the decoder's ConvT(k4, s2, p1) as `conv_transpose_shifted`: only the 4 taps each output
  phase reads (the sub-pixel 3×3 form multiplies 9), a custom VJP. Its value and both gradients equal XLA's
  transposed convolution under autodiff at the RAE's three decoder layers, to the float32 rounding of the sums."""
  x = jax.random.normal(jax.random.PRNGKey(h), (2, h, h, cin))
  k = jax.random.normal(jax.random.PRNGKey(cin), (4, 4, cin, cout)) / np.sqrt(16 * cin)
  w = jax.random.normal(jax.random.PRNGKey(7), (2, 2 * h, 2 * h, cout))
  f = lambda x, k, impl: jnp.sum(w * layers.conv_transpose4x4_stride2(x, k, impl))
  eps, terms = float(np.finfo(np.float32).eps), 2 * 4 * h * h * 4 * max(cin, cout)
  np.testing.assert_allclose(f(x, k, "matmul"), f(x, k, "xla"), rtol=1e-4)
  for got, want in zip(jax.grad(f, (0, 1))(x, k, "matmul"), jax.grad(f, (0, 1))(x, k, "xla")):
    np.testing.assert_allclose(got, want, atol=eps * terms * float(jnp.abs(want).max()))


def test_batch_chunked_gemm_convolutions_equal_the_whole_batch(monkeypatch):
  """Where the intermediate does not fit in the last-level cache and the chunk budget is a few rows, the GEMM
  convolutions map their forward over batch chunks and scan their backward (summing the weight gradient); values
  and both gradients equal the one-chunk program's. Where it fits, the whole batch is one chunk."""
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 12, 12, 32))
  k_out = jax.random.normal(jax.random.PRNGKey(1), (4, 4, 32, 1)) / 16       # output-side conv (32 → 1)
  k_ct = jax.random.normal(jax.random.PRNGKey(2), (4, 4, 32, 16)) / 32      # exact-phase ConvT
  f = lambda x, a, b: (jnp.sum(jnp.sin(layers.conv_valid(x, a, "matmul")))
                       + jnp.sum(jnp.cos(layers.conv_transpose4x4_stride2(x, b, "matmul"))))
  assert layers._output_side_moves_less(x.shape, k_out.shape)
  whole = f(x, k_out, k_ct), jax.grad(f, (0, 1, 2))(x, k_out, k_ct)
  monkeypatch.setattr(layers, "CHUNK_BYTES", 1)   # one row per chunk: 6 chunks
  monkeypatch.setattr(layers, "LLC_BYTES", 60)
  assert layers._chunk_rows(6, 10) == 6 and layers._chunk_rows(6, 11) == 1   # 60 bytes fit, 66 do not
  monkeypatch.setattr(layers, "LLC_BYTES", 0)
  assert layers._chunk_rows(6, 10) == 1
  chunked = f(x, k_out, k_ct), jax.grad(f, (0, 1, 2))(x, k_out, k_ct)
  np.testing.assert_allclose(chunked[0], whole[0], rtol=1e-6)
  for got, want in zip(chunked[1], whole[1]):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(jnp.abs(want).max()))
  # On an accelerator the whole batch is one chunk (the loops' small kernels cost more than the cache saves).
  monkeypatch.setattr(layers.jax, "default_backend", lambda: "gpu")
  assert layers._chunk_rows(6, 10) == 6


def test_last_level_cache_is_read_from_sysfs(monkeypatch, tmp_path):
  """The chunking rule's cache size: the largest of the cache sizes the OS lists (K/M suffixes), 0 with none."""
  for index, size in enumerate(("48K", "2048K", "491520K", "1M", "", "n/a")):   # odd entries are skipped
    (tmp_path / f"index{index}").mkdir()
    (tmp_path / f"index{index}" / "size").write_text(size + "\n")
  real_glob = layers.glob.glob
  monkeypatch.setattr(layers.glob, "glob", lambda pattern: real_glob(str(tmp_path / "index*" / "size")))
  assert layers._last_level_cache_bytes() == 491520 * 1024
  monkeypatch.setattr(layers.glob, "glob", lambda pattern: [])
  assert layers._last_level_cache_bytes() == 0


@pytest.mark.parametrize("size", [50, 25, 6, 3])
@pytest.mark.parametrize("padding", ["VALID", "SAME"])
def test_max_pool2x2_equals_flax_max_pool_with_gradients(size, padding):
  """The reshape-and-max pooling is flax's 2×2 stride-2 max_pool (even and odd sizes, VALID and SAME): values, and
  gradients both on tie-free inputs and behind a ReLU (whose ties at 0 pass no gradient under either rule)."""
  x = jax.random.normal(jax.random.PRNGKey(size), (3, size, size, 4))
  theirs = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2), padding=padding)
  ours = lambda x: layers.max_pool2x2(x, padding)
  np.testing.assert_array_equal(ours(x), theirs(x))
  for pre in (lambda x: x, nn.relu):
    grad = lambda pool: jax.grad(lambda x: jnp.sum(jnp.sin(3.0 * pool(pre(x)))))(x)
    np.testing.assert_allclose(grad(ours), grad(theirs), rtol=1e-6, atol=1e-7)
  with pytest.raises(ValueError, match="padding"):
    layers.max_pool2x2(x, "FULL")


def test_auto_conv_impl_is_the_measured_winner_per_backend_and_model(monkeypatch):
  """'auto': GEMM convolutions on a CPU for every model; on a GPU for the RAE only (its vmapped sweeps), where the
  critics and the pixel denoiser keep the space-to-depth convolutions; an explicit choice is kept as is."""
  for backend, model, want in (("cpu", "rae", "matmul"), ("cpu", "critic", "matmul"), ("gpu", "rae", "matmul"),
                               ("gpu", "critic", "s2d"), ("gpu", "pixel_denoiser", "s2d"), ("tpu", "rae", "s2d")):
    monkeypatch.setattr(layers.jax, "default_backend", lambda b=backend: b)
    assert layers.resolve_conv_impl("auto", model) == want, (backend, model)
    assert layers.resolve_conv_impl("xla", model) == "xla"


def test_conv_transpose_matches_pytorch_definition():
  """out[2i + a - 1] += in[i] · w[a] (PyTorch ConvTranspose2d, stride 2, padding 1), by explicit loops."""
  rng = np.random.default_rng(0)
  x, w = rng.normal(size=(1, 3, 3, 2)).astype(np.float32), rng.normal(size=(4, 4, 2, 3)).astype(np.float32)
  want = np.zeros((1, 8, 8, 3), np.float32)
  for i in range(3):
    for j in range(3):
      for a in range(4):
        for b in range(4):
          oi, oj = 2 * i + a - 1, 2 * j + b - 1
          if 0 <= oi < 6 and 0 <= oj < 6:
            want[0, oi, oj] += x[0, i, j] @ w[a, b]
  got = layers.conv_transpose4x4_stride2(jnp.asarray(x), jnp.asarray(w), "matmul")
  np.testing.assert_allclose(got, want[:, :6, :6], atol=1e-5)


@pytest.mark.real_data
def test_all_regularizers_together_give_finite_gradients(omniglot_test):
  from ldm_jax.data import pipeline
  cfg = rae_config.get_config("omniglot,tiny")
  cfg.rae.regularizers = REGULARIZERS
  for r in REGULARIZERS:
    cfg.rae.beta[r] = 1.0
  model = rae.build_model(cfg, num_classes=150)
  v = model.init(jax.random.PRNGKey(0), jnp.zeros((2, 48, 48, 1)), False)
  batch = pipeline.sample_batch(pipeline.to_device(omniglot_test), jax.random.PRNGKey(0), 0, 16)
  loss_fn = rae_job.make_loss_fn(model, cfg)
  (loss, (_, metrics)), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
      v["params"], v["batch_stats"], {"beta": jnp.ones(len(REGULARIZERS))}, batch, jax.random.PRNGKey(1))
  assert set(metrics) == {"recon", *REGULARIZERS}
  assert all(np.isfinite(float(m)) for m in metrics.values())
  leaves = jax.tree.leaves(grads)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  for head in ("encoder", "decoder", "codebook", "classifier", "prototype_projector", "simclr_head",
               "barlow_projector"):
    assert float(sum(jnp.abs(g).sum() for g in jax.tree.leaves(grads[head]))) > 0, head


def test_configs_sweeps_study_and_figures_read_one_regularizer_registry():
  """One row per regularizer: the β vector's order, the config's β keys, A.5's ranges, Fig. 3's panels, Fig. 4's
  partners and the figure colours all come from `regularizer_registry` (no list kept in step by hand)."""
  from ldm_jax import regularizer_registry as reg
  from ldm_jax.eval import figures
  from ldm_jax.study import grids
  cfg = rae_config.get_config("omniglot")
  assert set(cfg.rae.beta) == set(REGULARIZERS) and REGULARIZERS == tuple(reg.REGISTRY) == tuple(rae_config.PAPER_BETAS)
  assert sorted(r for _, regs in figures.FIG3_PANELS for r in regs) == sorted(REGULARIZERS)
  assert [f for f, _ in figures.FIG3_PANELS] == list(reg.FAMILIES)
  assert len(set(figures.REGULARIZER_COLORS.values())) == len(REGULARIZERS)
  # Fig. 4a-d: Barlow(30), SimCLR(1), KL(1e-3), VQ(20) beside the prototype, in panel order.
  assert list(grids.PARTNERS.items()) == [("barlow", 30.0), ("simclr", 1.0), ("kl", 1e-3), ("vq", 20.0)]
  assert rae_job.CONTRASTIVE == ("simclr", "barlow") and rae_job.EXEMPLAR_VIEW == ("prototype",)
  assert rae_config.PAPER_BETAS["vq"] == (1, 2, 5, 10, 20, 30, 40, 50, 100)
  # Every sweep member's β row follows the registry's order.
  cfg.rae.regularizers, cfg.sweep.regularizer, cfg.sweep.betas = ("kl",), "kl", (0.5,)
  np.testing.assert_array_equal(rae.sweep_hparams(cfg)["beta"][0], [0.5 if r == "kl" else 0 for r in REGULARIZERS])
  with pytest.raises(ValueError, match="family"):
    reg.Regularizer("new", "unsupervised", (1.0,))


def test_augmentations_identity_shape_and_range():
  x = jax.random.uniform(jax.random.PRNGKey(0), (4, 48, 48, 1))
  ident = augment.augment_batch(jax.random.PRNGKey(1), x, augment.AugmentParams(strength=0.0))
  np.testing.assert_allclose(ident, x, atol=1e-5)
  y = jax.jit(augment.augment_batch)(jax.random.PRNGKey(2), x)
  assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
  assert float(jnp.abs(y - x).mean()) > 0.01


def test_perspective_homography_maps_corners():
  src = jnp.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
  dst = jnp.array([[0.1, 0.0], [0.9, 0.2], [1.0, 1.0], [0.0, 0.8]])
  h = augment.homography_from_points(src, dst)
  p = jnp.concatenate([src, jnp.ones((4, 1))], 1) @ h.T
  np.testing.assert_allclose(p[:, :2] / p[:, 2:], dst, atol=1e-5)


@pytest.mark.real_data
def test_latents_are_the_ones_the_decoder_was_trained_on(omniglot_test):
  """VQ: codewords going in (encode) and coming out (decode snaps a continuous sample); KL: a posterior sample
  μ + σ·ε, or μ on request; the LDM's encode/decode use the same latents."""
  from ldm_jax import diffusion
  from ldm_jax import ldm as ldm_lib
  from ldm_jax.models.rae import decode_latents, encode_latents
  from ldm_jax.models.unet1d import build_unet
  images = jnp.asarray(omniglot_test["images"][:64])
  key = jax.random.PRNGKey(3)
  both = RAE(latent_dim=16, regularizers=("kl", "vq"), vq_codes=8, vq_code_dim=4, conv_impl="xla")
  v = both.init(jax.random.PRNGKey(0), jnp.zeros((2, 48, 48, 1)), False)
  codebook = np.asarray(v["params"]["codebook"]["codebook"])
  mean, logvar = both.apply(v, images.astype(jnp.float32)[..., None] / 255.0, False, method=RAE.encode)
  z = np.asarray(encode_latents(both, v, images, key))
  sub = z.reshape(-1, 4)
  assert np.all(np.any(np.all(sub[:, None] == codebook[None], -1), -1))      # every sub-vector is a codeword
  continuous = np.asarray(mean) + 0.3                                          # e.g. a diffusion sample
  snapped = np.asarray(both.apply(v, jnp.asarray(continuous), method=RAE.snap))
  np.testing.assert_array_equal(decode_latents(both, v, jnp.asarray(continuous)),
                                both.apply(v, jnp.asarray(snapped), False, method=RAE.decode)[..., 0])
  kl = RAE(latent_dim=16, regularizers=("kl",), conv_impl="xla")
  vk = kl.init(jax.random.PRNGKey(0), jnp.zeros((2, 48, 48, 1)), False)
  mean, logvar = kl.apply(vk, images.astype(jnp.float32)[..., None] / 255.0, False, method=RAE.encode)
  np.testing.assert_array_equal(encode_latents(kl, vk, images, key, "mean"), mean)
  sample = jax.jit(lambda k: encode_latents(kl, vk, images, k))
  draws = np.stack([np.asarray(sample(jax.random.PRNGKey(s))) for s in range(64)])
  sigma = np.exp(0.5 * np.asarray(logvar))
  # 64 draws: the sample mean is within 5 standard errors of μ, the sample std within 30 % of σ
  assert np.all(np.abs(draws.mean(0) - mean) < 5 * sigma / 8) and np.all(np.abs(draws.std(0) / sigma - 1) < 0.3)
  # The LDM encodes exemplars to the same latents and decodes through the snap.
  unet = build_unet("small", 16)
  params = unet.init(key, jnp.zeros((2, 16)), jnp.zeros((2, 16)), jnp.zeros((2,), jnp.int32))["params"]
  model = ldm_lib.LDM(denoiser_params=params, schedule=diffusion.make_schedule(timesteps=10), rae_variables=v,
                      latent_mean=jnp.float32(0.1), latent_std=jnp.float32(2.0), denoiser=unet, rae=both)
  cond = np.asarray(ldm_lib.encode(model, images, key))
  want = np.asarray(encode_latents(both, v, images, key))
  # (z − 0.1) / 2 · 2 + 0.1: three float32 roundings of values ≤ max|z| + 0.1
  tol = 3 * float(np.finfo(np.float32).eps) * (np.abs(want).max() + 0.1)
  np.testing.assert_allclose(cond * 2.0 + 0.1, want, atol=tol)
  out = ldm_lib.generate(model, images[:3], 2, key)
  codes = out["codes"].reshape(6, 16) * 2.0 + 0.1
  np.testing.assert_array_equal(out["images"].reshape(6, 48, 48), decode_latents(both, v, jnp.asarray(codes)))


def _head_shapes(cfg):
  v = rae.init_variables(rae.build_model(cfg, num_classes=4), cfg, jax.random.PRNGKey(0))
  return {k: jax.tree.map(jnp.shape, v["params"][k]) for k in v["params"] if k not in ("encoder", "decoder")}, v


def test_paper_and_code_heads():
  """The paper's linear probes (Eq. 5 h^PR d→d, Eq. 14-15 h^I, h^B d→128) by default; `variant=code` gives the
  authors' MLP projectors (Linear-BN-ReLU-Linear), no SimCLR head and the momentum target encoder."""
  paper = rae_config.get_config("omniglot,tiny")
  paper.rae.regularizers = ("prototype", "simclr", "barlow")
  heads, v = _head_shapes(paper)
  assert heads == {"prototype_projector": {"kernel": (64, 64)}, "simclr_head": {"kernel": (64, 128)},
                   "barlow_projector": {"kernel": (64, 128)}}
  assert "simclr_target" not in v["batch_stats"]
  code = rae_config.get_config("omniglot,tiny,variant=code")
  code.rae.regularizers = ("prototype", "simclr", "barlow")
  heads, v = _head_shapes(code)
  assert set(heads) == {"prototype_projector", "barlow_projector"}           # no SimCLR head
  assert heads["prototype_projector"]["Dense_0"]["kernel"] == (64, 64)
  assert heads["barlow_projector"]["Dense_1"]["kernel"] == (128, 128)
  assert code.rae.simclr_loss == "nt_xent" and code.rae.barlow_similarity == "standardized"
  # the target starts as a copy of the encoder
  for a, b in zip(jax.tree.leaves(v["batch_stats"]["simclr_target"]), jax.tree.leaves(v["params"]["encoder"])):
    np.testing.assert_array_equal(a, b)


def test_stored_configs_without_switches_build_what_they_trained():
  """A config stored before the paper/code switches existed trained MLP projectors: it must still build them."""
  cfg = rae_config.get_config("omniglot,tiny")
  for key in ("prototype_projector", "barlow_projector", "simclr_head"):
    del cfg.rae[key]
  model = rae.build_model(cfg)
  assert (model.prototype_projection, model.barlow_projection, model.simclr_projection) == ("mlp", "mlp", "linear")


@pytest.mark.real_data
def test_ema_target_moves_by_one_minus_momentum(omniglot_test):
  """One training step with the code's SimCLR: target ← m·target + (1 − m)·encoder (MoCo order: before the
  encoder's update), so a target zeroed by hand becomes exactly (1 − m)·encoder."""
  from ldm_jax.data import pipeline
  cfg = rae_config.get_config("omniglot,tiny,reg=simclr,variant=code")
  cfg.rae.simclr_ema_momentum = 0.9
  model = rae.build_model(cfg)
  v = rae.init_variables(model, cfg, jax.random.PRNGKey(0))
  stats = {**v["batch_stats"], "simclr_target": jax.tree.map(jnp.zeros_like, v["params"]["encoder"])}
  batch = pipeline.sample_batch(pipeline.to_device(omniglot_test), jax.random.PRNGKey(0), 0, 16)
  loss_fn = rae_job.make_loss_fn(model, cfg)
  loss, (new_stats, metrics) = loss_fn(v["params"], stats, {"beta": jnp.ones(6)}, batch, jax.random.PRNGKey(1))
  assert np.isfinite(float(metrics["simclr"]))
  for got, enc in zip(jax.tree.leaves(new_stats["simclr_target"]), jax.tree.leaves(v["params"]["encoder"])):
    np.testing.assert_allclose(got, 0.1 * enc, rtol=1e-6)
