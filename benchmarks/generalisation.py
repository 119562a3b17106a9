"""Leave-one-dataset-out generalisation: the number to improve (issue 16), not the shipped test split.

    python benchmarks/generalisation.py                       # the three held-out datasets, default config
    python benchmarks/generalisation.py --label before        # store the rows under another label
    python benchmarks/generalisation.py --set train.modality_dropout=0.5 --label md05 --no-json
    python benchmarks/generalisation.py --readme              # also refresh the table in README.md

For each held-out dataset (default: cornell_tmdb, imdb_top250, netflix_tv) the model is trained with the public
``genrefusion.train.main`` on the *other* shipped datasets, minus every title that shares an ``imdb_id`` (or, for
sources without ids, a normalised title and year) with the held-out one (``genrefusion.data.holdout``). The
held-out dataset is the run's test part, so the run's own test metrics -- every model and every baseline, on
exactly the same titles, with thresholds tuned on the training datasets' dev part -- are the held-out figures.

Prints the table (micro-F1, macro-F1, mAP of poster/plot/fused and the baselines), writes
``benchmarks/generalisation.json`` (one entry per ``--label``; other labels are kept) and, with ``--readme``,
the table between the ``generalisation`` markers of README.md. Runs go to ``benchmarks/out/generalisation/``;
a finished run is reused when its config and data are unchanged (``--fresh`` retrains). Features come from the
shared cache, so with a warm cache each held-out dataset takes about a minute on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genrefusion.io import read_json, write_json  # noqa: E402

HELD_OUT = ("cornell_tmdb", "imdb_top250", "netflix_tv")
MODELS = ("fused", "poster", "plot", "linear_probe_fused", "linear_probe_poster", "linear_probe_plot", "tfidf_logreg",
          "always_negative")
LABELS = {"fused": "fused", "poster": "poster only", "plot": "plot only",
          "linear_probe_fused": "linear probe (poster + plot features)", "linear_probe_poster": "linear probe (poster)",
          "linear_probe_plot": "linear probe (plot)", "tfidf_logreg": "tf-idf + LR", "always_negative": "always negative"}
FIGURES = ("micro_f1", "macro_f1", "mAP")
JSON_PATH = ROOT / "benchmarks" / "generalisation.json"
OUT = ROOT / "benchmarks" / "out" / "generalisation"
# posters as real catalogues serve them: longer side 128 px, JPEG quality 50 (the held-out titles' own posters)
SMALL_SIDE, SMALL_QUALITY = 128, 50


def _round(v):
    return None if v is None else round(float(v), 4)


def _figures(models: dict) -> dict:
    """micro-/macro-F1 and mAP of each model, with the F1s' 95 % bootstrap intervals (``<figure>_ci95``)."""
    return {k: {**{f: _round(v.get(f)) for f in FIGURES},
                **{f"{f}_ci95": (v.get("ci95") or {}).get(f) for f in FIGURES if (v.get("ci95") or {}).get(f)}}
            for k, v in models.items() if isinstance(v, dict)}


