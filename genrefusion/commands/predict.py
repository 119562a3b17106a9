"""Predict genres with a trained run, for one title or a whole batch.

  genrefusion predict RUN_DIR --poster poster.jpg --plot "A retired hitman..."
  genrefusion predict RUN_DIR --plot-file plot.txt --top-k 3
  genrefusion predict RUN_DIR --page saved/tt0111161.html
  genrefusion predict RUN_DIR --batch titles.csv --out predictions.jsonl
  genrefusion predict RUN_DIR --batch DATASET_DIR --out part2.csv --shard 2/4

One title: prints {"genres": [...most probable first], "scores": {...}, "thresholds": {...},
"used": ["poster", "plot"], "threshold_set": "both"} as JSON. Either input may be omitted; the
thresholds are the set tuned on dev titles with the same inputs (threshold_set: both, poster, plot,
or pooled for older bundles), or --threshold for every genre. Figures have 4 decimals, or as many more as
tell a score from its threshold, so a printed score never looks to clear a threshold it missed.

--page: a saved IMDb title page gives the plot, and the poster saved beside it as `collect imdb-pages` finds
it (<page>.jpg, <tt-id>.jpg or the <page>_files/ folder of a "save complete page"); --poster / --plot override
either. The output adds "page": the page's title, year, kind, IMDb id and its own genres, to compare with, and
"genres_unknown_to_model": those of its genres the model cannot predict (e.g. Game-Show for most runs). A page
whose poster is not saved beside it is predicted from its plot, with a warning.
Many pages: `genrefusion collect imdb-pages DIR --out DATASET`, then --batch DATASET.

Batch: INPUT is a dataset folder, a CSV/TSV (columns guessed or named as for `import csv`) or a
JSON-lines file; OUT is .jsonl or .csv (one row per input record, in input order: index, id, genres,
used, threshold_set, error, warning, and one score per genre). Titles that fail (unreadable poster, missing
file, no input) get an `error` and are counted; the batch never stops for them (but exits 1 when every title
failed). A CSV/JSONL title whose poster cell cannot be used (a URL, a file not found), or a dataset title whose
poster file is missing, but that has a plot is predicted from the plot, with the poster problem in `warning`. Each title is decided with the threshold set of the inputs it has (column threshold_set).

--shard K/N: only this shard's records. The input is cut into consecutive blocks of --batch-size
records and block j (0-based) goes to shard (j mod N) + 1, so the blocks are those of an unsharded
run and `genrefusion merge` of all N outputs is byte-identical to it. Each shard also writes
OUT.shard.json (what merge checks)."""
from __future__ import annotations

import argparse
import sys

from ..encoders import TEXT_RUNTIMES
from . import add_image_weights, in_range

POSITIVE_INT = in_range(int, 1, float("inf"), "a positive integer")


def add_arguments(p):
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("run_dir", metavar="RUN_DIR", help="a trained run folder (or its model bundle folder)")
    one = p.add_argument_group("one title")
    one.add_argument("--poster", metavar="FILE", help="poster image (any common format)")
    one.add_argument("--plot", metavar="TEXT", help="plot summary")
    one.add_argument("--plot-file", metavar="FILE", help="read the plot summary from a UTF-8 text file")
    one.add_argument("--page", metavar="FILE", help="a saved IMDb title page (.html): its plot and the poster "
                                                    "saved beside it (see above)")
    both = p.add_argument_group("decision (one title and batch)")
    both.add_argument("--top-k", type=POSITIVE_INT, metavar="K",
                      help="the K most probable genres, whatever the thresholds; with --threshold: at most K "
                           "of the genres above it")
    both.add_argument("--text-runtime", choices=TEXT_RUNTIMES, default=None,
                      help="how MiniLM plot features are computed: auto (ONNX Runtime when installed, else "
                           "PyTorch; identical results), torch, onnxruntime, or onnxruntime-int8 (faster, "
                           "features within cosine 0.99; see benchmarks/README.md)")
    both.add_argument("--threshold", type=in_range(float, 0.0, 1.0, "a number between 0 and 1"),
                      metavar="P",
                      help="one threshold for every genre instead of the tuned per-genre thresholds")
    add_image_weights(both)
    b = p.add_argument_group("batch")
    b.add_argument("--batch", metavar="INPUT", help="dataset folder, CSV/TSV or JSONL file of titles")
    b.add_argument("--out", metavar="OUT", help="output file: .jsonl or .csv (required with --batch)")
    b.add_argument("--batch-size", type=POSITIVE_INT, default=32, metavar="N",
                   help="titles per inference batch, and the shard block size (default 32)")
    b.add_argument("--shard", metavar="K/N", help="process only shard K of N (see above)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.add_argument("--images", metavar="DIR", help="CSV/JSONL: folder poster paths are relative to "
                                                   "(default: the input file's folder)")
    for fld, flag in (("id", "--id-col"), ("plot", "--plot-col"), ("poster", "--poster-col"),
                      ("imdb_id", "--imdb-col")):
        b.add_argument(flag, dest=f"col_{fld}", metavar="NAME", help=f"CSV: column holding the {fld.replace('_', ' ')}")
    b.add_argument("--sep", help="CSV: field separator (default: sniffed)")
    b.add_argument("--encoding", default="utf-8-sig", help="CSV: file encoding (default utf-8)")
    b.add_argument("--map", dest="field_map", metavar="FIELD=KEY,...", help="JSONL: source key of id/plot/poster")


