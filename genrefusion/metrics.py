"""Multi-label metrics with a label mask, all computed by scikit-learn.

``Y`` (true, 0/1), ``P`` (predicted, 0/1), ``S`` (scores in [0, 1]) are ``[N, G]``; ``M`` is the mask
``[N, G]``: 1 where the title's dataset labels the genre. Masked entries (genre unknown for that
title) never count, neither as negatives nor as errors:

- per genre (precision/recall/F1/support/AP/confusion): only titles whose dataset labels the genre;
- ``micro_f1``, ``hamming_loss``, ``per_label_accuracy``: computed on the flattened *labelled*
  entries only (micro-F1 over pooled TP/FP/FN of labelled entries);
- ``samples_f1`` and ``exact_match``: masked entries are set to 0 in both truth and prediction, so
  they add no TP/FP/FN to a title's F1 and can never break its exact match; both are means over the titles
  with at least one labelled positive (``n_titles_with_positive``), so a title with nothing to find gives no
  free credit to a model (or the always-negative baseline) that predicts nothing;
- ``macro_f1``, ``weighted_f1`` (support-weighted) and ``mAP``: means over genres that have at least
  one labelled positive in the evaluated titles (a genre without positives has no defined recall/AP;
  such genres are listed under ``genres_without_positives``).

``per_label_accuracy`` is fastai's ``accuracy_multi`` at 0.5 (the paper's "accuracy"), on scores.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import (accuracy_score, average_precision_score, confusion_matrix, f1_score, hamming_loss,
                             precision_recall_fscore_support)

MAIN = ("micro_f1", "macro_f1", "mAP")
SUMMARY = ("micro_f1", "macro_f1", "weighted_f1", "samples_f1", "mAP", "hamming_loss", "exact_match",
           "per_label_accuracy")


def _arrays(Y, P, M):
    Y = np.asarray(Y, dtype=np.int64)
    P = np.asarray(P, dtype=np.int64)
    M = np.ones_like(Y) if M is None else (np.asarray(M) > 0).astype(np.int64)
    if Y.shape != P.shape or Y.shape != M.shape or Y.ndim != 2:
        raise ValueError(f"shape mismatch: Y{Y.shape} P{P.shape} M{M.shape}")
    return Y, P, M


def multilabel_metrics(Y, P, M=None, S=None, genres: list[str] | None = None) -> dict:
    """All metrics of the report for one model. ``S`` (scores) enables ``mAP``/``per_label_accuracy``."""
    Y, P, M = _arrays(Y, P, M)
    n, g = Y.shape
    genres = list(genres) if genres is not None else [str(i) for i in range(g)]
    lab = M.astype(bool)
    out: dict = {"n_titles": int(n), "n_labelled_entries": int(lab.sum())}
    if n == 0 or not lab.any():
        out.update({k: None for k in SUMMARY})
        out.update({"per_genre": {}, "genres_without_positives": list(genres)})
        return out

    y_flat, p_flat = Y[lab], P[lab]
    out["micro_f1"] = float(f1_score(y_flat, p_flat, zero_division=0.0))
    out["hamming_loss"] = float(hamming_loss(y_flat, p_flat))
    # Per-title figures over the titles with a labelled positive: one with none (its genres all unknown to the
    # model, or masked) would score 1 for predicting nothing, crediting the always-negative baseline.
    Ym = Y * M
    has_pos = Ym.sum(1) > 0
    out["n_titles_with_positive"] = int(has_pos.sum())
    Ym, Pm = Ym[has_pos], (P * M)[has_pos]
    if g == 1:  # sklearn reads one column as binary, not multilabel; an all-zero column changes no title's figures
        Ym, Pm = np.pad(Ym, ((0, 0), (0, 1))), np.pad(Pm, ((0, 0), (0, 1)))
    out["samples_f1"] = float(f1_score(Ym, Pm, average="samples", zero_division=0.0)) if has_pos.any() else None
    out["exact_match"] = float(accuracy_score(Ym, Pm)) if has_pos.any() else None

    per_genre = {}
    f1s, supports, aps = [], [], []
    no_pos = []
    # Per-genre masking is done by selecting each genre's labelled rows. (Not multilabel_confusion_matrix on a
    # one-column array: sklearn reads that as binary multiclass and returns one matrix per *class*, so [0]
    # is the negative class's matrix with TP and TN swapped.)
    for j, name in enumerate(genres):
        rows = lab[:, j]
        yj, pj = Y[rows, j], P[rows, j]
        support = int(yj.sum())
        if rows.sum() == 0:
            per_genre[name] = {"labelled": 0, "support": 0, "precision": None, "recall": None, "f1": None,
                               "ap": None, "tn": 0, "fp": 0, "fn": 0, "tp": 0}
            no_pos.append(name)
            continue
        pr, rc, f1, _ = precision_recall_fscore_support(yj, pj, average="binary", zero_division=0.0)
        (tn, fp), (fn, tp) = confusion_matrix(yj, pj, labels=[0, 1])
        ap = None
        if support > 0 and S is not None:
            ap = float(average_precision_score(yj, np.asarray(S)[rows, j]))
        per_genre[name] = {"labelled": int(rows.sum()), "support": support, "precision": float(pr),
                           "recall": float(rc), "f1": float(f1), "ap": ap,
                           "tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}
        if support == 0:
            no_pos.append(name)
            continue
        f1s.append(float(f1))
        supports.append(support)
        if ap is not None:
            aps.append(ap)
    out["macro_f1"] = float(np.mean(f1s)) if f1s else None
    out["weighted_f1"] = float(np.average(f1s, weights=supports)) if f1s else None
    out["mAP"] = float(np.mean(aps)) if aps else None
    if S is not None:
        S = np.asarray(S, dtype=np.float64)
        out["per_label_accuracy"] = float(accuracy_score(y_flat, (S[lab] > 0.5).astype(np.int64)))
    else:
        out["per_label_accuracy"] = None
    out["per_genre"] = per_genre
    out["genres_without_positives"] = no_pos
    return out


def masked_map(Y, S, M=None) -> float:
    """Macro average precision over genres with a labelled positive (model selection on dev)."""
    Y, _, M = _arrays(Y, np.zeros_like(np.asarray(Y)), M)
    S = np.asarray(S, dtype=np.float64)
    aps = []
    for j in range(Y.shape[1]):
        rows = M[:, j].astype(bool)
        if Y[rows, j].sum() > 0:
            aps.append(average_precision_score(Y[rows, j], S[rows, j]))
    return float(np.mean(aps)) if aps else 0.0


def selection_score(metric: str, Y, S, M, thresholds=None) -> float:
    """Dev score used for early stopping / model choice: ``mAP`` is threshold-free; the F1 variants
    use ``thresholds`` (default 0.5)."""
    if metric == "mAP":
        return masked_map(Y, S, M)
    thr = 0.5 if thresholds is None else np.asarray(thresholds)
    P = (np.asarray(S) >= thr).astype(np.int64)
    m = multilabel_metrics(Y, P, M, genres=None)
    return float(m[metric] or 0.0)


def summary(m: dict, keys=SUMMARY) -> dict:
    return {k: m.get(k) for k in keys}


# -- bootstrap intervals ---------------------------------------------------------------------------------------
# How far a figure on a few hundred test titles can be trusted: titles are resampled with replacement
# (percentile bootstrap). The same draws serve every model scored on the same titles, so the difference between two
# models gets a paired interval too. micro/macro-F1 only: they are sums of per-title counts, so all draws are one
# matrix product; mAP would need a ranking per draw and genre.
BOOTSTRAP_DRAWS = 1000
CI_LEVEL = 0.95


def bootstrap_draws(n: int, draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> np.ndarray:
    """``[draws, n]`` float32: how often each of ``n`` titles appears in each resample (fixed seed: the same
    titles get the same draws, whichever model is scored)."""
    if not n:
        return np.zeros((draws, 0), np.float32)
    return np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=draws).astype(np.float32)


def resampled_f1(W: np.ndarray, Y, P, M=None) -> tuple[np.ndarray, np.ndarray]:
    """(micro-F1 ``[draws]``, macro-F1 ``[draws]``) of predictions ``P`` in each resample of ``W``
    (``bootstrap_draws``), masked as ``multilabel_metrics`` masks: labelled entries only, macro over the genres
    with a labelled positive in that resample (NaN when no genre has one)."""
    Y, P, M = _arrays(Y, P, M)
    Y, P, M = Y.astype(bool), P.astype(bool), M.astype(bool)
    tp, fp, fn = (W @ (a & M).astype(np.float32) for a in (P & Y, P & ~Y, ~P & Y))  # [draws, G] each
    micro = 2 * tp.sum(1) / np.maximum(2 * tp.sum(1) + fp.sum(1) + fn.sum(1), 1e-12)
    has = (tp + fn) > 0
    per = np.where(has, 2 * tp / np.maximum(2 * tp + fp + fn, 1e-12), 0.0)
    with np.errstate(invalid="ignore"):
        macro = per.sum(1) / has.sum(1)
    return micro, macro


def interval(samples, level: float = CI_LEVEL) -> list[float] | None:
    """Percentile interval ``[lo, hi]`` of bootstrap samples (None without finite samples)."""
    x = np.asarray(samples, dtype=np.float64)
    x = x[np.isfinite(x)]
    if not x.size:
        return None
    a = (1 - level) / 2
    return [round(float(np.quantile(x, a)), 4), round(float(np.quantile(x, 1 - a)), 4)]


# the probe verdicts (``evaluate.probe_verdicts``) in words: for the report, the model card and train's summary
_PART = {"all": "all titles", "both": "titles with poster and plot", "poster": "poster-only titles",
         "plot": "plot-only titles", "with_poster": "titles with a poster", "with_plot": "titles with a plot"}


def _difference(v: dict) -> str:
    ci = v.get("difference_ci95")
    d = v["micro_f1"] - v["probe_micro_f1"]
    return f"difference {d:+.3f}" + (f", 95% interval {ci[0]:+.3f} to {ci[1]:+.3f}" if ci else "")


def verdict_lines(verdicts: list[dict]) -> list[str]:
    """Plain sentences: where a model does NOT beat its linear probe, a line when it beats it everywhere, and
    where a win is within the bootstrap interval (the test titles cannot tell the two apart)."""
    lines, beaten_everywhere, unresolved = [], {}, {}
    for v in verdicts:
        beaten_everywhere.setdefault(v["model"], True)
        ci = v.get("difference_ci95")
        if not v["beats"]:
            beaten_everywhere[v["model"]] = False
            lines.append(f"The {v['model']} model does NOT beat its linear probe ({v['probe']}) on "
                         f"{_PART.get(v['titles'], v['titles'])} (n={v['n']}): micro-F1 {v['micro_f1']:.3f} vs "
                         f"{v['probe_micro_f1']:.3f} ({_difference(v)}).")
        elif ci and ci[0] <= 0:
            unresolved.setdefault(v["model"], []).append(f"{_PART.get(v['titles'], v['titles'])} ({_difference(v)})")
    for m, ok in beaten_everywhere.items():
        if ok:
            lines.append(f"The {m} model beats its linear probe on every input combination it reads (micro-F1).")
        if unresolved.get(m):
            lines.append(f"The {m} model's lead over its probe is within the bootstrap interval on "
                         f"{'; '.join(unresolved[m])}.")
    return lines