def run_held_out(name: str, data_root: Path, overrides: dict, out_root: Path, fresh: bool) -> dict:
    """Train on every shipped dataset but ``name`` (overlap removed) and score ``name``; the fold's record."""
    from genrefusion.config import load_config
    from genrefusion.data.dataset import open_datasets
    from genrefusion.data.holdout import holdout_split
    from genrefusion.train import main as train_main

    paths = sorted(p.parent for p in data_root.glob("*/titles.jsonl"))
    held = [p for p in paths if p.name == name]
    if not held:
        raise SystemExit(f"{data_root}: no dataset {name!r}")
    train_paths = [p for p in paths if p.name != name]
    cfg = load_config(None, overrides)
    run_dir = out_root / name
    if fresh:
        shutil.rmtree(run_dir, ignore_errors=True)
    train_ds, held_ds = open_datasets(train_paths), open_datasets(held)
    split, dropped = holdout_split(train_ds, held_ds, dev=cfg.data.dev, seed=cfg.seed)
    if (run_dir / "config.json").is_file():
        prev = read_json(run_dir / "config.json", "run config")
        if prev.get("config") != cfg.to_dict() or prev.get("data") != [str(p.resolve()) for p in
                                                                          train_paths + held]:
            shutil.rmtree(run_dir)  # another config or data: start over rather than refuse
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "split.json").is_file():
        split.save(run_dir / "split.json")  # train.main uses a split it finds in the run folder
    t0 = time.perf_counter()
    result = train_main(train_paths + held, run_dir, cfg, resume=True, progress=False, write_report=False)
    wall = round(time.perf_counter() - t0, 1)
    rec = {"held_out": name, "trained_on": [p.name for p in train_paths], "dropped_overlap": dropped,
           "train_titles": result["split"]["train"], "dev_titles": result["split"]["dev"],
           "test_titles": result["split"]["test"], "test_with_both": result["split"].get("test_with_poster_and_plot"),
           "genres_scored": _scored_genres(result), "wall_s": wall, "timings": result.get("timings", {}),
           "models": _figures(result.get("models", {})), "models_both": _figures(result.get("models_both", {})),
           "probe_verdicts": result.get("probe_verdicts", [])}
    for key in ("by_kind", "by_combination"):  # breakdowns (movie / tv / unknown; poster / plot / both)
        if isinstance(result.get(key), dict):
            rec[key] = {part: _figures(m) for part, m in result[key].items() if isinstance(m, dict)}
    return rec


def small_poster_copy(src: Path, dst: Path) -> Path:
    """A copy of dataset ``src`` whose posters are shrunk to ``SMALL_SIDE`` px and JPEG-encoded at
    ``SMALL_QUALITY`` (scratch data under benchmarks/out; the shipped data is never written)."""
    import io

    from genrefusion.data.dataset import Dataset, DatasetWriter
    from genrefusion.data.images import load_image

    if (dst / "titles.jsonl").is_file():
        return dst
    ds = Dataset(src)
    with DatasetWriter(dst, name=f"{ds.name}_small", genres=ds.labelled_genres, source=f"{ds.name}, posters "
                       f"shrunk to {SMALL_SIDE} px, JPEG q{SMALL_QUALITY}", overwrite=True) as w:
        for t in ds.titles():
            path = ds.poster_path(t)
            if path is None:
                w.add(t)
                continue
            im = load_image(path)
            im.thumbnail((SMALL_SIDE, SMALL_SIDE))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=SMALL_QUALITY)
            w.add(t, poster=buf.getvalue())
    return dst


def evaluate_small_posters(name: str, data_root: Path, out_root: Path) -> dict:
    """The ``name`` run scored on a copy of ``name`` with small, re-encoded posters: every model and baseline
    ``genrefusion evaluate --data`` reports (the models read the small posters; the plots are unchanged)."""
    from genrefusion.evaluate import evaluate_run
    from genrefusion.paths import cache_dir

    small = small_poster_copy(data_root / name, out_root.parent / "datasets" / f"{name}_small")
    res = evaluate_run(out_root / name, data=[small], progress=False, cache_dir=cache_dir() / "features")
    return {"held_out": f"{name} (posters {SMALL_SIDE} px, JPEG q{SMALL_QUALITY})", "test_titles": res["n_titles"],
            "models": _figures(res.get("models", {})), "models_both": _figures(res.get("models_both", {})),
            "probe_verdicts": res.get("probe_verdicts", [])}


def _scored_genres(result: dict) -> list[str]:
    per = (result.get("models", {}).get("always_negative") or {}).get("per_genre") or {}
    return sorted(g for g, v in per.items() if (v or {}).get("support"))


