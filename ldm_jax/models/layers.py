"""Strided convolutions with several exact implementations behind one parameter layout.

XLA on CPU runs transposed convolutions (and the input-gradient of strided convolutions, which is one) slowly.
Both layers below keep PyTorch-shaped 4×4 kernels as parameters (`[4, 4, C_in, C_out]`) and compute the same
function either with XLA's own strided / transposed convolution (`impl='xla'`) or with a stride-1 convolution on
a space-to-depth / depth-to-space rearrangement (`impl='s2d'`), whose gradients are stride-1 convolutions too.
`experiments/bench_rae.py` measures which is faster per backend.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

IMPLS = ("xla", "s2d", "im2col", "matmul", "vjp")
_DN = ("NHWC", "HWIO", "NHWC")


def resolve_conv_impl(impl: str) -> str:
  """'auto' picks the measured winner per backend (experiments/BENCHMARKS.md): GEMM convolutions on a CPU, whose
  convolutions run slowly inside loops, space-to-depth convolutions elsewhere."""
  if impl != "auto":
    return impl
  return "matmul" if jax.default_backend() == "cpu" else "s2d"


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


@jax.custom_vjp
def conv_valid_output_side(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Stride-1 VALID NHWC × HWIO convolution as GEMMs whose wide side is the (narrower) output: for C_out < C_in.

  im2col copies the input kh·kw times, and its weight gradient contracts that copy with the cotangent; when
  C_out is small (the decoder's 16 → 1 pixel layer, the encoder's space-to-depth convs) that copy dominates the
  step. Here the forward pass is one matmul to every tap's response then a shifted sum, and both gradients are
  matmuls against the cotangent shifted to every tap (kh·kw·C_out wide, not kh·kw·C_in): no im2col of x at all,
  and no convolution op, so nothing for XLA:CPU to run slowly inside a loop.
  """
  kh, kw, _, cout = kernel.shape
  return _sum_taps(_taps_out(x, kernel), kh, kw, cout)


def _output_side_fwd(x, kernel):
  return conv_valid_output_side(x, kernel), (x, kernel)


def _output_side_bwd(res, dy):
  x, kernel = res
  kh, kw, cin, cout = kernel.shape
  # dz[b, h + i, w + j, tap (i, j)] = dy[b, h, w]: the cotangent of _sum_taps, i.e. dy placed at every tap's offset.
  dz = jnp.concatenate([jnp.pad(dy, ((0, 0), (i, kh - 1 - i), (j, kw - 1 - j), (0, 0)))
                        for i in range(kh) for j in range(kw)], axis=-1)
  kmat = kernel.transpose(2, 0, 1, 3).reshape(cin, kh * kw * cout)
  dx = dz @ kmat.T
  dk = x.reshape(-1, cin).T @ dz.reshape(-1, kh * kw * cout)
  return dx.astype(x.dtype), dk.reshape(cin, kh, kw, cout).transpose(1, 2, 0, 3).astype(kernel.dtype)


conv_valid_output_side.defvjp(_output_side_fwd, _output_side_bwd)


def conv_valid(x: jax.Array, kernel: jax.Array, impl: str) -> jax.Array:
  """Stride-1 VALID cross-correlation, NHWC × HWIO. 'matmul' writes it as GEMMs, XLA:CPU's fast kernels
  everywhere (its convolutions slow down badly inside loops — lax.scan — and under vmap): im2col on the input
  (one matmul over the kh·kw shifted views) when C_out ≥ C_in, the output-side form (`conv_valid_output_side`)
  when C_out < C_in, whichever copies less (bench: experiments/bench_rae.py). 'vjp' keeps convolutions but
  writes their gradients as convolutions in the same layout (`conv_valid_vjp`); 'im2col' is 'matmul' with
  im2col on the input side always (the form before the output-side one, kept as the benchmark's baseline)."""
  if impl == "vjp":
    return conv_valid_vjp(x, kernel)
  if impl not in ("matmul", "im2col"):
    return _conv(x, kernel)
  if impl == "matmul" and kernel.shape[3] < kernel.shape[2]:
    return conv_valid_output_side(x, kernel)
  return _im2col_input(x, kernel)


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
  h = x.shape[1]
  out = (h + 2 * padding - 4) // 2 + 1
  extra = (h + 2 * padding) % 2  # make the padded size even; the extra row/col is never read by a kept output
  x = jnp.pad(x, ((0, 0), (padding, padding + extra), (padding, padding + extra), (0, 0)))
  cin, cout = kernel.shape[2], kernel.shape[3]
  k2 = kernel.reshape(2, 2, 2, 2, cin, cout).transpose(0, 2, 1, 3, 4, 5).reshape(2, 2, 4 * cin, cout)
  y = conv_valid(space_to_depth(x), k2, impl)
  return y[:, :out, :out]


