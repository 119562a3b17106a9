"""Deletion test of explanations (``explain.py``): does removing what an explanation ranks highest lower the
genre's score more than removing as much at random?

For one title and each explained genre: delete the k highest-weighted plot words from the text (k in
``WORD_KS``), or mask the k highest-weighted poster cells *in image space* (the cell's pixels of the centre
crop set to the mean colour, then the real backbone runs; k in ``CELL_KS``), and record the fall of the genre's
probability (both inputs given). The same for k words / cells drawn at random (``n_random`` draws, shared by
the title's genres). A faithful explanation's curve lies above the random one; ``summarise`` averages the
curves over titles and reports the gap. ``shuffle=True`` permutes the weights first: the control a test uses
to show that the gap comes from the attributions and not from the procedure.
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


def _orders(weights: np.ndarray, rng, shuffle: bool) -> np.ndarray:
    w = np.asarray(weights, np.float64)
    if shuffle:
        w = rng.permutation(w)
    return np.argsort(-w, kind="stable")


def deletion_case(clf, poster, plot: str | None, expl: dict, rng: np.random.Generator, n_random: int = 3,
                  shuffle: bool = False, word_ks=WORD_KS, cell_ks=CELL_KS) -> dict:
    """Score falls for one title: ``{"words"|"cells": {"top": [G][K], "random": [G][K]}}`` (NaN where k is
    larger than the number of words/cells), in ``expl["genres"]`` order; the inputs ``expl`` explained."""
    from ..data.images import load_image

    x = clf.preprocess_poster(load_image(poster)) if expl["poster"] is not None else None
    gidx = [clf.genres_.index(e["genre"]) for e in expl["genres"]]
    titles, groups = [{"poster": x, "plot": plot}], []  # groups: (kind, genre row or None, k) per title added

    def add(kind, g, k, variant):
        titles.append(variant)
        groups.append((kind, g, k))

    if expl["plot"] is not None:
        spans = [tuple(s) for s in expl["plot"]["words"]]
        for k in (k for k in word_ks if k <= len(spans)):
            for _ in range(n_random):
                drop = rng.choice(len(spans), size=k, replace=False)
                add("words", None, k, {"poster": x, "plot": remove_spans(plot, [spans[i] for i in drop])})
            for g, e in enumerate(expl["genres"]):
                top = _orders(e["word_weights"], rng, shuffle)[:k]
                add("words", g, k, {"poster": x, "plot": remove_spans(plot, [spans[i] for i in top])})
    if x is not None:
        shape = tuple(expl["poster"]["grid_shape"])
        n_cells = shape[0] * shape[1]
        for k in (k for k in cell_ks if k <= n_cells):
            for _ in range(n_random):
                add("cells", None, k, {"poster": _mask_cells(x, rng.choice(n_cells, size=k, replace=False), shape),
                                       "plot": plot})
            for g, e in enumerate(expl["genres"]):
                top = _orders(np.ravel(e["poster_grid"]), rng, shuffle)[:k]
                add("cells", g, k, {"poster": _mask_cells(x, top, shape), "plot": plot})
    P = clf.predict_proba(titles)[:, gidx].astype(np.float64)
    fall = P[0][None, :] - P[1:]
    return _collect(groups, fall, len(gidx), {"words": list(word_ks), "cells": list(cell_ks)})


def _collect(groups, fall: np.ndarray, n_genres: int, ks: dict) -> dict:
    """Per kind: the top-k fall of each genre, and the random-k fall averaged over the draws."""
    out = {}
    for kind, klist in ks.items():
        rows = [(r, g, k) for r, (kd, g, k) in enumerate(groups) if kd == kind]
        if not rows:
            out[kind] = None
            continue
        top = np.full((n_genres, len(klist)), np.nan)
        rnd = np.full((n_genres, len(klist)), np.nan)
        for ki, k in enumerate(klist):
            rand_rows = [r for r, g, kk in rows if g is None and kk == k]
            if rand_rows:
                rnd[:, ki] = fall[rand_rows].mean(0)
            for r, g, kk in rows:
                if g is not None and kk == k:
                    top[g, ki] = fall[r, g]
        out[kind] = {"top": top.tolist(), "random": rnd.tolist()}
    return out


def summarise(cases: list[dict], ks: dict | None = None) -> dict:
    """Mean score-fall curves over every (title, genre): ``{"words"|"cells": {"k", "top", "random", "gap",
    "mean_gap", "pairs", "top_beats_random"}}``; ``top_beats_random`` is the share of (title, genre, k) where
    removing the top-attributed part lowered the score more than the random draws did on average."""
    ks = ks or {"words": list(WORD_KS), "cells": list(CELL_KS)}
    out = {}
    for kind, klist in ks.items():
        tops = [np.asarray(c[kind]["top"]) for c in cases if c.get(kind)]
        rnds = [np.asarray(c[kind]["random"]) for c in cases if c.get(kind)]
        if not tops:
            out[kind] = None
            continue
        T, R = np.concatenate(tops), np.concatenate(rnds)
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
