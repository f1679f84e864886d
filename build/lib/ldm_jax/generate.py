"""One-shot generation from your own drawings:

    python -m ldm_jax.generate --model runs/demo/ldm/models/0 --exemplar a.png b.png --n 16 --out grid.png

Each PNG (any size, either polarity, any colour mode) is prepared as the data layer prepares Omniglot (strokes =
255 on 0, antialiased, bilinear to the model's image size): grey levels, inverted when the background is light (the
border is brighter than the middle of the histogram), padded to a square with background, resized.
`--crop` first crops to the ink's bounding box plus a margin (for drawings on a large canvas). Writes the grid
(one row per exemplar: the exemplar, then its samples) and `<out>.npz` (`images` [C, n, H, W] in [0, 1],
`exemplars` [C, H, W] uint8) in the evaluate job's sample-file format.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np
from PIL import Image, UnidentifiedImageError


class DrawingError(ValueError):
  """A file that is not a readable drawing."""


def prepare_drawing(path: str | pathlib.Path, size: int, crop_margin: float | None = None) -> np.ndarray:
  """A drawing file → uint8 [size, size], strokes bright on black, as `ldm_jax.data.omniglot.decode_png`."""
  try:
    with Image.open(path) as im:
      grey = np.asarray(im.convert("L"), np.uint8)
  except (OSError, UnidentifiedImageError) as e:
    raise DrawingError(f"{path}: not a readable image ({e.__class__.__name__}: {e})") from None
  border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
  ink = 255 - grey if border.mean() > 127 else grey            # the background is whatever the border is
  if not ink.any():
    raise DrawingError(f"{path}: the image is blank (no strokes)")
  if crop_margin is not None:
    rows, cols = np.flatnonzero(ink.max(1)), np.flatnonzero(ink.max(0))
    m = int(round(crop_margin * max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)))
    ink = np.pad(ink, m)[rows[0]:rows[-1] + 1 + 2 * m, cols[0]:cols[-1] + 1 + 2 * m]
  h, w = ink.shape
  if h != w:                                                   # centre on a square of background
    s = max(h, w)
    ink = np.pad(ink, (((s - h) // 2, s - h - (s - h) // 2), ((s - w) // 2, s - w - (s - w) // 2)))
  img = Image.fromarray(ink)
  if size != img.size[0]:
    img = img.resize((size, size), Image.Resampling.BILINEAR)
  return np.asarray(img, np.uint8)


def parse_args(argv):
  p = argparse.ArgumentParser(prog="python -m ldm_jax.generate", description=__doc__.splitlines()[0])
  p.add_argument("--model", required=True, help="an exported LDM: <ldm workdir>/models/<member>")
  p.add_argument("--exemplar", nargs="+", required=True, help="PNG (or any image) files of drawings")
  p.add_argument("--n", type=int, default=16, help="samples per exemplar")
  p.add_argument("--out", required=True, help="the grid image (.png); the samples go to the same name + .npz")
  p.add_argument("--guidance", type=float, default=1.0)
  p.add_argument("--sampler", default="ddpm", choices=("ddpm", "ddim"))
  p.add_argument("--ddim_steps", type=int, default=50)
  p.add_argument("--ddim_eta", type=float, default=0.0, help="0: deterministic DDIM; 1: DDPM's variance")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--crop", type=float, default=None, metavar="MARGIN",
                 help="crop to the ink's bounding box plus MARGIN × its size first")
  args = p.parse_args(argv)
  if args.n < 1:
    p.error("--n must be at least 1")
  return args


def main(argv=None) -> int:
  args = parse_args(argv)
  import jax

  from ldm_jax import ldm as ldm_lib
  from ldm_jax import manifest
  from ldm_jax.eval import figures
  try:
    model, spec = ldm_lib.load(args.model)
    size = int(spec.get("image_size", 48))
    exemplars = np.stack([prepare_drawing(f, size, args.crop) for f in args.exemplar])
    out = ldm_lib.generate(model, exemplars, args.n, jax.random.PRNGKey(args.seed), args.guidance, args.sampler,
                           args.ddim_steps, name=args.model, ddim_eta=args.ddim_eta)
  except (DrawingError, FileNotFoundError, ValueError, manifest.CorruptFileError, ldm_lib.NonFiniteSamplesError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  grid = pathlib.Path(args.out)
  grid.parent.mkdir(parents=True, exist_ok=True)
  np.savez(grid.with_suffix(".npz"), images=out["images"], exemplars=exemplars)
  figures.write_grid(grid, [np.concatenate([e[None] / 255.0, s]) for e, s in zip(exemplars, out["images"])],
                     [pathlib.Path(f).name for f in args.exemplar])
  print(f"wrote {grid} and {grid.with_suffix('.npz')}: {len(exemplars)} exemplars × {args.n} samples")
  return 0


if __name__ == "__main__":
  sys.exit(main())
