"""Per-genre decision thresholds tuned on the dev split.

For each genre the threshold maximising its F1 on the dev titles that label it is chosen, from all
candidate cut points at once (scikit-learn's ``precision_recall_curve`` is vectorised over them).
The cut is placed halfway between the chosen score and the next lower dev score, so a test score
equal to a dev positive's score is not decided by float noise. Genres with too few dev positives get
the single global threshold that maximises micro-F1 over all labelled dev entries (a per-genre F1
from 1-2 positives is noise).
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import precision_recall_curve


def best_f1_threshold(y, s) -> tuple[float, float]:
    """(threshold, F1) maximising F1 of ``s >= threshold`` against ``y``; (1.0, 0.0) without positives."""
    y = np.asarray(y, dtype=np.int64)
    s = np.asarray(s, dtype=np.float64)
    if y.size == 0 or y.sum() == 0:
        return 1.0, 0.0
    prec, rec, thr = precision_recall_curve(y, s)
    # precision_recall_curve appends a (1, 0) point without a threshold; drop it.
    prec, rec = prec[:-1], rec[:-1]
    denom = prec + rec
    f1 = np.divide(2 * prec * rec, denom, out=np.zeros_like(denom), where=denom > 0)
    i = int(np.argmax(f1))
    t = float(thr[i])
    lower = s[s < t]
    if lower.size:
        t = float((t + lower.max()) / 2.0)
    return t, float(f1[i])


def tune_thresholds(Y, S, M=None, min_positives: int = 3) -> tuple[np.ndarray, dict]:
    """Per-genre thresholds ``[G]`` and info (global threshold, per-genre dev F1, which fell back)."""
    Y = np.asarray(Y, dtype=np.int64)
    S = np.asarray(S, dtype=np.float64)
    M = np.ones_like(Y, dtype=bool) if M is None else np.asarray(M) > 0
    glob, glob_f1 = best_f1_threshold(Y[M], S[M])
    if not (Y[M].sum() > 0):
        glob = 0.5
    thr = np.full(Y.shape[1], glob, dtype=np.float64)
    dev_f1 = {}
    fallback = []
    for j in range(Y.shape[1]):
        rows = M[:, j]
        if Y[rows, j].sum() < min_positives:
            fallback.append(j)
            continue
        thr[j], dev_f1[j] = best_f1_threshold(Y[rows, j], S[rows, j])
    return thr, {"global": float(glob), "global_f1": float(glob_f1), "dev_f1": dev_f1, "fallback": fallback}
