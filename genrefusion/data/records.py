"""Typed records: one ``Title`` per line of ``titles.jsonl`` and the ``GenreVocab`` that encodes labels."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from ..errors import DatasetError

FIELDS = ("id", "imdb_id", "title", "year", "kind", "genres", "plot", "poster", "source")


@dataclass
class Title:
    """One movie or series. ``poster`` is relative to the dataset folder (or None)."""

    id: str
    genres: list[str] = field(default_factory=list)
    plot: str | None = None
    poster: str | None = None
    title: str | None = None
    imdb_id: str | None = None
    year: int | None = None
    kind: str | None = None
    source: str | None = None

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in FIELDS}

    @classmethod
    def from_dict(cls, d: dict, where: str = "") -> "Title":
        """Build from a JSON object; raises DatasetError naming ``where`` and the field on bad types."""
        if not isinstance(d, dict):
            raise DatasetError(f"{where}: expected a JSON object, got {type(d).__name__}")
        tid = d.get("id")
        if tid is None or (isinstance(tid, str) and not tid.strip()):
            raise DatasetError(f"{where}: missing field 'id'")
        if not isinstance(tid, (str, int)) or isinstance(tid, bool):
            raise DatasetError(f"{where}: field 'id' must be a string")
        genres = d.get("genres") or []
        if isinstance(genres, str):
            genres = [genres]
        if not isinstance(genres, list) or not all(isinstance(g, str) for g in genres):
            raise DatasetError(f"{where} id={tid}: field 'genres' must be a list of strings")
        year = d.get("year")
        if year is not None:
            try:
                year = int(year)
            except (TypeError, ValueError):
                year = None
        kind = d.get("kind")
        for name in ("plot", "poster", "title", "imdb_id", "source"):
            v = d.get(name)
            if v is not None and not isinstance(v, str):
                raise DatasetError(f"{where} id={tid}: field '{name}' must be a string or null")
        return cls(
            id=str(tid), genres=list(genres), plot=d.get("plot"), poster=d.get("poster"),
            title=d.get("title"), imdb_id=d.get("imdb_id"), year=year,
            kind=kind if kind in ("movie", "tv") else None, source=d.get("source"),
        )

    def replace(self, **kw) -> "Title":
        return dataclasses.replace(self, **kw)

    @property
    def group_key(self) -> str:
        """Titles sharing an IMDb id are one title for splitting."""
        return self.imdb_id or self.id


class GenreVocab:
    """An ordered genre list with multi-hot encode/decode. Order is stable (sorted by default)."""

    def __init__(self, genres: Iterable[str], sort: bool = True):
        gs = list(dict.fromkeys(g for g in genres if g))
        self.genres: list[str] = sorted(gs) if sort else gs
        self.index = {g: i for i, g in enumerate(self.genres)}

    def __len__(self) -> int:
        return len(self.genres)

    def __iter__(self):
        return iter(self.genres)

    def __contains__(self, g) -> bool:
        return g in self.index

    def __eq__(self, other) -> bool:
        return isinstance(other, GenreVocab) and self.genres == other.genres

    def __repr__(self) -> str:
        return f"GenreVocab({self.genres})"

    def encode(self, genres: Iterable[str], strict: bool = False) -> np.ndarray:
        """Multi-hot float32 vector; unknown genres are ignored (or raise with ``strict``)."""
        y = np.zeros(len(self.genres), dtype=np.float32)
        for g in genres:
            i = self.index.get(g)
            if i is None:
                if strict:
                    raise DatasetError(f"unknown genre {g!r} (known: {', '.join(self.genres)})")
                continue
            y[i] = 1.0
        return y

    def mask(self, labelled: Iterable[str] | None) -> np.ndarray:
        """1 where a dataset labels the genre, 0 where it is unknown (masked from loss/metrics)."""
        if labelled is None:
            return np.ones(len(self.genres), dtype=np.float32)
        return self.encode(labelled)

    def decode(self, y: Sequence[float], threshold: float | Sequence[float] = 0.5) -> list[str]:
        y = np.asarray(y, dtype=np.float64)
        thr = np.broadcast_to(np.asarray(threshold, dtype=np.float64), y.shape)
        return [g for g, v, t in zip(self.genres, y, thr) if v >= t]

    def to_list(self) -> list[str]:
        return list(self.genres)
