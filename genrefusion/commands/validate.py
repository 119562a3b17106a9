"""Check a dataset folder: counts (titles, with poster, with plot, per genre) and every problem by
title id, one line each on stderr. Problem items are skipped by training.

Exit status: 0 when the dataset is usable, 1 with --strict when any problem was found, 2 when the
folder itself is unusable (missing, no titles.jsonl, bad dataset.json, no usable title)."""
from __future__ import annotations


def add_arguments(p):
    p.add_argument("dir", metavar="DIR", help="dataset folder (titles.jsonl + posters/)")
    p.add_argument("--strict", action="store_true", help="exit 1 when any problem is found")
    p.add_argument("--json", metavar="FILE", help="also write the full report as JSON")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes for poster decoding (default: all available cores)")
    p.add_argument("--no-decode", action="store_true",
                   help="check poster headers only, not a full decode (faster, misses truncated files)")


def run(args) -> int:
    import sys

    from ..data.dataset import Dataset
    from ..data.validate import validate_dataset
    from ..errors import ConfigError, DatasetError
    from ..io import write_json
    from ..paths import check_file_target

    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers: must be >= 1, got {args.workers}")
    if args.json:
        check_file_target(args.json, "the validation report", "--json")  # before the posters are decoded
    rep = validate_dataset(Dataset(args.dir), decode=not args.no_decode, workers=args.workers)
    for p in rep.problems:
        print(str(p), file=sys.stderr)
    print("\n".join(rep.summary_lines()))
    if args.json:
        write_json(args.json, rep.to_dict())
        print(f"report written to {args.json}")
    if not rep.usable_flag:
        raise DatasetError(f"{args.dir}: no usable title ({rep.titles} read, {len(rep.problems)} problems)")
    if args.strict and rep.problems:
        return 1
    return 0
