"""A lexical blend weight per genre against the run's one weight, read on dev only (issue 16, seventh round).

    python benchmarks/genre_blend.py benchmarks/out/variants/default benchmarks/out/variants/default_seed{1,2}

For each run, from its ``dev_scores.npz``: the fused model's network share is recovered from its blended scores
(``(S - w * tfidf) / (1 - w)`` on titles with a plot, ``w`` the run's weight), then 5-fold cross-validation
within dev (3 repetitions, as ``evaluate.cross_validated_f1``): on the training folds each genre's weight is the
one among 0-0.8 with the best average precision on titles with a plot (genres with fewer than ``--min-pos``
positives keep ``w``), thresholds are tuned on the training folds as a run tunes them, and the held-out fold is
decided. Prints micro-/macro-F1 and mAP on the dev titles with both inputs; the one-weight row reproduces
``variants.py``'s CV figures.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WEIGHTS = (0.0, 0.2, 0.35, 0.5, 0.65, 0.8)


def genre_weights(Y, M, net, lex, plot, w0: float, min_pos: int) -> np.ndarray:
    from sklearn.metrics import average_precision_score

    w = np.full(Y.shape[1], w0)
    for g in range(Y.shape[1]):
        sel = plot & (M[:, g] > 0)
        if Y[sel, g].sum() >= min_pos and Y[sel, g].sum() < sel.sum():
            aps = [average_precision_score(Y[sel, g], (1 - a) * net[sel, g] + a * lex[sel, g]) for a in WEIGHTS]
            w[g] = WEIGHTS[int(np.argmax(aps))]
    return w


def evaluate_run(run: Path, min_pos: list[int | None], folds: int = 5, repeats: int = 3) -> list[dict]:
    from genrefusion.evaluate import predictions, tune_model_thresholds
    from genrefusion.metrics import masked_map, multilabel_metrics
    from genrefusion.thresholds import combination_keys, inputs_of, model_reads

    w0 = json.loads((run / "metrics.json").read_text())["lexical_blend"]["fused"]["weight"]
    with np.load(run / "dev_scores.npz", allow_pickle=False) as z:
        Y, M, combo, genres = z["Y"], z["M"], z["combination"], list(z["genres"])
        S, L = z["S_fused"].astype(np.float64), z["S_tfidf_logreg"].astype(np.float64)
    img, txt = inputs_of(combo)
    net = S.copy()
    if w0 < 1:
        net[txt] = (S[txt] - w0 * L[txt]) / (1 - w0)
    both = combo == "both"
    rows = []
    for k in min_pos:
        f1, ap = np.zeros(2), 0.0
        for r in range(repeats):
            fold = np.random.default_rng([0, r]).permutation(len(Y)) % folds
            P, Sh = np.zeros(Y.shape, np.int64), np.zeros_like(S)
            for f in range(folds):
                fit, held = fold != f, fold == f
                w = np.full(Y.shape[1], w0) if k is None else genre_weights(
                    Y[fit], M[fit], net[fit], L[fit], txt[fit], w0, k)
                Sb = S.copy()
                Sb[txt] = (1 - w) * net[txt] + w * L[txt]
                sets, _ = tune_model_thresholds("fused", Y[fit], Sb[fit], M[fit], img[fit], txt[fit], genres, "auto")
                P[held] = predictions(Sb[held], sets.rows(combination_keys(img[held], txt[held], model_reads("fused"))))
                Sh[held] = Sb[held]
            m = multilabel_metrics(Y[both], P[both], M[both])
            f1 += [m["micro_f1"] or 0.0, m["macro_f1"] or 0.0]
            ap += masked_map(Y[both], Sh[both], M[both])
        rows.append({"run": str(run), "weight": w0, "min_pos": k, "n_both": int(both.sum()),
                     "cv_micro_f1_both": round(f1[0] / repeats, 4), "cv_macro_f1_both": round(f1[1] / repeats, 4),
                     "mAP_both": round(ap / repeats, 4)})
    return rows


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders (with dev_scores.npz and metrics.json)")
    ap.add_argument("--min-pos", type=int, nargs="+", default=[20, 10, 5],
                    help="genres with fewer positive dev titles with a plot keep the run's weight")
    args = ap.parse_args(argv)
    for run in args.runs:
        for name in ("metrics.json", "dev_scores.npz"):
            if not (run / name).is_file():
                ap.error(f"{run}: no {name} (not a finished run folder)")
    out = []
    for run in args.runs:
        for row in evaluate_run(run, [None, *args.min_pos]):
            label = "one weight" if row["min_pos"] is None else f"per genre, >= {row['min_pos']} positives"
            print(f"{run.name:16s} {label:28s} both ({row['n_both']}): CV micro-F1 {row['cv_micro_f1_both']:.4f} "
                  f"macro-F1 {row['cv_macro_f1_both']:.4f} mAP {row['mAP_both']:.4f}")
            out.append(row)
    return out


if __name__ == "__main__":
    from genrefusion.errors import one_line_errors

    with one_line_errors():
        main()
