"""The lexical blend: a tf-idf logistic regression's probabilities averaged into the plot-reading models'.

MiniLM's sentence features say what a plot is about, not which words it uses; the words that name a genre
("detective", "haunted", "spaceship", "sitcom") are what a tf-idf logistic regression on the training plots
reads. For a title with a plot, the plot and fused models answer ``(1 - w) * p_model + w * p_lexical``, with
``w`` chosen per model on dev (``choose_weight``, ``text.lexical = "auto"``); a title without a plot is left
as the network scored it. On the shipped data the blend raised dev mAP on titles with a plot in the README's
main job and in every leave-one-dataset-out fold (benchmarks/README.md, "Dev comparisons").

The tf-idf model is the run's ``tfidf_logreg`` baseline (fitted on the training plots, C chosen on dev); the
bundle stores it as plain arrays (``lexical.safetensors``) and the weights in its config.
"""
from __future__ import annotations

import numpy as np

from ..metrics import selection_score

WEIGHTS = (0.0, 0.2, 0.35, 0.5, 0.65, 0.8)  # dev chooses among these; 0 = the network alone


def blend(S, Q, text_ok, w: float) -> np.ndarray:
    """``S`` with the rows that have a plot replaced by ``(1 - w) * S + w * Q``."""
    S = np.asarray(S)
    S = S if np.issubdtype(S.dtype, np.floating) else S.astype(np.float32)
    if not w or Q is None:
        return S
    ok = np.asarray(text_ok, dtype=bool)
    out = S.copy()
    out[ok] = (1.0 - w) * S[ok] + w * np.asarray(Q, dtype=S.dtype)[ok]
    return out


def choose_weight(Y, S, M, Q, text_ok, metric: str = "mAP", grid=WEIGHTS) -> tuple[float, dict]:
    """(weight, dev score by weight): the blend weight with the best dev ``metric`` on the dev titles that have
    a plot (the only ones it changes); ties keep the smaller weight."""
    ok = np.asarray(text_ok, dtype=bool)
    if not ok.any():
        return 0.0, {}
    by_w = {w: round(selection_score(metric, Y[ok], blend(S, Q, ok, w)[ok], M[ok]), 5) for w in grid}
    best = max(by_w, key=lambda w: (by_w[w], -w))
    return float(best), {f"{w:g}": s for w, s in by_w.items()}
