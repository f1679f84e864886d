"""`python -m ldm_jax.data info <name> [--split=...] [--image_size=48]` prints one JSON line of counts."""

import argparse
import json
import sys

from ldm_jax import data


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m ldm_jax.data")
  sub = parser.add_subparsers(dest="command", required=True)
  p = sub.add_parser("info", help="print counts of a dataset as JSON")
  p.add_argument("name", choices=data.DATASETS)
  p.add_argument("--split", default=None)
  p.add_argument("--image_size", type=int, default=48)
  p.add_argument("--variant", default="simplified", choices=("raw", "simplified"))
  p.add_argument("--data_dir", default=None)
  args = parser.parse_args(argv)
  options = {"data_dir": args.data_dir}
  if args.name == "omniglot":
    options["image_size"] = args.image_size
  if args.name == "quickdraw":
    options["variant"] = args.variant
  try:
    print(json.dumps(data.info(args.name, args.split, **options)))
  except (data.DataError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
