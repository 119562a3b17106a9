"""Stratified train/dev/test split of one or more datasets (multi-label iterative stratification).

Titles sharing an imdb_id land in the same part, also across datasets. The split is written to
DIR/split.json for one dataset, or to --out FILE; an existing split is kept unless --force. Shipped
(read-only) dataset folders are never written: pass --out elsewhere. `genrefusion train DIR` trains on
DIR/split.json (each dataset's own, when every one has one); `train --split FILE` on a combined one."""
from __future__ import annotations


def add_arguments(p):
    p.add_argument("dirs", nargs="+", metavar="DIR", help="dataset folder(s)")
    p.add_argument("--dev", type=float, default=0.1, help="dev fraction, > 0 (default 0.1)")
    p.add_argument("--test", type=float, default=0.2, help="test fraction, > 0 (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", metavar="FILE", help="where to write split.json (required for several datasets)")
    p.add_argument("--force", action="store_true", help="overwrite an existing split file")


def run(args) -> int:
    import sys
    from pathlib import Path

    from ..data.dataset import SPLIT, open_datasets
    from ..data.split import Split, format_counts, make_split
    from ..errors import ConfigError
    from ..paths import check_writable_target

    for name, v, why in (("dev", args.dev, "thresholds and early stopping"), ("test", args.test, "test metrics")):
        if v == 0:  # make_split allows test 0 (holdout's inner split), a training run does not
            raise ConfigError(f"--{name}: must be > 0: training needs {name} titles ({why})")
    datasets = open_datasets(args.dirs)
    if args.out:
        out = Path(args.out)
        if out.is_dir():
            out = out / SPLIT
    elif len(datasets) == 1:
        out = datasets[0].split_path
    else:
        raise ConfigError("split: several datasets: pass --out FILE for the combined split")
    check_writable_target(out, "split.json")

    kept = out.exists() and not args.force
    if kept:
        split = Split.load(out)
        print(f"keeping existing split {out} (use --force to make a new one)")
    else:
        split = make_split(datasets, dev=args.dev, test=args.test, seed=args.seed)
        split.save(out)
        print(f"split written to {out}")
    made = "  ".join(f"{k}: {v}" for k, v in (("seed", split.seed), ("dev", split.dev), ("test", split.test))
                     if isinstance(v, (int, float)))  # an imported split (MM-IMDb's) has none of them
    print(f"datasets: {', '.join(ds.name for ds in datasets)}  {made or '(no seed or fractions: an imported split)'}")
    counts = split.counts(datasets)
    print(format_counts(counts))
    total = sum(len(ds) for ds in datasets)
    placed = sum(c.get("titles", 0) for c in counts.values())
    if placed < total:  # a split of other ids (an older import, another dataset) would be kept silently
        print(f"warning: {out} places {placed} of the {total} titles; training skips the other {total - placed} "
              "(--force makes a new split)", file=sys.stderr)
    empty = [p for p in ("dev", "test") if not counts[p].get("titles")]
    if empty:  # a kept file (MM-IMDb's, an edited one) or too few titles for a fraction: training would refuse it
        print(f"warning: {out} places no title of {', '.join(ds.name for ds in datasets)} in its "
              f"{' and '.join(empty)} part; training needs dev and test titles ("
              + ("--force makes a new split)" if kept else f"add titles or raise --{empty[0]})"), file=sys.stderr)
    return 0
