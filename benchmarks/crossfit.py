"""Cross-fitting against one dev split, measured on dev only (issue 16's fused micro-F1 on titles with both inputs).

    python benchmarks/crossfit.py --seeds 0 1 2            # folds 5, one member per fold model

A run tunes its thresholds (and stops early, and picks the lexical blend weight) on its dev split: 10 % of the
titles, ~130 of them with both inputs, so each genre's cut point there rests on a handful of positives. Cross-
fitting instead trains K models, each on K - 1 folds of train + dev, and tunes the thresholds on every title's
out-of-fold score (~8x the titles); it serves the K models' mean.

Both protocols are run inside the *training* part of the main job's split for each seed, and read on that split's
**dev** titles, which neither sees (the test split is not loaded at all):

- ``holdout``: the product's protocol scaled to the pool: one run on 7/8 of it, dev = the other 1/8
  (``members`` as configured, 3 by default);
- ``crossfit``: ``--folds`` runs (``--members`` each), fold k as each run's dev; the thresholds tuned on the
  pooled out-of-fold scores (the same ``tune_model_thresholds`` a run uses), the fold models' scores averaged.

Prints micro-/macro-F1 of the fused model on the dev titles with both inputs (with 95 % bootstrap intervals)
and over all dev titles, and mAP, for both, plus two halves of the change: the fold ensemble with fold 0's own
thresholds, and fold 0's model with the out-of-fold thresholds. Writes ``benchmarks/crossfit.json``; runs go to
``benchmarks/out/crossfit/seed<S>/`` and are reused when finished.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

HOLDOUT_FOLDS = 8  # 1/8 of the pool as dev: the product's 10 % dev beside 70 % train


def fold_split(names: list[str], pool: list[str], dev: set[str], evaluated: list[str]):
    from genrefusion.data.split import Split

    return Split(seed=None, dev=None, test=None, datasets=names,
                 parts={"train": [k for k in pool if k not in dev], "dev": [k for k in pool if k in dev],
                        "test": list(evaluated)})


def train_fold(run: Path, split, data: list[Path], overrides: dict) -> dict:
    from genrefusion.config import load_config
    from genrefusion.train import main

    run.mkdir(parents=True, exist_ok=True)
    if not (run / "split.json").is_file():
        split.save(run / "split.json")  # train.main uses a split it finds in the run folder
    # each run is one train/dev run (one fold, or the holdout), whatever the default of train.crossfit
    return main(data, run, load_config(overrides={**overrides, "train.crossfit": 0}), resume=True, progress=False,
                write_report=False)


def load_scores(path: Path, model: str = "fused") -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {"keys": z["keys"], "genres": list(z["genres"]), "Y": z["Y"], "M": z["M"], "S": z[f"S_{model}"],
                "combination": z["combination"]}


def figures(name: str, Y, M, S, combo, thresholds, genres) -> dict:
    from genrefusion.evaluate import score_models
    from genrefusion.thresholds import inputs_of

    img, txt = inputs_of(combo)
    sc = score_models(Y, M, {name: S}, {name: thresholds}, img, txt, ["movie"] * len(Y), genres)
    both, alls = sc["models_both"][name], sc["models"][name]
    return {"micro_f1_both": both["micro_f1"], "micro_f1_both_ci95": both.get("ci95", {}).get("micro_f1"),
            "macro_f1_both": both["macro_f1"], "mAP_both": both["mAP"], "micro_f1_all": alls["micro_f1"],
            "macro_f1_all": alls["macro_f1"], "mAP_all": alls["mAP"], "n_both": int((combo == "both").sum())}


def run_seed(seed: int, data: list[Path], out: Path, folds: int, members: int) -> dict:
    from genrefusion.config import load_config
    from genrefusion.data.dataset import open_datasets
    from genrefusion.data.split import make_folds, make_split
    from genrefusion.evaluate import tune_model_thresholds
    from genrefusion.thresholds import inputs_of

    cfg = load_config(overrides={"seed": seed})
    datasets = open_datasets(data)
    names = [ds.name for ds in datasets]
    base = make_split(datasets, dev=cfg.data.dev, test=cfg.data.test, seed=seed)
    pool, evaluated = base.ids("train"), base.ids("dev")
    pool_set = set(pool)
    rule = cfg.train.threshold_rule_spec
    t0 = time.perf_counter()

    # the product's protocol inside the pool
    hold_dev = set(make_folds(datasets, HOLDOUT_FOLDS, seed, pool_set.__contains__)[0])
    train_fold(out / "holdout", fold_split(names, pool, hold_dev, evaluated), data, {"seed": seed})
    hold = load_scores(out / "holdout" / "test_scores.npz")
    hold_dev_scores = load_scores(out / "holdout" / "dev_scores.npz")
    genres = hold["genres"]
    thr_hold, _ = tune_model_thresholds("fused", hold_dev_scores["Y"], hold_dev_scores["S"], hold_dev_scores["M"],
                                        *inputs_of(hold_dev_scores["combination"]), genres, rule)
    t_hold = time.perf_counter() - t0

    # cross-fitting: K runs, fold k as dev
    oof, ev = [], []
    for k, fold in enumerate(make_folds(datasets, folds, seed, pool_set.__contains__)):
        run = out / f"fold{k}of{folds}_m{members}"
        train_fold(run, fold_split(names, pool, set(fold), evaluated), data,
                   {"train.members": members, "seed": seed + 1000 * k})
        oof.append(load_scores(run / "dev_scores.npz"))
        ev.append(load_scores(run / "test_scores.npz"))
    for s in oof + ev:
        if s["genres"] != genres:
            raise SystemExit(f"seed {seed}: a fold's genres differ from the holdout run's ({len(s['genres'])} "
                             f"vs {len(genres)}); raise data.min_genre_count's margin or use fewer folds")
    Y, M, S = (np.concatenate([s[f] for s in oof]) for f in ("Y", "M", "S"))
    combo = np.concatenate([s["combination"] for s in oof])
    thr_oof, info = tune_model_thresholds("fused", Y, S, M, *inputs_of(combo), genres, rule)
    f0_dev = oof[0]
    thr_f0, _ = tune_model_thresholds("fused", f0_dev["Y"], f0_dev["S"], f0_dev["M"],
                                      *inputs_of(f0_dev["combination"]), genres, rule)
    S_mean = np.mean([s["S"] for s in ev], axis=0)
    Ye, Me, ce = hold["Y"], hold["M"], hold["combination"]
    rec = {"seed": seed, "pool_titles": len(pool), "dev_titles_read": len(evaluated), "folds": folds,
           "members": members, "holdout_dev_titles": len(hold_dev),
           "oof_titles": int(len(Y)), "oof_titles_both": int((combo == "both").sum()),
           "holdout_dev_titles_both": int((hold_dev_scores["combination"] == "both").sum()),
           "holdout": figures("fused", Ye, Me, hold["S"], ce, thr_hold, genres),
           "crossfit": figures("fused", Ye, Me, S_mean, ce, thr_oof, genres),
           "ensemble_fold0_thresholds": figures("fused", Ye, Me, S_mean, ce, thr_f0, genres),
           "fold0_model_oof_thresholds": figures("fused", Ye, Me, ev[0]["S"], ce, thr_oof, genres),
           "fold0_alone": figures("fused", Ye, Me, ev[0]["S"], ce, thr_f0, genres),
           "threshold_rule": info.get("rule"),
           "seconds": {"holdout": round(t_hold, 1), "total": round(time.perf_counter() - t0, 1)}}
    return rec


def main(argv=None) -> int:
    from genrefusion.io import write_json
    from genrefusion.paths import shipped_data_dir

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--members", type=int, default=1, help="ensemble members of each fold model (default 1)")
    p.add_argument("--data", type=Path, default=None, help="datasets folder (default: the shipped one)")
    p.add_argument("--out", type=Path, default=HERE / "out" / "crossfit")
    a = p.parse_args(argv)
    root = a.data or shipped_data_dir()
    data = sorted(q.parent for q in Path(root).glob("*/titles.jsonl"))
    if not data:
        p.error(f"--data: no dataset (a folder with titles.jsonl) in {root}")
    path = HERE / "crossfit.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    for seed in a.seeds:
        rec = run_seed(seed, data, a.out / f"seed{seed}", a.folds, a.members)
        results[f"seed{seed}_folds{a.folds}_m{rec['members']}"] = rec
        write_json(path, results, indent=1)  # atomic: a kill keeps the seeds already recorded
        for k in ("holdout", "crossfit", "ensemble_fold0_thresholds", "fold0_model_oof_thresholds", "fold0_alone"):
            f = rec[k]
            print(f"seed {seed} {k:28s} both: micro-F1 {f['micro_f1_both']:.4f} {f['micro_f1_both_ci95']} macro-F1 "
                  f"{f['macro_f1_both']:.4f} mAP {f['mAP_both']:.4f} | all: micro-F1 {f['micro_f1_all']:.4f} "
                  f"macro-F1 {f['macro_f1_all']:.4f} mAP {f['mAP_all']:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    from genrefusion.errors import one_line_errors

    with one_line_errors():
        raise SystemExit(main())
