"""The corpus: every usable (dataset, title) row with its label vector, label mask, split part and inputs.

Training builds one over the union genre vocabulary of its datasets; evaluation builds one over a trained
model's genres. A genre outside a dataset's vocabulary is *unknown* for its titles (masked), not negative.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DatasetError
from .dataset import Dataset
from .records import GenreVocab, Title
from .split import split_key
from .validate import validate_dataset

log = logging.getLogger("genrefusion.data")


@dataclass
class Corpus:
    """Every usable (dataset, title) row with its label vector, mask, split part and inputs."""

    datasets: list[Dataset]
    titles: list[Title]
    ds_index: np.ndarray            # [N] index into datasets
    keys: list[str]                 # "<dataset>/<id>"
    part: np.ndarray                # [N] 'train' | 'dev' | 'test' | '' (not in the split)
    genres: list[str]
    Y: np.ndarray                   # [N, G] float32 multi-hot
    M: np.ndarray                   # [N, G] float32, 1 where the title's dataset labels the genre
    posters: list[Path | None]
    plots: list[str | None]
    dropped_genres: dict[str, int] = field(default_factory=dict)
    left_out: dict[str, list[str]] = field(default_factory=dict)
    data_info: list[dict] = field(default_factory=list)

    def rows(self, part: str) -> np.ndarray:
        return np.flatnonzero(self.part == part)

    def __len__(self) -> int:
        return len(self.titles)


def load_corpus(datasets: Sequence[Dataset], split=None, min_genre_count: int = 1,
                genres: Sequence[str] | None = None, progress: bool = False) -> Corpus:
    """Rows of ``datasets`` after validation (records only; posters are decoded at feature extraction).

    ``genres=None`` (training): the model vocabulary is the union of the datasets' labelled genres
    minus genres with fewer than ``min_genre_count`` labelled training positives. With ``genres``
    (evaluating a trained model elsewhere) those are used; a genre the model knows but a dataset does
    not label is masked for its titles, and one the dataset labels but the model does not know is
    ignored; both are listed in ``left_out``.
    """
    titles, ds_index, keys, parts, posters, plots, info = [], [], [], [], [], [], []
    for d, ds in enumerate(datasets):
        report = validate_dataset(ds, decode=False)
        used = 0
        for t in ds.titles():
            if not report.usable(t):
                continue
            part = split.part_of(ds.name, t.id) if split is not None else ""
            titles.append(t)
            ds_index.append(d)
            keys.append(split_key(ds.name, t.id, True))
            parts.append(part or "")
            posters.append(ds.poster_path(t) if report.poster_ok(t) else None)
            plots.append(t.plot.strip() if report.plot_ok(t) else None)
            used += 1
        _warn_problems(ds, report, len(ds.titles()) - used)
        info.append({"name": ds.name, "path": str(ds.root.resolve()), "titles": len(ds.titles()),
                     "used": used, "skipped": len(ds.titles()) - used,
                     "problems_by_kind": report.by_kind(),
                     "with_poster": sum(1 for i, x in enumerate(posters) if ds_index[i] == d and x is not None),
                     "with_plot": sum(1 for i, x in enumerate(plots) if ds_index[i] == d and x is not None),
                     "labelled_genres": ds.labelled_genres})
    if not titles:
        raise DatasetError("no usable title in the given datasets (run `genrefusion validate`)")
    ds_index = np.asarray(ds_index)
    part = np.asarray(parts, dtype=object)
    Y, M, genres, dropped, left_out = encode_labels(datasets, titles, ds_index, part, min_genre_count, genres)
    return Corpus(list(datasets), titles, ds_index, keys, part, list(genres), Y, M, posters, plots,
                  dropped, left_out, info)


def _warn_problems(ds: Dataset, report, skipped: int) -> None:
    """One warning line for what validation found in ``ds``: skipped titles and inputs treated as missing would
    otherwise change the figures unseen (``genrefusion validate`` lists every problem)."""
    if not report.problems:
        return
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(report.by_kind().items(), key=lambda kn: -kn[1]))
    first = "; ".join(f"{p.id}: {p.message}" for p in report.problems[:3])
    log.warning("%s: %d problem(s) (%s), e.g. %s; %d title(s) skipped, unusable posters and plots read as missing; "
                "`genrefusion validate %s` lists them all", ds.name, len(report.problems), kinds, first, skipped,
                ds.root)


def encode_labels(datasets, titles, ds_index, part, min_genre_count: int, genres: Sequence[str] | None):
    """``(Y, M, genres, dropped, left_out)``: multi-hot labels and label masks over the model vocabulary
    (see ``load_corpus``)."""
    left_out: dict[str, list[str]] = {}
    dropped: dict[str, int] = {}
    if genres is None:
        union = GenreVocab(g for ds in datasets for g in ds.labelled_genres)
        Y, M = _encode(union, titles, ds_index, datasets)
        train = part == "train"
        counts = (Y[train] * M[train]).sum(0)
        keep = [i for i, c in enumerate(counts) if c >= min_genre_count]
        dropped = {union.genres[i]: int(counts[i]) for i in range(len(union)) if i not in keep}
        genres = [union.genres[i] for i in keep]
        Y, M = Y[:, keep], M[:, keep]
    else:
        vocab = GenreVocab(genres, sort=False)
        Y, M = _encode(vocab, titles, ds_index, datasets)
        genres = list(genres)
        for ds in datasets:
            lab = set(ds.labelled_genres)
            left_out[ds.name] = {"not_labelled_by_dataset": [g for g in genres if g not in lab],
                                 "unknown_to_model": sorted(lab - set(genres))}
    if not genres:
        raise DatasetError(f"no genre has at least {min_genre_count} labelled training titles "
                           "(lower data.min_genre_count or add data)")
    return Y, M, genres, dropped, left_out


def _encode(vocab: GenreVocab, titles, ds_index, datasets):
    Y = np.stack([vocab.encode(t.genres) for t in titles]).astype(np.float32)
    masks = [vocab.mask(ds.labelled_genres) for ds in datasets]
    M = np.stack([masks[d] for d in ds_index]).astype(np.float32)
    return Y * M, M
