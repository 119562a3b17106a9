"""Deletion test of explanations (``explain.py``): does removing what an explanation ranks highest lower the
genre's score more than removing as much at random?

For one title and each explained genre: delete the k highest-weighted plot words from the text (k in
``WORD_KS``), or mask the k highest-weighted poster cells *in image space* (the cell's pixels of the centre
crop set to the mean colour, then the real backbone runs; k in ``CELL_KS``), and record the fall of the genre's
probability (both inputs given). The same for k words / cells drawn at random (``n_random`` draws, shared by
the title's genres). A faithful explanation's curve lies above the random one; ``summarise`` averages the
curves over titles and reports the gap. The same ranking with the weights randomly permuted is the control
(``ranking="shuffled"``): it shows that the gap comes from the attributions, not from the procedure.
"""
from __future__ import annotations

import numpy as np

from .units import remove_spans

WORD_KS = (1, 2, 3, 5, 10)
CELL_KS = (1, 2, 4, 8)


def _mask_cells(x, cells, grid_shape):
    """A copy of the preprocessed poster ``x`` [3,S,S] with the given cells (flat indices) set to 0 (the
    normalisation mean, i.e. the mean colour: what the explanation's blank cell stands for)."""
    h, w = grid_shape
    y = x.clone()
    ch, cw = x.shape[1] // h, x.shape[2] // w
    for c in cells:
        i, j = divmod(int(c), w)
        y[:, i * ch:(i + 1) * ch, j * cw:(j + 1) * cw] = 0
    return y


def deletion_case(clf, poster, plot: str | None, expl: dict, rng: np.random.Generator, n_random: int = 3,
                  word_ks=WORD_KS, cell_ks=CELL_KS) -> dict:
    """Score falls for one title, in ``expl["genres"]`` order, for the inputs ``expl`` explained:
    ``{"words"|"cells": {"top", "shuffled", "random": [G][K]}}`` (NaN where k exceeds the words/cells; None
    for an input not given). ``shuffled`` ranks by the attributions randomly permuted (one permutation per
    genre); ``random`` averages ``n_random`` draws of k, shared by the genres. One batch of predictions."""
    from ..data.images import load_image

    x = clf.preprocess_poster(load_image(poster)) if expl["poster"] is not None else None
    titles, groups = [{"poster": x, "plot": plot}], []  # groups: (kind, ranking, genre row or None, k)

    def deletions(kind, n, ks, weights, variant):
        orders = {r: [np.argsort(-(w if r == "top" else rng.permutation(w)), kind="stable") for w in weights]
                  for r in ("top", "shuffled")}
        for k in (k for k in ks if k <= n):
            for _ in range(n_random):
                titles.append(variant(rng.choice(n, size=k, replace=False)))
                groups.append((kind, "random", None, k))
            for r, per_genre in orders.items():
                for g, order in enumerate(per_genre):
                    titles.append(variant(order[:k]))
                    groups.append((kind, r, g, k))

    if expl["plot"] is not None:
        spans = [tuple(s) for s in expl["plot"]["words"]]
        deletions("words", len(spans), word_ks, [np.asarray(e["word_weights"], float) for e in expl["genres"]],
                  lambda drop: {"poster": x, "plot": remove_spans(plot, [spans[i] for i in drop])})
    if x is not None:
        shape = tuple(expl["poster"]["grid_shape"])
        deletions("cells", shape[0] * shape[1], cell_ks, [np.ravel(e["poster_grid"]) for e in expl["genres"]],
                  lambda cells: {"poster": _mask_cells(x, cells, shape), "plot": plot})
    gidx = [clf.genres_.index(e["genre"]) for e in expl["genres"]]
    P = clf.predict_proba(titles)[:, gidx].astype(np.float64)
    return _collect(groups, P[0][None, :] - P[1:], len(gidx), {"words": list(word_ks), "cells": list(cell_ks)})


def _collect(groups, fall: np.ndarray, n_genres: int, ks: dict) -> dict:
    """Per kind and ranking: each genre's fall at each k (random draws averaged)."""
    out = {}
    for kind, klist in ks.items():
        if not any(gr[0] == kind for gr in groups):
            out[kind] = None
            continue
        res = {r: np.full((n_genres, len(klist)), np.nan) for r in ("top", "shuffled", "random")}
        for ki, k in enumerate(klist):
            rand_rows = [i for i, (kd, r, _, kk) in enumerate(groups) if kd == kind and r == "random" and kk == k]
            if rand_rows:
                res["random"][:, ki] = fall[rand_rows].mean(0)
            for i, (kd, r, g, kk) in enumerate(groups):
                if kd == kind and g is not None and kk == k:
                    res[r][g, ki] = fall[i, g]
        out[kind] = {r: v.tolist() for r, v in res.items()}
    return out


def summarise(cases: list[dict], ks: dict | None = None, ranking: str = "top") -> dict:
    """Mean score-fall curves over every (title, genre) when removing by ``ranking`` ("top": the attributions;
    "shuffled": the control) vs at random: ``{"words"|"cells": {"k", "top", "random", "gap", "mean_gap",
    "pairs", "top_beats_random"}}``; ``top_beats_random`` is the share of (title, genre, k) where the ranked
    removal lowered the score more than the random draws did on average."""
    ks = ks or {"words": list(WORD_KS), "cells": list(CELL_KS)}
    out = {}
    for kind, klist in ks.items():
        done = [c[kind] for c in cases if c.get(kind)]
        if not done:
            out[kind] = None
            continue
        T = np.concatenate([np.asarray(c[ranking]) for c in done])
        R = np.concatenate([np.asarray(c["random"]) for c in done])
        with np.errstate(invalid="ignore"):
            top, rnd = np.nanmean(T, 0), np.nanmean(R, 0)
            valid = ~np.isnan(T) & ~np.isnan(R)
        gap = top - rnd
        out[kind] = {"k": list(klist), "top": _round(top), "random": _round(rnd), "gap": _round(gap),
                     "mean_gap": _sig(np.nanmean(gap)), "pairs": int(len(T)),
                     "top_beats_random": round(float((T > R)[valid].mean()), 3) if valid.any() else None}
    return out


def _sig(v) -> float:
    return float(f"{float(v):.4g}")  # 4 significant digits: a weak model's falls are tiny but still ordered


def _round(a) -> list:
    return [None if np.isnan(v) else _sig(v) for v in a]
