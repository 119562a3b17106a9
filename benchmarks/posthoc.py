"""Post-hoc decision rules on a run's out-of-fold scores, read on dev only (issue 16, ninth round).

    python benchmarks/posthoc.py runs/demo benchmarks/out/variants/default_seed{1,2}

With cross-fitting a run keeps every model's out-of-fold score of every train + dev title (``dev_scores.npz``:
~13k titles, ~1,000 with both inputs), enough to fit a second stage on them. Each variant below is fitted on four
fifths of those titles, the thresholds are tuned there as a run tunes them (``evaluate.tune_model_thresholds``),
and the held-out fifth is decided (5 folds, 3 repetitions, as ``evaluate.cross_validated_f1``). The test split is
not read. Prints micro-/macro-F1 over all titles and per input combination, and writes ``benchmarks/posthoc.json``.

    python benchmarks/posthoc.py --held-out benchmarks/out/generalisation/after/*

reads the leave-one-dataset-out runs instead (``benchmarks/generalisation.py``): each variant fitted on all of a
run's out-of-fold titles, read on its held-out dataset; writes ``benchmarks/posthoc_held_out.json``.

- ``default``: the fused model's scores as served.
- ``stack_shared``: per input combination, one logistic regression over the logits of the fused model, the tf-idf
  model, the linear probes and the poster / plot models, plus a bias per genre (a calibration per genre).
- ``stack_genre``: the same features, one logistic regression per genre and combination.
- ``label_chain``: per genre, a logistic regression over all genres' fused logits (and tf-idf's), so that
  co-occurring genres inform each other.
- ``at_least_one``: a title left with no genre gets its highest-scoring one (relative to its cut point).
- ``cap_3`` / ``cap_4``: at most 3 / 4 genres a title (IMDb pages list at most three), the highest above their cut.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

COMBOS = ("both", "poster", "plot")
# the scores each combination's stacker reads (a model that cannot read the title's inputs is left out)
STACK_FEATURES = {"both": ("fused", "tfidf_logreg", "linear_probe_fused", "poster", "plot"),
                  "poster": ("fused", "linear_probe_fused", "poster", "linear_probe_poster"),
                  "plot": ("fused", "tfidf_logreg", "plot", "linear_probe_fused", "linear_probe_plot")}


def logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-5, 1 - 1e-5)
    return np.log(p / (1 - p))


def _lr(C: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=3000)


def stack(z: dict, fit: np.ndarray, per_genre: bool, C: float, target: dict | None = None) -> np.ndarray:
    """Stacked scores of the ``target`` titles (default: ``z``'s), the stackers fitted on ``z``'s ``fit`` titles."""
    t = z if target is None else target
    S, Y, M = t["S_fused"].astype(np.float64).copy(), z["Y"], z["M"].astype(bool)
    G = Y.shape[1]
    for c, names in STACK_FEATURES.items():
        rows, out = z["combination"] == c, t["combination"] == c
        if not rows.any() or not out.any():
            continue
        X = np.stack([logit(z[f"S_{n}"][rows]) for n in names], -1)  # [titles, genres, features]
        Xt = np.stack([logit(t[f"S_{n}"][out]) for n in names], -1)
        use = M[rows] & fit[rows][:, None]
        if not per_genre:  # one model for all genres: the features' weights shared, a bias per genre
            X, Xt = (np.concatenate([A, np.broadcast_to(np.eye(G), (len(A), G, G))], -1) for A in (X, Xt))
            if len(np.unique(Y[rows][use])) == 2:
                lr = _lr(C).fit(X[use], Y[rows][use])
                S[out] = lr.predict_proba(Xt.reshape(-1, Xt.shape[-1]))[:, 1].reshape(-1, G)
            continue
        for g in range(G):
            y = Y[rows][use[:, g], g]
            if 5 <= y.sum() < len(y):  # too few positives: the fused score stays
                S[out, g] = _lr(C).fit(X[use[:, g], g], y).predict_proba(Xt[:, g])[:, 1]
    return S


def label_chain(z: dict, fit: np.ndarray, target: dict | None = None, C: float = 0.05) -> np.ndarray:
    def features(d):
        onehot = np.stack([d["combination"] == c for c in COMBOS], 1).astype(np.float64)
        lex = logit(d["S_tfidf_logreg"]) * (d["combination"] != "poster")[:, None]
        return np.concatenate([logit(d["S_fused"]), lex, onehot], 1)

    t = z if target is None else target
    Y, M, X, Xt = z["Y"], z["M"].astype(bool), features(z), features(t)
    S = t["S_fused"].astype(np.float64).copy()
    for g in range(Y.shape[1]):
        use = M[:, g] & fit
        if 5 <= Y[use, g].sum() < use.sum():
            S[:, g] = _lr(C).fit(X[use], Y[use, g]).predict_proba(Xt)[:, 1]
    return S


def at_least_one(S, T, M, P):
    P = P.copy()
    empty = (P * M).sum(1) == 0
    P[empty, np.where(M, S / T, -np.inf)[empty].argmax(1)] = 1
    return P


def cap(k: int):
    def decide(S, T, M, P):
        R = np.where(M & (P == 1), S / T, -np.inf)
        keep = np.zeros_like(P)
        np.put_along_axis(keep, np.argsort(-R, 1)[:, :k], 1, 1)
        return P * keep
    return decide


VARIANTS = {
    "default": (None, None),
    "stack_shared": (lambda z, fit, target=None: stack(z, fit, per_genre=False, C=1.0, target=target), None),
    "stack_genre": (lambda z, fit, target=None: stack(z, fit, per_genre=True, C=1.0, target=target), None),
    "label_chain": (label_chain, None),
    "at_least_one": (None, at_least_one),
    "cap_3": (None, cap(3)),
    "cap_4": (None, cap(4)),
}


def cross_validate(z: dict, rescore=None, decide=None) -> dict:
    """Micro-/macro-F1 over all titles and per input combination (``evaluate.cross_validated_f1``: 5 folds, 3
    repetitions), each held-out fold decided by what was fitted on the others."""
    from genrefusion.evaluate import cross_validated_f1
    from genrefusion.thresholds import inputs_of

    return cross_validated_f1("fused", z["Y"], z["S_fused"], z["M"], *inputs_of(z["combination"]), list(z["genres"]),
                              rescore=None if rescore is None else (lambda fit: rescore(z, fit)), decide=decide)


def held_out(z: dict, t: dict, rescore=None, decide=None) -> dict:
    """Fitted (second stage and thresholds) on every out-of-fold title ``z``, read on the titles ``t``: a
    leave-one-dataset-out run's held-out dataset (its ``test_scores.npz``)."""
    from genrefusion.evaluate import predictions, tune_model_thresholds
    from genrefusion.metrics import multilabel_metrics
    from genrefusion.thresholds import combination_keys, inputs_of

    every = np.ones(len(z["Y"]), bool)
    S = z["S_fused"].astype(np.float64) if rescore is None else rescore(z, every)
    St = t["S_fused"].astype(np.float64) if rescore is None else rescore(z, every, target=t)
    sets, _ = tune_model_thresholds("fused", z["Y"], S, z["M"], *inputs_of(z["combination"]), list(z["genres"]))
    T = sets.rows(combination_keys(*inputs_of(t["combination"])))
    P = predictions(St, T)
    if decide is not None:
        P = decide(St, T, t["M"].astype(bool), P)
    m = multilabel_metrics(t["Y"], P, t["M"])
    return {"n_titles": len(P), "micro_f1": round(float(m["micro_f1"] or 0), 4),
            "macro_f1": round(float(m["macro_f1"] or 0), 4)}


def load(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="cross-fitted run folders (with dev_scores.npz)")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--held-out", action="store_true",
                    help="the runs are leave-one-dataset-out runs (benchmarks/generalisation.py): fit on all their "
                         "out-of-fold titles and read the held-out dataset (never the main job's test split)")
    ap.add_argument("--out", type=Path, default=None, help="default benchmarks/posthoc.json (posthoc_held_out.json)")
    args = ap.parse_args(argv)
    from genrefusion.io import write_json

    for run in args.runs:
        for name in ("dev_scores.npz",) + (("test_scores.npz",) if args.held_out else ()):
            if not (run / name).is_file():
                ap.error(f"{run}: no {name} (not a finished run folder)")
    out = {}
    for run in args.runs:
        z = load(run / "dev_scores.npz")
        t = load(run / "test_scores.npz") if args.held_out else None
        out[str(run)] = {}
        for name in args.variants:
            res = (held_out(z, t, *VARIANTS[name]) if args.held_out else cross_validate(z, *VARIANTS[name]))
            out[str(run)][name] = res
            parts = {"held out": res} if args.held_out else res
            print(f"{run}  {name:13s} " + "  ".join(f"{p} {v['micro_f1']:.4f} / {v['macro_f1']:.4f}"
                                                     for p, v in parts.items()), flush=True)
    write_json(args.out or HERE / ("posthoc_held_out.json" if args.held_out else "posthoc.json"), out)
    return out


if __name__ == "__main__":
    main()
