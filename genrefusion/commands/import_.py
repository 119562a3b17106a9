"""Import MM-IMDb, CSV/TSV or JSON-lines data into the canonical dataset layout
(titles.jsonl + posters/ + dataset.json). Posters are re-encoded as JPEG; the source is never
modified. Prints what was imported, and every dropped item (or dropped poster/genre) by id with its
reason, one line each.

  genrefusion import mmimdb SRC --out DIR
  genrefusion import csv FILE --out DIR [--images DIR] [--plot-col overview ...] [--genre-columns wide]
  genrefusion import jsonl FILE --out DIR --map id=movie_id,plot=overview,genres=genre_names,poster=img"""
from __future__ import annotations

import argparse


def _common(p):
    p.add_argument("--out", required=True, metavar="DIR", help="output dataset folder")
    p.add_argument("--force", action="store_true", help="overwrite an existing dataset in --out")
    p.add_argument("--name", help="dataset name (default: the --out folder name)")
    p.add_argument("--genres", metavar="G1,G2,...",
                   help="the genre vocabulary this dataset labels (default: the genres present); "
                        "other genres are removed from titles")
    p.add_argument("--report", metavar="FILE.json", help="also write the import report as JSON")
    p.add_argument("--max-side", type=int, default=None, metavar="PX",
                   help="shrink posters whose longer side exceeds PX (default: keep the size)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes for poster conversion (default: all available cores)")


def add_arguments(p):
    sub = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    m = sub.add_parser("mmimdb", help="MM-IMDb folder (dataset/<id>.json + <id>.jpeg, optional split.json)",
                       description="Import the public MM-IMDb layout; its split.json is kept as the split.")
    m.add_argument("src", metavar="SRC", help="MM-IMDb folder (holding dataset/ and split.json)")
    _common(m)

    c = sub.add_parser("csv", help="CSV/TSV file plus a folder of images",
                       description="Import a CSV/TSV. Columns are guessed from common names unless named; "
                                   "image paths are relative to the CSV's folder unless --images is given.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("src", metavar="FILE", help="CSV or TSV file")
    c.add_argument("--images", metavar="DIR", help="folder the poster paths are relative to; posters named "
                                                   "<id>.jpg there are found without a poster column")
    for fld, flag in (("id", "--id-col"), ("title", "--title-col"), ("plot", "--plot-col"),
                      ("genres", "--genres-col"), ("poster", "--poster-col"), ("year", "--year-col"),
                      ("imdb_id", "--imdb-col"), ("kind", "--kind-col")):
        c.add_argument(flag, dest=f"col_{fld}", metavar="NAME", help=f"column holding the {fld.replace('_', ' ')}")
    c.add_argument("--sep", help="field separator (default: sniffed; use '\\t' for TSV)")
    c.add_argument("--genre-columns", choices=("auto", "wide", "none"), default="auto",
                   help="wide: one 0/1 column per genre (auto-detected when there is no genres column)")
    c.add_argument("--encoding", default="utf-8-sig", help="file encoding (default utf-8; UTF-16 with a BOM is recognised)")
    _common(c)

    j = sub.add_parser("jsonl", help="JSON-lines file with a field map",
                       description="Import any JSON-lines file; --map names the source key of each field "
                                   "(dotted keys reach nested objects); unmapped fields use common names.")
    j.add_argument("src", metavar="FILE", help="JSON-lines file")
    j.add_argument("--map", dest="field_map", metavar="FIELD=KEY,...",
                   help="fields: id, imdb_id, title, plot, genres, poster, year, kind")
    j.add_argument("--images", metavar="DIR", help="folder the poster paths are relative to (default: the file's folder)")
    _common(j)


def run(args) -> int:
    import sys
    from pathlib import Path

    from ..data import importers as imp
    from ..errors import ConfigError
    from ..io import write_json
    from ..paths import check_file_target

    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers: must be >= 1, got {args.workers}")
    if args.max_side is not None and args.max_side < 16:
        raise ConfigError(f"--max-side: must be >= 16 pixels, got {args.max_side}")
    genres = [g.strip() for g in args.genres.split(",") if g.strip()] if args.genres else None
    if args.genres is not None and not genres:
        raise ConfigError("--genres: empty list")
    if args.report:
        check_file_target(args.report, "the import report", "--report")  # before the dataset is written
    src = Path(args.src)
    images = getattr(args, "images", None)
    sources = [src, images]
    # check the destination before reading anything, so a refused --out costs nothing
    imp.check_out(args.out, sources, args.force)

    split = id_map = None
    if args.format == "mmimdb":
        raws, split, id_map = imp.read_mmimdb(src)
        source = f"mmimdb:{src.resolve().name}"
    elif args.format == "csv":
        columns = {fld: getattr(args, f"col_{fld}") for fld in imp.FIELDS if getattr(args, f"col_{fld}", None)}
        raws, info = imp.read_csv(src, images=images, columns=columns, sep=args.sep,
                                  genre_columns=args.genre_columns, encoding=args.encoding)
        delim = {"\t": "tab"}.get(info["delimiter"], repr(info["delimiter"]))
        used = ", ".join(f"{k}={v!r}" for k, v in info["columns"].items())
        wide = f"; wide genre columns: {', '.join(info['wide_genre_columns'])}" if info["wide_genre_columns"] else ""
        print(f"reading {src.name}: delimiter {delim}; columns {used}{wide}")
        source = f"csv:{src.name}"
    else:
        raws = imp.read_jsonl(src, field_map=imp.parse_field_map(args.field_map), images=images)
        source = f"jsonl:{src.name}"

    rep = imp.write_dataset(raws, args.out, source=source, name=args.name, genres=genres, force=args.force,
                            max_side=args.max_side, workers=args.workers, split=split, id_map=id_map,
                            sources=sources)
    print("\n".join(rep.lines()))
    if args.report:
        write_json(args.report, rep.to_dict())
        print(f"report written to {args.report}")
    if rep.imported == 0:
        print(f"warning: nothing imported from {src}; no dataset written to {args.out}", file=sys.stderr)
        return 1
    return 0