def run(args) -> int:
    from ..errors import BadInput

    single = any(v is not None for v in (args.poster, args.plot, args.plot_file, args.page))
    if args.batch is not None:
        if single:
            raise BadInput("--batch cannot be combined with --poster/--plot/--plot-file/--page")
        if not args.out:
            raise BadInput("--batch needs --out (a .jsonl or .csv file)")
        return _run_batch(args)
    if args.out or args.shard:
        raise BadInput("--out and --shard go with --batch INPUT")
    if not single:
        raise BadInput("nothing to predict: give --poster and/or --plot/--plot-file, or --page FILE, or --batch "
                       "INPUT --out OUT")
    return _run_single(args)


def _load(run_dir, text_runtime=None, image_weights=None):
    from ..predict import GenreClassifier

    return GenreClassifier.load(run_dir, text_runtime=text_runtime, image_weights=image_weights)


def _read_plot(args) -> str | None:
    from pathlib import Path

    from ..errors import BadInput

    if args.plot is not None and args.plot_file is not None:
        raise BadInput("give --plot or --plot-file, not both")
    if args.plot_file is None:
        return args.plot
    path = Path(args.plot_file)
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise BadInput(f"{path}: plot file not found") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: is a folder, expected a text file") from None
    except UnicodeDecodeError as err:
        raise BadInput(f"{path}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise BadInput(f"{path}: cannot read ({err.strerror})") from None


def _run_single(args) -> int:
    import json

    from ..data.images import load_image
    from ..errors import BadInput

    plot = _read_plot(args)
    if plot is not None and not plot.strip():
        raise BadInput("plot: empty text" + (f" in {args.plot_file}" if args.plot_file else ""))
    poster_path, poster, page = args.poster, None, None
    if args.page is not None:
        page, page_plot, page_poster, page_poster_url = _read_title_page(args.page)
        page["plot_from_page"] = plot is None and page_plot is not None
        plot = plot if plot is not None else page_plot
        if poster_path is None and page_poster is not None:
            try:  # decoded once, here; as collect imdb-pages: a poster beside the page that is no image is dropped
                poster, poster_path = load_image(page_poster), page_poster
            except BadInput as err:
                if plot is None:
                    raise
                page["poster_problem"] = str(err)
                print(f"warning: {err}; predicting from the page's plot", file=sys.stderr)
        elif poster_path is None and page_poster_url and plot is not None:
            print(f"warning: no poster saved beside {args.page} (<page>.jpg, <tt-id>.jpg or <page>_files/); "
                  "predicting from the plot only", file=sys.stderr)
        if plot is None and poster_path is None:
            raise BadInput(f"{args.page}: the page has no plot and no poster is saved beside it; pass --poster "
                           "or --plot")
        page["poster"] = str(poster_path) if poster_path is not None else None
    # decode first: a bad poster is reported before the model loads
    if poster is None and poster_path is not None:
        poster = load_image(poster_path)
    clf = _load(args.run_dir, args.text_runtime, args.image_weights)
    out = clf.predict_one(poster=poster, plot=plot, top_k=args.top_k, threshold=args.threshold)
    if page is not None:  # the page's genres this model can never predict, so never to be matched
        page["genres_unknown_to_model"] = [g for g in page["genres"] if g not in clf.genres_]
        out["page"] = page
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0


def _read_title_page(path) -> tuple[dict, str | None, str | None, str | None]:
    """(what the page says of its title, its plot, the poster saved beside it, the page's poster URL) of a saved
    IMDb title page."""
    from pathlib import Path

    from ..collect.imdb_pages import find_local_poster, parse_title_page, read_page
    from ..errors import BadInput

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: " + ("is a folder; for many pages run `genrefusion collect imdb-pages` and "
                                      "predict --batch" if path.is_dir() else "page file not found"))
    info = parse_title_page(read_page(path), path.name)
    poster = find_local_poster(path, info.imdb_id, info.poster_url)
    plot = info.plot if info.plot and info.plot.strip() else None
    return ({"file": str(path), "imdb_id": info.imdb_id, "title": info.title, "year": info.year, "kind": info.kind,
             "genres": list(info.genres)},
            plot, str(poster) if poster is not None else None, info.poster_url)


