"""Strided convolutions with several exact implementations behind one parameter layout.

XLA on CPU runs transposed convolutions (and the input-gradient of strided convolutions, which is one) slowly.
Both layers below keep PyTorch-shaped 4×4 kernels as parameters (`[4, 4, C_in, C_out]`) and compute the same
function either with XLA's own strided / transposed convolution (`impl='xla'`) or with a stride-1 convolution on
a space-to-depth / depth-to-space rearrangement (`impl='s2d'`), whose gradients are stride-1 convolutions too.
`experiments/bench_rae.py` measures which is faster per backend. Beside them, 2×2 max pooling in the form XLA:CPU
differentiates fast (`max_pool2x2`).
"""

from __future__ import annotations

import glob
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp

IMPLS = ("xla", "s2d", "im2col", "matmul", "vjp")
_DN = ("NHWC", "HWIO", "NHWC")


# 'auto''s measured winners (experiments/BENCHMARKS.md), by backend or (backend, model); 's2d' where none is listed.
# A CPU: GEMM convolutions (its convolutions run slowly inside loops). The RAE on a GPU: GEMMs too, as fast as
# cuDNN for one model and 1.3-1.4x for a vmapped sweep, where vmap makes every convolution a grouped one that cuDNN
# runs slowly but every GEMM a batched GEMM.
AUTO_CONV_IMPL = {"cpu": "matmul", ("gpu", "rae"): "matmul"}


def resolve_conv_impl(impl: str, model: str = "") -> str:
  """'auto' → the measured winner for this backend and model ('rae', 'critic', 'pixel_denoiser'); others as is."""
  if impl != "auto":
    return impl
  backend = jax.default_backend()
  return AUTO_CONV_IMPL.get((backend, model), AUTO_CONV_IMPL.get(backend, "s2d"))


# Paper-vs-code switches; a stored config without the key was trained before the switch existed, i.e. with what
# is here the authors' code's variant (MLP projectors, NT-Xent, standardised Barlow) and an online SimCLR encoder.
_BEFORE_SWITCHES = {"prototype_projector": "mlp", "barlow_projector": "mlp", "simclr_head": "linear",
                    "simclr_loss": "nt_xent", "simclr_target": "online", "simclr_ema_momentum": 0.99,
                    "barlow_similarity": "standardized"}


def _conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=_DN)


