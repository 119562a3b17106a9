"""Evaluate a trained run on its own split or on other canonical datasets, without retraining.

  genrefusion evaluate runs/demo                          # the run's test split
  genrefusion evaluate runs/demo --split dev --out dev.json
  genrefusion evaluate runs/demo --data other_dataset/ --out other.json
  genrefusion evaluate runs/demo --data data/mmimdb --part test    # the dataset's own (published) test part

Genres are matched by name: a genre the model knows but a dataset does not label is masked for its
titles, one the dataset labels but the model does not know is left out; both are listed. Thresholds
are the run's (tuned on its dev split, or on its out-of-fold scores with cross-fitting). With --data,
titles the run trained or selected models on (same imdb_id, any dataset) are left out unless --split
all. --part test|dev|train takes only that part of each --data dataset's own split.json (MM-IMDb's, or one
`genrefusion split` wrote); a dataset without one, or whose split has no such part, is an error."""
from __future__ import annotations

from . import add_image_weights

import argparse


def add_arguments(p):
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("run_dir", metavar="RUN", help="a trained run folder")
    p.add_argument("--data", nargs="+", metavar="DIR", help="evaluate on these datasets instead of the run's split")
    p.add_argument("--split", choices=("test", "dev", "all"), default="test",
                   help="without --data: the run's part to score (all = every title, training ones included); "
                        "with --data: test (default) leaves out titles the run saw, all keeps them")
    p.add_argument("--part", choices=("test", "dev", "train", "all"), default="all",
                   help="with --data: only this part of each dataset's own split.json (default all: every title)")
    p.add_argument("--out", metavar="FILE", help="write the full result as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_image_weights(p)


def run(args) -> int:
    from ..errors import ConfigError
    from ..evaluate import evaluate_run, write_evaluation
    from ..paths import cache_dir
    from .train import summary_table

    if args.data and args.split == "dev":
        raise ConfigError("--split dev applies to the run's own data; with --data use test or all")
    if args.out:
        from ..paths import check_file_target

        check_file_target(args.out, "the evaluation", "--out")  # a folder found only at the end lost the evaluation
    result = evaluate_run(args.run_dir, data=args.data, split=args.split, cache_dir=cache_dir() / "features",
                          progress=not args.no_progress, image_weights=args.image_weights, part=args.part)
    print(f"evaluated on {result['evaluated_on']}: {result['n_titles']} titles "
          f"({result['n_with_both']} with poster and plot)")
    print("titles by inputs: " + ", ".join(f"{c} {n}" for c, n in result["n_by_combination"].items())
          + "; by kind: " + ", ".join(f"{k} {n}" for k, n in result["n_by_kind"].items())
          + " (the F1 <part> columns are measured on these counts)")
    print(summary_table(result))
    for ds, lo in (result.get("left_out") or {}).items():
        if lo.get("not_labelled_by_dataset"):
            print(f"{ds}: masked (not labelled by the dataset): {', '.join(lo['not_labelled_by_dataset'])}")
        if lo.get("unknown_to_model"):
            carried = (result.get("unknown_genre_titles") or {}).get(ds, {})
            said = [f"{g} ({n} title{'s' if n != 1 else ''})" for g, n in carried.items()]
            rest = [g for g in lo["unknown_to_model"] if g not in carried]
            print(f"{ds}: ignored (unknown to the model, so never predicted nor counted): "
                  + "; ".join(([", ".join(said) + " among the evaluated titles"] if said else [])
                              + ([f"{', '.join(rest)} (on no evaluated title)"] if rest else [])))
    if result.get("input_errors"):
        print(f"{len(result['input_errors'])} inputs unusable (treated as missing), e.g. "
              f"{next(iter(result['input_errors'].items()))}")
    if args.out:
        print(f"written: {write_evaluation(result, args.out)}")
    return 0
