"""Genre distribution of a set of titles by dataset and kind (the paper's Fig. 2, per source).

Counts come from the label matrix, so a genre a dataset does not label is *unknown* there (counted in
``labelled`` neither as positive nor as negative), exactly as training sees it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def genre_distribution(datasets: Sequence[str], kinds: Sequence[str | None], Y: np.ndarray, M: np.ndarray,
                       genres: Sequence[str]) -> dict:
    """``{"genres": [...], "groups": [{"dataset", "kind", "titles", "positives": {g: n}, "labelled": {g: n}}]}``.

    One group per (dataset, kind) pair present, in first-seen order; ``kind`` is ``movie``, ``tv`` or
    ``unknown`` (a title without one). Arrays are the rows to count (e.g. the training split)."""
    Y, M = np.asarray(Y) > 0, np.asarray(M) > 0
    keys = [(d, k if k in ("movie", "tv") else "unknown") for d, k in zip(datasets, kinds)]
    groups = []
    for key in dict.fromkeys(keys):
        rows = np.asarray([i for i, k in enumerate(keys) if k == key], dtype=np.int64)
        pos, lab = (Y[rows] & M[rows]).sum(0), M[rows].sum(0)
        groups.append({"dataset": key[0], "kind": key[1], "titles": int(len(rows)),
                       "positives": {g: int(pos[j]) for j, g in enumerate(genres)},
                       "labelled": {g: int(lab[j]) for j, g in enumerate(genres)}})
    return {"genres": list(genres), "groups": groups}