def table(folds: dict, label: str, models=MODELS) -> str:
    """Markdown: one row per model, micro-F1 / macro-F1 / mAP per held-out dataset."""
    names = list(folds)
    head = "| model | " + " | ".join(f"{n} micro-F1 | macro-F1 | mAP" for n in names) + " |"
    rows = [f"*{label}*", "", head, "|---|" + "---|---|---|" * len(names)]
    for m in models:
        cells = []
        for n in names:
            v = folds[n]["models"].get(m)
            cells += ["–"] * 3 if v is None else [("–" if v[f] is None else f"{v[f]:.3f}") for f in FIGURES]
        if any(c != "–" for c in cells):
            name = f"**{LABELS[m]}**" if m == "fused" else LABELS[m]
            rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def verdict(folds: dict) -> list[str]:
    """The issue's bar, per held-out dataset: fused > tf-idf and > linear probe, plot-only > tf-idf (micro-F1)."""
    out = []
    for n, f in folds.items():
        m = {k: (v or {}).get("micro_f1") for k, v in f["models"].items()}
        for a, b in (("fused", "tfidf_logreg"), ("fused", "linear_probe_fused"), ("plot", "tfidf_logreg")):
            if m.get(a) is None or m.get(b) is None:
                continue
            ok = m[a] > m[b]
            ci = next((v.get("difference_ci95") for v in f.get("probe_verdicts") or []
                       if v["model"] == a and v["probe"] == b and v["titles"] == "all"), None)
            out.append(f"{n}: {LABELS[a]} {m[a]:.3f} {'>' if ok else '<='} {LABELS[b]} {m[b]:.3f}"
                       + (f" (paired 95% interval of the difference {ci[0]:+.3f} to {ci[1]:+.3f})" if ci else "")
                       + ("" if ok else "  <- NOT MET"))
    return out


def readme_block(entries: dict) -> str:
    parts = []
    for label, e in entries.items():
        parts.append(table(e["folds"], f"{label} ({e.get('commit', '?')}, {e.get('date', '?')})"))
    return "\n\n".join(parts)


def write_readme(entries: dict, path: Path = ROOT / "README.md") -> None:
    from benchmarks.markers import replace_block

    replace_block(path, "generalisation", readme_block(entries), required=True)


def _commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def parse_args(argv=None):
    from genrefusion.commands.train import parse_set

    ap = argparse.ArgumentParser(description="leave-one-dataset-out generalisation benchmark (issue 16)")
    ap.add_argument("--data", type=Path, help="folder holding the datasets (default: the shipped ones)")
    ap.add_argument("--held-out", nargs="+", default=list(HELD_OUT), metavar="NAME")
    ap.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                    help="config override for every fold (as genrefusion train --set)")
    ap.add_argument("--label", default="after", help="name of this entry in the JSON (default: after)")
    ap.add_argument("--out", type=Path, default=OUT, help="where the runs go (default benchmarks/out/...)")
    ap.add_argument("--json", type=Path, default=JSON_PATH)
    ap.add_argument("--no-json", action="store_true", help="print only (experiments)")
    ap.add_argument("--readme", action="store_true", help="refresh the table in README.md from the JSON")
    ap.add_argument("--fresh", action="store_true", help="retrain even when a finished run matches")
    ap.add_argument("--no-small-posters", action="store_true",
                    help=f"skip scoring the cornell_tmdb run on {SMALL_SIDE} px posters")
    args = ap.parse_args(argv)
    args.overrides = parse_set(args.overrides)
    return args


def main(argv=None) -> int:
    from genrefusion.paths import shipped_data_dir

    args = parse_args(argv)
    data_root = (args.data or shipped_data_dir()).resolve()
    out_root = args.out / args.label
    t0 = time.perf_counter()
    folds = {}
    for name in args.held_out:
        print(f"[{name}] training on the other datasets ...", flush=True)
        folds[name] = run_held_out(name, data_root, args.overrides, out_root, args.fresh)
        print(f"[{name}] {folds[name]['wall_s']} s; dropped overlap: {folds[name]['dropped_overlap']}", flush=True)
    if "cornell_tmdb" in folds and not args.no_small_posters:
        print("[cornell_tmdb] scoring the same run on small, re-encoded posters ...", flush=True)
        folds["cornell_tmdb_small"] = evaluate_small_posters("cornell_tmdb", data_root, out_root)
    import torch

    entry = {"label": args.label, "commit": _commit(), "date": time.strftime("%Y-%m-%d"),
             "overrides": args.overrides, "wall_s": round(time.perf_counter() - t0, 1),
             "machine": {"cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()},
             "folds": folds}
    print()
    print(table(folds, args.label))
    print()
    print("\n".join(verdict(folds)))
    if not args.no_json:
        entries = json.loads(args.json.read_text()) if args.json.is_file() else {}
        entries[args.label] = entry
        write_json(args.json, entries)
        print(f"\nwrote {args.json} ({args.label}); {entry['wall_s']} s in all")
        if args.readme:
            write_readme(entries)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