def _phase_taps(kernel: jax.Array) -> jax.Array:
  """4-tap ConvT(s=2, p=1) kernel along one axis → [2 phases, 3 taps] over the window (in[m-1], in[m], in[m+1]).

  out[2m] = in[m]·w1 + in[m-1]·w3 and out[2m+1] = in[m+1]·w0 + in[m]·w2.
  """
  zero = jnp.zeros_like(kernel[0])
  even = jnp.stack([kernel[3], kernel[1], zero])
  odd = jnp.stack([zero, kernel[2], kernel[0]])
  return jnp.stack([even, odd])


# ConvT(k=4, s=2, p=1) along one axis: output phase r reads input rows m + r + t - 1 (t = 0, 1) with kernel row
# _PHASE_ROWS[r][t] (out[2m] = in[m-1]·w3 + in[m]·w1, out[2m+1] = in[m]·w2 + in[m+1]·w0): 4 of the 4×4 taps per
# output phase, so the sub-pixel 3×3 form (9 taps per phase) does 2.25× the products a transposed conv needs.
_PHASE_ROWS = ((3, 1), (2, 0))


def _phase_blocks(kernel: jax.Array) -> jax.Array:
  """[4, 4, C_in, C_out] → [C_in, 16·C_out]: the kernel slice of every (row phase, col phase, row tap, col tap)."""
  rows = jnp.asarray(_PHASE_ROWS)
  k = kernel[rows[:, :, None, None], rows[None, None, :, :]]       # [pr, tr, pc, tc, cin, cout]
  cin, cout = kernel.shape[2:]
  return k.transpose(4, 0, 2, 1, 3, 5).reshape(cin, 16 * cout)


def _phase_offsets():
  """(block index, row phase, col phase, row offset, col offset) of the 16 blocks, offsets into Z padded by 1."""
  return [(((pr * 2 + pc) * 2 + tr) * 2 + tc, pr, pc, pr + tr, pc + tc)
          for pr in range(2) for pc in range(2) for tr in range(2) for tc in range(2)]


@jax.custom_vjp
def conv_transpose_output_side(x: jax.Array, blocks: jax.Array) -> jax.Array:
  """ConvT(k=4, s=2, p=1) as one GEMM to the 16 (phase, tap) responses of every input pixel, then per output
  phase the shifted sum of its 4 taps: exactly the transposed conv's products (no zero taps, no im2col of x),
  gradients as two GEMMs against the cotangent shifted to each tap. `blocks` = `_phase_blocks(kernel)`."""
  h, w = x.shape[1:3]
  cout = blocks.shape[1] // 16
  z = jnp.pad(x @ blocks, ((0, 0), (1, 1), (1, 1), (0, 0)))
  phases = [[None, None], [None, None]]
  for i, pr, pc, r, c in _phase_offsets():
    part = z[:, r:r + h, c:c + w, i * cout:(i + 1) * cout]
    phases[pr][pc] = part if phases[pr][pc] is None else phases[pr][pc] + part
  return depth_to_space(jnp.concatenate([phases[0][0], phases[0][1], phases[1][0], phases[1][1]], -1))


def _ct_output_side_fwd(x, blocks):
  return conv_transpose_output_side(x, blocks), (x, blocks)


def _ct_output_side_bwd(res, dy):
  x, blocks = res
  _, h, w, cin = x.shape
  cout = blocks.shape[1] // 16
  dphase = space_to_depth(dy)                                        # [B, H, W, (pr, pc, c)]
  # dz[m + r - 1, n + c - 1, block] = dy of the block's phase at (m, n): the cotangent at each tap's offset.
  dz = jnp.concatenate([
      jnp.pad(dphase[..., (2 * pr + pc) * cout:(2 * pr + pc + 1) * cout],
              ((0, 0), (r, 2 - r), (c, 2 - c), (0, 0)))[:, 1:h + 1, 1:w + 1]
      for _, pr, pc, r, c in _phase_offsets()], axis=-1)
  dx = dz @ blocks.T
  dblocks = x.reshape(-1, cin).T @ dz.reshape(-1, 16 * cout)
  return dx.astype(x.dtype), dblocks.astype(blocks.dtype)


conv_transpose_output_side.defvjp(_ct_output_side_fwd, _ct_output_side_bwd)


def conv_transpose4x4_stride2(x: jax.Array, kernel: jax.Array, impl: str = "s2d") -> jax.Array:
  """PyTorch ConvTranspose2d(k=4, s=2, p=1, bias=False) on NHWC input: H → 2H; kernel [4, 4, C_in, C_out]."""
  dn = ("NHWC", "HWIO", "NHWC")
  if impl == "xla":
    # Transposed conv = conv of the 2×-dilated input with the flipped kernel, padded by k - 1 - p = 2.
    return jax.lax.conv_general_dilated(x, kernel[::-1, ::-1], (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2),
                                        dimension_numbers=dn)
  if impl == "matmul":
    return conv_transpose_output_side(x, _phase_blocks(kernel))
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