@jax.custom_vjp
def conv_valid_vjp(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Stride-1 VALID NHWC × HWIO convolution whose backward pass is two more NHWC × HWIO convolutions.

  XLA:CPU rewrites autodiff's transposed-layout convolutions (`b01f_01oi`, `f01b_i01o`) into its fast kernels
  only outside loops (ConvCanonicalization runs on the entry computation), so inside an epoch's `lax.scan` they
  fall back to a slow generic emitter (jax#12868). Written out with explicit transposes, every convolution of
  the step is in the one layout the fast kernels take, inside a scan too.
  """
  return _conv(x, kernel)


def _conv_valid_fwd(x, kernel):
  return _conv(x, kernel), (x, kernel)


def _conv_valid_bwd(res, dy):
  x, kernel = res
  kh, kw = kernel.shape[:2]
  # dx = full correlation of dy with the spatially flipped kernel, in/out channels swapped.
  dy_pad = jnp.pad(dy, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))
  dx = _conv(dy_pad, kernel[::-1, ::-1].transpose(0, 1, 3, 2))
  # dk[i, j, ci, co] = Σ_{b,h,w} x[b, h+i, w+j, ci]·dy[b, h, w, co]: batch and channels swap roles.
  dk = _conv(x.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3))      # [ci, kh, kw, co]
  return dx, dk.transpose(1, 2, 0, 3).astype(kernel.dtype)


conv_valid_vjp.defvjp(_conv_valid_fwd, _conv_valid_bwd)


# GEMM convolutions write an intermediate several times the size of their output (every tap's response, the
# cotangent at every tap). Where the whole batch's intermediate would not fit in the CPU's last-level cache it
# streams through DRAM; a few rows at a time it stays in cache while the shifted sums read it back. Where it does
# fit, the chunk loops only cost: their slices, dynamic-update-slices and zero fills copy every input and output
# once more. Measured on the CI's CPUs (experiments/BENCHMARKS.md, "Batch-chunked GEMM convolutions" and "Chunk only
# what spills"): a 2 MB budget took the whole RAE step 7 % faster than none on an AMD EPYC (32 MB L3 slices),
# while on a Xeon with 480 MB of L3, where every intermediate of the step fits, chunking cost 1.16-1.25x.
# CPU only: on a GPU the chunk loops' many small kernels cost more than the cache saves (a vmapped RAE sweep ran
# 0.62x of separate runs chunked, 1.31x unchunked: experiments/BENCHMARKS.md, "GPU sweeps with GEMM convolutions").
# Variables so that benchmarks and tests can compare.
CHUNK_BYTES = 2 << 20


_SIZE_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def _last_level_cache_bytes() -> int:
  """The largest CPU cache the OS reports (sysfs), or 0 where it reports none readable (then every big
  intermediate is chunked, as before this rule). Read at import, so an odd entry is skipped, never raised."""
  sizes = []
  for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
    try:
      text = pathlib.Path(path).read_text().strip()
      sizes.append(int(text[:-1]) * _SIZE_UNITS[text[-1]] if text[-1:] in _SIZE_UNITS else int(text))
    except (OSError, ValueError):
      continue
  return max(sizes, default=0)


LLC_BYTES = _last_level_cache_bytes()


def _chunk_rows(batch: int, row_bytes: int) -> int:
  """The rows per chunk of a GEMM convolution: the whole batch on an accelerator or where its intermediate fits in
  the last-level cache (LLC_BYTES); otherwise the largest divisor of `batch` whose rows fit in CHUNK_BYTES (≥ 1)."""
  if jax.default_backend() != "cpu" or batch * row_bytes <= LLC_BYTES:
    return batch
  fit = max(1, CHUNK_BYTES // max(row_bytes, 1))
  return max(d for d in range(1, min(batch, fit) + 1) if batch % d == 0)


def _batch_chunked(forward, backward, row_bytes):
  """A custom-VJP function f(x, w) = forward(x, w) computed over batch chunks of `_chunk_rows` rows: the forward
  mapped over chunks, the backward (backward(x, w, dy) -> (dx, dw)) scanned over them, summing dw."""

  def chunks(x, w):
    return _chunk_rows(x.shape[0], row_bytes(x.shape, w.shape))

  def split(a, rows):
    return a.reshape(a.shape[0] // rows, rows, *a.shape[1:])

  @jax.custom_vjp
  def f(x, w):
    rows = chunks(x, w)
    if rows == x.shape[0]:
      return forward(x, w)
    y = jax.lax.map(lambda xc: forward(xc, w), split(x, rows))
    return y.reshape(x.shape[0], *y.shape[2:])

  def f_fwd(x, w):
    return f(x, w), (x, w)

  def f_bwd(res, dy):
    x, w = res
    rows = chunks(x, w)
    if rows == x.shape[0]:
      return backward(x, w, dy)

    def body(dw, chunk):
      dx, dw_chunk = backward(*chunk[:1], w, chunk[1])
      return dw + dw_chunk, dx

    dw, dx = jax.lax.scan(body, jnp.zeros_like(w), (split(x, rows), split(dy, rows)))
    return dx.reshape(x.shape), dw

  f.defvjp(f_fwd, f_bwd)
  return f


def _im2col_input(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The kh·kw shifted views of x side by side ([B, Ho, Wo, kh·kw·C_in]) times the kernel as one matrix."""
  kh, kw, cin, cout = kernel.shape
  ho, wo = x.shape[1] - kh + 1, x.shape[2] - kw + 1
  patches = jnp.concatenate([x[:, i:i + ho, j:j + wo, :] for i in range(kh) for j in range(kw)], axis=-1)
  return patches @ kernel.reshape(kh * kw * cin, cout)


def _taps_out(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Every tap's response at every input pixel, one matmul: [B, H, W, kh·kw·C_out] (tap-major)."""
  kh, kw, cin, cout = kernel.shape
  return x @ kernel.transpose(2, 0, 1, 3).reshape(cin, kh * kw * cout)


def _sum_taps(z: jax.Array, kh: int, kw: int, cout: int) -> jax.Array:
  """out[b, h, w] = Σ_(i,j) z[b, h + i, w + j, tap (i, j)]: the shifted sum that finishes an output-side conv."""
  ho, wo = z.shape[1] - kh + 1, z.shape[2] - kw + 1
  return sum(z[:, i:i + ho, j:j + wo, (i * kw + j) * cout:(i * kw + j + 1) * cout]
             for i in range(kh) for j in range(kw))


def _output_side_forward(x: jax.Array, kernel: jax.Array) -> jax.Array:
  kh, kw, _, cout = kernel.shape
  return _sum_taps(_taps_out(x, kernel), kh, kw, cout)


def _output_side_backward(x, kernel, dy):
  kh, kw, cin, cout = kernel.shape
  # dz[b, h + i, w + j, tap (i, j)] = dy[b, h, w]: the cotangent of _sum_taps, i.e. dy placed at every tap's offset.
  dz = jnp.concatenate([jnp.pad(dy, ((0, 0), (i, kh - 1 - i), (j, kw - 1 - j), (0, 0)))
                        for i in range(kh) for j in range(kw)], axis=-1)
  kmat = kernel.transpose(2, 0, 1, 3).reshape(cin, kh * kw * cout)
  dx = dz @ kmat.T
  dk = x.reshape(-1, cin).T @ dz.reshape(-1, kh * kw * cout)
  return dx.astype(x.dtype), dk.reshape(cin, kh, kw, cout).transpose(1, 2, 0, 3).astype(kernel.dtype)


def _output_side_row_bytes(x_shape, kernel_shape) -> int:
  return x_shape[1] * x_shape[2] * kernel_shape[0] * kernel_shape[1] * kernel_shape[3] * 4


conv_valid_output_side = _batch_chunked(_output_side_forward, _output_side_backward, _output_side_row_bytes)
conv_valid_output_side.__doc__ = """Stride-1 VALID NHWC × HWIO convolution as GEMMs whose wide side is the output.

  im2col copies the input kh·kw times, and its weight gradient contracts that copy with the cotangent; when
  C_out is small (the decoder's 16 → 1 pixel layer, the encoder's space-to-depth convs) that copy dominates the
  step. Here the forward pass is one matmul to every tap's response then a shifted sum, and both gradients are
  matmuls against the cotangent shifted to every tap (kh·kw·C_out wide, not kh·kw·C_in): no im2col of x at all,
  and no convolution op, so nothing for XLA:CPU to run slowly inside a loop. Batch-chunked (`_batch_chunked`).
  """


def conv_valid(x: jax.Array, kernel: jax.Array, impl: str) -> jax.Array:
  """Stride-1 VALID cross-correlation, NHWC × HWIO. 'matmul' writes it as GEMMs, XLA:CPU's fast kernels
  everywhere (its convolutions slow down badly inside loops — lax.scan — and under vmap): im2col on the input
  (one matmul over the kh·kw shifted views) or the output-side form (`conv_valid_output_side`), whichever moves
  less (bench: experiments/bench_rae.py). 'vjp' keeps convolutions but
  writes their gradients as convolutions in the same layout (`conv_valid_vjp`); 'im2col' is 'matmul' with
  im2col on the input side always (the form before the output-side one, kept as the benchmark's baseline)."""
  if impl == "vjp":
    return conv_valid_vjp(x, kernel)
  if impl not in ("matmul", "im2col"):
    return _conv(x, kernel)
  if impl == "matmul" and _output_side_moves_less(x.shape, kernel.shape):
    return conv_valid_output_side(x, kernel)
  return _im2col_input(x, kernel)


def _output_side_moves_less(x_shape, kernel_shape) -> bool:
  """The output-side form writes every input pixel's kh·kw·C_out tap responses; im2col copies kh·kw·C_in values
  per output pixel but multiplies fewer (outputs ≤ inputs). Output-side only where it moves clearly less (< 3/4):
  at the encoder's last layer (16 input, 9 output pixels, 0.89 of im2col's copy) im2col ran 2× faster
  (experiments/BENCHMARKS.md, "fewer copies")."""
  kh, kw, cin, cout = kernel_shape
  h, w = x_shape[1:3]
  inputs, outputs = h * w, (h - kh + 1) * (w - kw + 1)
  return 4 * inputs * cout < 3 * outputs * cin


def space_to_depth(x: jax.Array) -> jax.Array:
  """[B, 2H, 2W, C] → [B, H, W, 4C] with channel order (row phase, col phase, c)."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // 2, w // 2, 4 * c)


def depth_to_space(x: jax.Array) -> jax.Array:
  """[B, H, W, 4C] (row phase, col phase, c) → [B, 2H, 2W, C]."""
  b, h, w, c4 = x.shape
  c = c4 // 4
  x = x.reshape(b, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, 2 * h, 2 * w, c)


def conv4x4_stride2(x: jax.Array, kernel: jax.Array, padding: int, impl: str = "s2d") -> jax.Array:
  """PyTorch Conv2d(k=4, s=2, p=padding, bias=False) on NHWC input; kernel [4, 4, C_in, C_out]."""
  dn = ("NHWC", "HWIO", "NHWC")
  if impl == "xla":
    return jax.lax.conv_general_dilated(x, kernel, (2, 2), ((padding, padding),) * 2, dimension_numbers=dn)
  # Pad, then out[o] = Σ_k in_pad[2o + k]: with k = 2a + phase this is a VALID 2×2 conv on space_to_depth(in_pad).
  # The out kept outputs read padded rows 0 … 2·out + 1: pad (or crop) to exactly those, so no product is wasted
  # (the encoder's 7 → 3 layer would otherwise compute 4×4 outputs to keep 3×3).
  h = x.shape[1]
  out = (h + 2 * padding - 4) // 2 + 1
  end = 2 * (out + 1) - h - padding   # padding after the last row (negative: rows no kept output reads)
  x = jnp.pad(x, ((0, 0), (padding, max(end, 0)), (padding, max(end, 0)), (0, 0)))[:, :2 * out + 2, :2 * out + 2]
  cin, cout = kernel.shape[2], kernel.shape[3]
  k2 = kernel.reshape(2, 2, 2, 2, cin, cout).transpose(0, 2, 1, 3, 4, 5).reshape(2, 2, 4 * cin, cout)
  return conv_valid(space_to_depth(x), k2, impl)


def _phase_taps(kernel: jax.Array) -> jax.Array:
  """4-tap ConvT(s=2, p=1) kernel along one axis → [2 phases, 3 taps] over the window (in[m-1], in[m], in[m+1]).

  out[2m] = in[m]·w1 + in[m-1]·w3 and out[2m+1] = in[m+1]·w0 + in[m]·w2.
  """
  zero = jnp.zeros_like(kernel[0])
  even = jnp.stack([kernel[3], kernel[1], zero])
  odd = jnp.stack([zero, kernel[2], kernel[0]])
  return jnp.stack([even, odd])


def _shift_blocks(kernel: jax.Array) -> jax.Array:
  """[4, 4, C_in, C_out] → [C_in, (a, b, ρ, σ, C_out)] = kernel[2a + ρ, 2b + σ]: every tap grouped by the shift
  (a, b) it lands at in the space-to-depth output and the phase (ρ, σ) it fills there."""
  cin, cout = kernel.shape[2:]
  return kernel.reshape(2, 2, 2, 2, cin, cout).transpose(4, 0, 2, 1, 3, 5).reshape(cin, 16 * cout)


_SHIFTS = ((0, 0), (0, 1), (1, 0), (1, 1))


def _ct_shifted_forward(x: jax.Array, blocks: jax.Array) -> jax.Array:
  """ConvT(k=4, s=2, p=1) as one GEMM and, per output phase, a sum of 4 shifted slices: exactly the transposed
  conv's products (the sub-pixel 3×3 form multiplies 9 taps per phase where 4 are read).

  Input pixel i's tap k lands on output row 2i + k - 1; with k = 2a + ρ that is row 2(i + a) + ρ - 1. So the GEMM
  Z = pad(x, 1) @ blocks gives every padded input pixel's response for each shift (a, b) and phase (ρ, σ), and
  output row 2m + r (r = 1 - ρ) is Σ_(a, b) Z[m + r + 1 - a, ·, (a, b, 1 - r, ·)]. The four phases are stacked
  straight into the interleaved [B, 2H, 2W, C] layout. Padding x (C_in wide) rather than Z (16·C_out wide) saves
  a copy of Z. The gradients are the adjoint: the cotangent's stride-2 4×4 windows side by side (space-to-depth
  at the 4 shifts), times blocksᵀ for x and times x for the blocks: GEMMs too. `blocks` = `_shift_blocks(kernel)`.
  """
  b, h, w, _ = x.shape
  c = blocks.shape[1] // 16
  z = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))) @ blocks

  def phase(r, s):
    out = 0
    for n, (a, bb) in enumerate(_SHIFTS):
      ch = (4 * n + 2 * (1 - r) + (1 - s)) * c
      out = out + z[:, r + 1 - a:r + 1 - a + h, s + 1 - bb:s + 1 - bb + w, ch:ch + c]
    return out

  rows = [jnp.stack([phase(r, s) for s in range(2)], axis=3) for r in range(2)]   # [B, H, W, 2 (s), C]
  return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, c)


def _ct_shifted_backward(x, blocks, dy):
  _, h, w, cin = x.shape
  ds = space_to_depth(jnp.pad(dy, ((0, 0), (1, 1), (1, 1), (0, 0))))      # [B, H+1, W+1, 4·C_out]
  dz = jnp.concatenate([ds[:, a:a + h, b:b + w] for a, b in _SHIFTS], axis=-1)
  dx = dz @ blocks.T
  dblocks = x.reshape(-1, cin).T @ dz.reshape(-1, blocks.shape[1])
  return dx.astype(x.dtype), dblocks.astype(blocks.dtype)


def _ct_row_bytes(x_shape, blocks_shape) -> int:
  return (x_shape[1] + 2) * (x_shape[2] + 2) * blocks_shape[1] * 4


conv_transpose_shifted = _batch_chunked(_ct_shifted_forward, _ct_shifted_backward, _ct_row_bytes)


def conv_transpose4x4_stride2(x: jax.Array, kernel: jax.Array, impl: str = "s2d") -> jax.Array:
  """PyTorch ConvTranspose2d(k=4, s=2, p=1, bias=False) on NHWC input: H → 2H; kernel [4, 4, C_in, C_out]."""
  dn = ("NHWC", "HWIO", "NHWC")
  if impl == "xla":
    # Transposed conv = conv of the 2×-dilated input with the flipped kernel, padded by k - 1 - p = 2.
    return jax.lax.conv_general_dilated(x, kernel[::-1, ::-1], (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2),
                                        dimension_numbers=dn)
  if impl == "matmul":
    return conv_transpose_shifted(x, _shift_blocks(kernel))
  cin, cout = kernel.shape[2], kernel.shape[3]
  # Sub-pixel form: one 3×3 stride-1 conv to 4·C_out phase channels, then depth_to_space.
  # Row phases/taps first, then the same rule on the column axis of every (row phase, row tap) slice.
  row_taps = _phase_taps(kernel)                      # [2(pr), 3(a), 4, cin, cout]
  both = jax.vmap(jax.vmap(_phase_taps, in_axes=0), in_axes=0)(row_taps)  # [2(pr), 3(a), 2(pc), 3(b), cin, cout]
  k3 = both.transpose(1, 3, 4, 0, 2, 5).reshape(3, 3, cin, 4 * cout)
  y = conv_valid(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), k3, impl)
  return depth_to_space(y)


class StridedConv(nn.Module):
  """Conv2d(k=4, s=2, bias=False) with PyTorch semantics."""
  features: int
  padding: int = 1
  impl: str = "s2d"

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.kaiming_uniform(), (4, 4, x.shape[-1], self.features))
    return conv4x4_stride2(x, kernel.astype(x.dtype), self.padding, self.impl)


class Conv(nn.Module):
  """Stride-1 Conv2d with bias and symmetric zero padding, PyTorch semantics."""
  features: int
  kernel_size: int
  padding: int = 0
  impl: str = "s2d"

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    p = self.padding
    x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    return conv_valid(x, kernel.astype(x.dtype), self.impl) + bias.astype(x.dtype)


class UpConv(nn.Module):
  """ConvTranspose2d(k=4, s=2, p=1, bias=False) with PyTorch semantics."""
  features: int
  impl: str = "s2d"

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.kaiming_uniform(), (4, 4, x.shape[-1], self.features))
    return conv_transpose4x4_stride2(x, kernel.astype(x.dtype), self.impl)


def max_pool2x2(x: jax.Array, padding: str = "VALID") -> jax.Array:
  """`flax.linen.max_pool(x, (2, 2), strides=(2, 2), padding=padding)` on NHWC as a reshape and a max.

  XLA:CPU runs the windowed max's gradient (select-and-scatter) slowly: at the Conv4 critic's 240×50×50×64 the
  pooling's forward and backward took 2.7× as long as this form's, whose gradient is a comparison mask. Ties share
  the gradient here (one window element gets it there); in the models the pooled inputs are ReLU outputs, whose
  ties at 0 pass no gradient back, or leaky-ReLU outputs (ResNet-12), where ties have probability 0.
  """
  if padding not in ("VALID", "SAME"):
    raise ValueError(f"padding must be 'VALID' or 'SAME', got {padding!r}")
  b, h, w, c = x.shape
  if padding == "SAME":   # pad the odd edge with -inf, as flax does (all of it after, none before)
    x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=-jnp.inf)
  else:
    x = x[:, :h - h % 2, :w - w % 2]
  return x.reshape(b, x.shape[1] // 2, 2, x.shape[2] // 2, 2, c).max(axis=(2, 4))
