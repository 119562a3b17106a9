"""Merge the outputs of a sharded batch prediction (`predict --batch ... --shard K/N`) into one file.

  genrefusion merge part1.jsonl part2.jsonl part3.jsonl --out predictions.jsonl

Checks each shard's manifest (OUT.shard.json): same input file (by content), model, batch size and
N; every shard 1..N exactly once; row counts as recorded. The rows are written in input order, so
the result is byte-identical to the unsharded run's output."""
from __future__ import annotations


def add_arguments(p):
    p.add_argument("shards", nargs="+", metavar="SHARD_OUT", help="the shard outputs (.jsonl or .csv)")
    p.add_argument("--out", required=True, metavar="OUT", help="merged output (same format as the shards)")


def run(args) -> int:
    from pathlib import Path

    from ..batch import merge_shards
    from ..errors import BadInput

    for s in args.shards:  # else reported as its manifest missing, as if the shard were there
        if not Path(s).is_file():
            raise BadInput(f"{s}: shard output not found" + (" (a folder)" if Path(s).is_dir() else ""))
    info = merge_shards(args.shards, args.out)
    print(f"merged {info['shards']} shards into {args.out}: {info['rows']} rows ({info['errors']} failed titles)")
    return 0
