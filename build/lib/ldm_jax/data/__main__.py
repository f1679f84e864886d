"""`python -m ldm_jax.data info <name> [--split=...] [--image_size=48]` prints one JSON line of counts;
`python -m ldm_jax.data quickdraw_fs --critics_workdir=<dir> [--variant=raw] [--per_class=500] [--out=...]` builds
QuickDraw-FS from the Quick, Draw! drawings in the data dir, clustered in the critics' SimCLR feature space
(`ldm_jax.data.quickdraw_fs`), and prints one JSON line describing it."""

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
  q = sub.add_parser("quickdraw_fs", help="build QuickDraw-FS (paper A.1) from the QuickDraw drawings")
  q.add_argument("--critics_workdir", required=True, help="a critics job; its SimCLR features are the embedding")
  q.add_argument("--source", default="quickdraw", choices=("quickdraw", "quickdraw_bitmap"))
  q.add_argument("--variant", default="raw", choices=("raw", "simplified"))
  q.add_argument("--per_class", type=int, default=500)
  q.add_argument("--max_clusters", type=int, default=4)
  q.add_argument("--min_silhouette", type=float, default=0.1)
  q.add_argument("--seed", type=int, default=0)
  q.add_argument("--data_dir", default=None)
  q.add_argument("--out", default=None, help=f"default: <data dir>/{data.QUICKDRAW_FS_FILE}")
  args = parser.parse_args(argv)
  if args.command == "quickdraw_fs":
    return _build_quickdraw_fs(args)
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


def _build_quickdraw_fs(args) -> int:
  import pathlib

  from ldm_jax.data import quickdraw_fs, sources
  from ldm_jax.eval.judge import load_judges
  try:
    featurizer = load_judges(args.critics_workdir).featurizer
    d = data.load(args.source, "all", variant=args.variant, data_dir=args.data_dir, exemplar_space="")
    categories = d["class_names"][d["labels"]]
    built = quickdraw_fs.build(d["images"], categories, lambda x: featurizer(x), per_class=args.per_class,
                               max_clusters=args.max_clusters, min_silhouette=args.min_silhouette, seed=args.seed)
  except (data.DataError, ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  out = pathlib.Path(args.out) if args.out else sources.data_dir(args.data_dir) / data.QUICKDRAW_FS_FILE
  out.parent.mkdir(parents=True, exist_ok=True)
  quickdraw_fs.write(out, built)
  print(json.dumps({"path": str(out), "classes": int(len(built["data"])), "per_class": args.per_class,
                    "test_from": int(built["test_from"]),
                    "source_categories": int(len(set(built["source_category"].tolist())))}))
  return 0


if __name__ == "__main__":
  sys.exit(main())
