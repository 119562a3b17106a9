"""Explain one title's prediction: which input, which plot words, which poster regions drove each genre.

  genrefusion explain RUN_DIR --poster poster.jpg --plot "A retired hitman..."
  genrefusion explain RUN_DIR --poster poster.jpg --plot-file plot.txt --genre Comedy --genre Drama --out why/

Prints, per genre (default: the predicted ones, else the 3 most probable), the probability with both inputs,
with the poster only and with the plot only, and the words (or phrases, for long plots) that raised it most.
Writes into --out (default ./explanation): explain.json (weights per word, a grid of weights per poster
region; shapes in `genrefusion.explain`), poster-GENRE.png overlays (orange: the region raised the genre,
blue: lowered it; the dimmed part is outside the square the model sees) and explain.html (self-contained),
replacing an earlier run's files there.
Every weight is measured on the model by deleting the word or blanking the region (log-odds fall)."""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from ..encoders import TEXT_RUNTIMES
from . import in_range


def add_arguments(p):
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("run_dir", metavar="RUN_DIR", help="a trained run folder (or its model bundle folder)")
    p.add_argument("--poster", metavar="FILE", help="poster image (any common format)")
    p.add_argument("--plot", metavar="TEXT", help="plot summary")
    p.add_argument("--plot-file", metavar="FILE", help="read the plot summary from a UTF-8 text file")
    p.add_argument("--genre", action="append", metavar="G", dest="genres",
                   help="explain this genre (repeatable; default: the predicted genres, else the top 3)")
    p.add_argument("--top-k", type=in_range(int, 1, float("inf"), "a positive integer"), metavar="K",
                   help="explain the K most probable genres (instead of the predicted ones)")
    p.add_argument("--top-words", type=in_range(int, 0, 100, "an integer from 0 to 100"), default=5, metavar="N",
                   help="words/phrases listed per genre (default 5)")
    p.add_argument("--out", metavar="DIR", default="explanation",
                   help="folder for explain.json, explain.html and the overlays (default ./explanation)")
    p.add_argument("--json", action="store_true", help="print explain.json instead of the table")
    p.add_argument("--text-runtime", choices=TEXT_RUNTIMES, default=None,
                   help="how MiniLM plot features are computed (as for predict)")


OVERLAY = re.compile(r"poster-[A-Za-z0-9_-]+\.png")


def file_stem(genre: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", genre).strip("_") or "genre"


def check_out(out) -> Path:
    """``--out`` checked before the model is loaded: a folder, or one that can be made (a file on the way is one
    line now rather than a traceback after the work)."""
    from ..errors import GenreFusionError
    from ..paths import check_writable_target

    out = Path(out)
    check_writable_target(out / "explain.json", "the explanation")
    near = next(p for p in (out, *out.parents) if p.exists())
    if not near.is_dir():
        raise GenreFusionError(f"--out {out}: {'it' if near == out else near} is a file, not a folder")
    return out


def _previous_overlays(out: Path) -> set[str]:
    """The overlay files an earlier explain run wrote into ``out``, as its explain.json names them."""
    try:
        names = {g.get("overlay_file") for g in json.loads((out / "explain.json").read_text("utf-8"))["genres"]}
    except (OSError, ValueError, LookupError, TypeError, AttributeError):
        return set()
    return {n for n in names if isinstance(n, str) and OVERLAY.fullmatch(n)}


def write_outputs(expl: dict, out) -> dict:
    """explain.json (overlays as file names), poster-GENRE.png files and explain.html into ``out``, replacing an
    earlier run's (its overlays for other genres are removed); returns the JSON written."""
    import base64
    import copy

    from ..errors import GenreFusionError
    from ..explain.render import page
    from ..io import write_bytes, write_json, write_text

    out = check_out(out)
    doc = copy.deepcopy(expl)
    try:
        out.mkdir(parents=True, exist_ok=True)
        stale = _previous_overlays(out)
        for e in doc["genres"]:
            png = e.pop("overlay_png", None)
            e["overlay_file"] = None
            if png:
                e["overlay_file"] = f"poster-{file_stem(e['genre'])}.png"
                write_bytes(out / e["overlay_file"], base64.b64decode(png))
        write_json(out / "explain.json", doc)
        write_text(out / "explain.html", page(expl))
        for name in stale - {e["overlay_file"] for e in doc["genres"]}:
            (out / name).unlink(missing_ok=True)
    except OSError as err:
        raise GenreFusionError(f"--out {out}: cannot write the explanation ({err.strerror or err})") from None
    return doc


def run(args) -> int:
    from ..data.images import load_image
    from ..errors import BadInput
    from ..explain.render import table
    from .predict import _load, _read_plot

    plot = _read_plot(args)
    if args.poster is None and plot is None:
        raise BadInput("nothing to explain: give --poster and/or --plot/--plot-file")
    if plot is not None and not plot.strip():
        raise BadInput("plot: empty text" + (f" in {args.plot_file}" if args.plot_file else ""))
    poster = load_image(args.poster) if args.poster is not None else None  # a bad poster fails before loading
    check_out(args.out)  # so does an --out that cannot be a folder
    clf = _load(args.run_dir, args.text_runtime)
    expl = clf.explain(poster=poster, plot=plot, genres=args.genres, top_k=args.top_k, top_words=args.top_words)
    doc = write_outputs(expl, args.out)
    if args.json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        print(table(expl))
        print(f"wrote {args.out}/explain.json, explain.html"
              + (" and the poster overlays" if expl["poster"] is not None else ""))
    return 0
