"""How much a run's models lose when the posters arrive degraded, as real titles' posters often do.

    python benchmarks/degraded_posters.py RUN [RUN ...] [--part dev|test] [--draws 3] [--seed 0]

For every title of the run's ``--part`` split (dev by default: the figures compare model choices) that has a
poster, the fused and poster models score it twice through ``GenreClassifier``: with the shipped poster, and
with degraded views of it (``encoders.augment.poster_view``: a random crop, a flip, a squash, a thumbnail of
96-160 px scaled back up, a JPEG re-encode; seeds unrelated to any training view), ``--draws`` of them per
poster (their figures averaged: one draw moves mAP on ~140 titles by ~0.02). mAP and micro-F1 (the
bundle's own threshold sets, picked by the inputs supplied) on the titles with a poster and a plot and on the
poster-only ones. Writes ``benchmarks/degraded_posters.json``; the table is in benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genrefusion.io import read_json, write_json  # noqa: E402

SEED_BASE = 7_000_000  # degraded-view seeds: far from the crc32-derived seeds of training views in practice


def part_titles(run: Path, cfg: dict, part: str, genres: list[str]):
    """(posters, plots, Y, M) of the run's ``part`` titles that have a poster, in the bundle's genre order."""
    from genrefusion.data.corpus import load_corpus
    from genrefusion.data.dataset import open_datasets
    from genrefusion.data.split import Split

    corpus = load_corpus(open_datasets(cfg["data"]), Split.load(run / "split.json"), genres=genres)
    rows = [i for i in corpus.rows(part) if corpus.posters[i] is not None]
    return ([corpus.posters[i] for i in rows], [corpus.plots[i] for i in rows], corpus.Y[rows], corpus.M[rows])


def score(clf, posters, plots, Y, M) -> dict:
    """mAP and micro-F1 on titles with both inputs and on poster-only titles."""
    from genrefusion.decision import used_inputs
    from genrefusion.metrics import masked_map, multilabel_metrics

    titles = [{"poster": p, "plot": t} for p, t in zip(posters, plots)]
    S = clf.predict_proba(titles)
    used = [used_inputs(p, t) for p, t in zip(posters, plots)]
    picked = clf.decide(S, used=used)
    P = np.array([[g in row for g in clf.genres_] for row in picked])
    has_plot = np.array(["plot" in u for u in used])  # the titles decided with a plot
    out = {}
    for name, sel in (("both", has_plot), ("poster_only", ~has_plot)):
        if sel.any():
            out[name] = {"titles": int(sel.sum()), "mAP": round(float(masked_map(Y[sel], S[sel], M[sel])), 4),
                         "micro_f1": round(multilabel_metrics(Y[sel], P[sel], M[sel])["micro_f1"], 4)}
    return out


def mean_scores(runs: list[dict]) -> dict:
    """The figures of several draws, averaged (title counts are the same in each)."""
    return {sub: {k: (v if k == "titles" else round(float(np.mean([r[sub][k] for r in runs])), 4))
                  for k, v in runs[0][sub].items()} for sub in runs[0]}


def main(argv=None) -> int:
    from PIL import Image

    from genrefusion.encoders.augment import poster_view
    from genrefusion.predict import GenreClassifier

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--part", choices=("dev", "test"), default="dev")
    p.add_argument("--draws", type=int, default=3, help="degraded views per poster (figures averaged)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "degraded_posters.json")
    args = p.parse_args(argv)
    results = {}
    for run in args.runs:
        models = {name: GenreClassifier.load(run, model=name) for name in ("fused", "poster")}
        cfg = read_json(run / "config.json", "run config")
        posters, plots, Y, M = part_titles(run, cfg, args.part, models["fused"].genres_)
        clean = [Image.open(x).convert("RGB") for x in posters]
        draws = [[poster_view(im, SEED_BASE + 100_000 * (args.seed * args.draws + d) + k) for k, im in enumerate(clean)]
                 for d in range(args.draws)]
        row = {"poster_views": cfg["config"]["train"].get("poster_views", 0)}  # runs before the option: 0
        for model, m in models.items():
            text = plots if model == "fused" else [None] * len(plots)
            row[model] = {"clean": score(m, clean, text, Y, M),
                          "degraded": mean_scores([score(m, ims, text, Y, M) for ims in draws])}
        results[str(run)] = row
        for model in ("fused", "poster"):
            for sub in row[model]["clean"]:
                c, d = row[model]["clean"][sub], row[model]["degraded"][sub]
                print(f"{run.name:20s} {model:6s} {sub:11s} ({c['titles']:4d}) mAP {c['mAP']:.4f} -> {d['mAP']:.4f}   "
                      f"micro-F1 {c['micro_f1']:.4f} -> {d['micro_f1']:.4f}", flush=True)
    write_json(args.out, {"part": args.part, "draws": args.draws, "seed": args.seed, "runs": results})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from genrefusion.errors import one_line_errors

    with one_line_errors():
        raise SystemExit(main())
