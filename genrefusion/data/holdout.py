"""Leave-one-dataset-out: a training split that shares no title with a held-out dataset.

A title of a training dataset is dropped when it has the same ``imdb_id`` as a held-out title, or —
for sources without IMDb ids, such as the Netflix catalogues — the same normalised title and year.
The held-out dataset then measures generalisation to titles (and to a source) the model has never
seen, which the shipped test split cannot: its titles come from the same sources as the training ones.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

from .dataset import Dataset
from .records import Title
from .split import Split, make_split


def _norm_title(s: str | None) -> str | None:
    s = re.sub(r"[^0-9a-z]+", " ", (s or "").lower()).strip()
    return s or None


class Overlap:
    """Which titles of other datasets are also in ``held_out`` (by imdb_id, else title + year)."""

    def __init__(self, held_out: Sequence[Dataset]):
        self.imdb_ids: set[str] = set()
        self.title_years: set[tuple[str, int]] = set()
        for ds in held_out:
            for t in ds.titles():
                if t.imdb_id:
                    self.imdb_ids.add(t.imdb_id)
                name = _norm_title(t.title)
                if name and t.year is not None:
                    self.title_years.add((name, t.year))

    def reason(self, t: Title) -> str | None:
        """'imdb_id', 'title+year', or None when ``t`` is not in the held-out data."""
        if t.imdb_id and t.imdb_id in self.imdb_ids:
            return "imdb_id"
        name = _norm_title(t.title)
        if name and t.year is not None and (name, t.year) in self.title_years:
            return "title+year"
        return None

    def __call__(self, t: Title) -> bool:
        return self.reason(t) is not None


def holdout_split(train: Sequence[Dataset], held_out: Sequence[Dataset], dev: float = 0.1,
                  seed: int = 0) -> tuple[Split, dict]:
    """The split of ``train + held_out`` for a leave-one-dataset-out run: ``train``'s titles minus those
    ``held_out`` shares, stratified into train and dev; every ``held_out`` title in test. Also returns,
    per training dataset, how many titles were dropped and why (``{"poster_genres_av": {"imdb_id": 617}}``).

    Trained on this split (``RUN/split.json`` written before ``genrefusion train``), a run's test metrics,
    baselines included, are the held-out dataset's."""
    overlap = Overlap(held_out)
    dropped: dict[str, Counter] = {}
    for ds in train:
        c = Counter(r for r in map(overlap.reason, ds.titles()) if r)
        if c:
            dropped[ds.name] = c
    inner = make_split(list(train), dev=dev, test=0.0, seed=seed, exclude=overlap)
    prefix = "" if inner.qualified else f"{train[0].name}/"
    parts = {p: [prefix + k for k in inner.parts[p]] for p in ("train", "dev")}
    parts["test"] = [f"{ds.name}/{t.id}" for ds in held_out for t in ds.titles()]
    split = Split(seed=seed, dev=dev, test=None, datasets=[ds.name for ds in (*train, *held_out)], parts=parts)
    return split, {name: dict(c) for name, c in dropped.items()}