def _run_batch(args) -> int:
    import os
    import sys
    from pathlib import Path

    from .. import batch as B
    from ..data.importers import FIELDS, parse_field_map
    from ..errors import BadInput
    from ..io import write_json
    from ..paths import check_file_target

    shard = B.parse_shard(args.shard)
    out = Path(args.out)
    B.output_format(out)  # refuse a bad extension before loading anything
    check_file_target(out, "batch predictions", "--out")  # and a folder there
    if out.exists() and Path(os.path.realpath(out)) == Path(os.path.realpath(args.batch)):
        raise BadInput(f"{out}: --out would overwrite the input")
    columns = {f: getattr(args, f"col_{f}") for f in FIELDS if getattr(args, f"col_{f}", None)}
    inp = B.open_input(args.batch, columns=columns or None, sep=args.sep, encoding=args.encoding,
                       field_map=parse_field_map(args.field_map), images=args.images)
    clf = _load(args.run_dir, args.text_runtime, args.image_weights)
    total = inp.count()
    label = f"predict {Path(args.batch).name}" + (f" shard {shard[0]}/{shard[1]}" if shard else "")
    bar = B.progress_bar(total, label, enabled=not args.no_progress)
    shown: list[str] = []

    def on_error(msg: str) -> None:
        if len(shown) < 20:  # the full list is in the output file; keep the terminal readable
            shown.append(msg)

    try:
        with B.BatchWriter(out, clf.genres_) as writer:
            stats = B.run_batch(clf, inp, writer, batch_size=args.batch_size, shard=shard, top_k=args.top_k,
                                threshold=args.threshold, progress=bar, on_error=on_error)
    finally:
        bar.close()
    if shard is not None:
        write_json(B.manifest_path(out), {
            "shard": shard[0], "of": shard[1], "block_size": args.batch_size, "input": str(args.batch),
            "input_digest": inp.digest(), "input_rows": stats.seen, "rows": stats.rows, "errors": stats.errors,
            "model": model_id(clf, args.run_dir), "top_k": args.top_k, "threshold": args.threshold})
    for msg in shown:
        print(f"failed: {msg}", file=sys.stderr)
    if stats.errors > len(shown):
        print(f"... and {stats.errors - len(shown)} more failures (see the error column of {out})", file=sys.stderr)
    warned = f" ({stats.warnings} without their poster: see the warning column)" if stats.warnings else ""
    print(f"wrote {stats.rows} rows to {out}: {stats.ok} predicted{warned}, {stats.errors} failed"
          + (f" (shard {shard[0]}/{shard[1]} of {stats.seen} records)" if shard else ""))
    if stats.errors and not stats.ok:  # a script must not carry on with a file of errors only
        print(f"error: no title could be predicted (all {stats.errors} failed; see the error column of {out})",
              file=sys.stderr)
        return 1
    return 0


def model_id(clf, run_dir) -> str:
    """What identifies the model across machines: the genres + thresholds it decides with, hashed
    (a path would differ between the nodes of a sharded job)."""
    import hashlib
    import json

    import numpy as np

    blob = json.dumps([list(clf.genres_), np.round(np.asarray(clf.thresholds_, float), 9).tolist()]
                      + ([clf.threshold_sets_.to_json(9)] if clf.threshold_sets_.sets else []))
    return hashlib.sha1(blob.encode()).hexdigest()[:16]
