"""Genre names: IMDb spelling as canonical, tolerant parsing of genre cells from any source."""
from __future__ import annotations

import ast
import json
import re

# IMDb's genre list (title.basics.tsv) in IMDb spelling.
IMDB_GENRES = (
    "Action", "Adult", "Adventure", "Animation", "Biography", "Comedy", "Crime", "Documentary",
    "Drama", "Family", "Fantasy", "Film-Noir", "Game-Show", "History", "Horror", "Music", "Musical",
    "Mystery", "News", "Reality-TV", "Romance", "Sci-Fi", "Short", "Sport", "Talk-Show", "Thriller",
    "War", "Western",
)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_CANON = {_key(g): g for g in IMDB_GENRES}
# Synonyms seen in TMDB, MovieLens, MM-IMDb, Kaggle dumps (keys are normalised by _key).
_SYNONYMS = {
    "sciencefiction": "Sci-Fi", "scifi": "Sci-Fi", "sf": "Sci-Fi", "scififantasy": None,
    "filmnoir": "Film-Noir", "noir": "Film-Noir",
    "biopic": "Biography", "bio": "Biography", "biographical": "Biography",
    "doc": "Documentary", "documentaries": "Documentary",
    "historical": "History", "musicals": "Musical",
    "romcom": None, "realitytv": "Reality-TV", "reality": "Reality-TV",
    "gameshow": "Game-Show", "talkshow": "Talk-Show",
    "sports": "Sport", "kids": "Family", "children": "Family", "childrens": "Family",
    "animated": "Animation", "anime": "Animation", "cartoon": "Animation",
    "thrillers": "Thriller", "suspense": "Thriller", "comedies": "Comedy", "dramas": "Drama",
    "horrors": "Horror", "westerns": "Western", "warfilm": "War", "actionadventure": None,
    "mysteries": "Mystery", "romantic": "Romance", "romance": "Romance",
}


def canonical_genre(name: str) -> str | None:
    """Map a genre name in any common spelling to IMDb spelling; unknown names keep their
    title-cased form (so they can be reported), empty -> None."""
    prev = None
    while prev != name:  # quotes/brackets and blanks may interleave: `Foo" ]` -> `Foo`
        prev, name = name, name.strip().strip("\"'[](){}")
    if not name:
        return None
    k = _key(name)
    if not k:
        return None
    if k in _CANON:
        return _CANON[k]
    if k in _SYNONYMS and _SYNONYMS[k]:
        return _SYNONYMS[k]
    return name if any(c.isupper() for c in name) else name.title()


_SPLIT = re.compile(r"\s*[|,;/]\s*")


def parse_genre_cell(cell) -> list[str]:
    """Parse one genre cell: ``Action|Comedy``, ``Action, Comedy``, ``["Action", "Comedy"]``,
    ``action;comedy``, a list, a TMDB-style list of {"name": ...}. Order kept, duplicates dropped."""
    if cell is None:
        return []
    items: list
    if isinstance(cell, (list, tuple)):
        items = list(cell)
    else:
        text = str(cell).strip()
        if not text or text.lower() in {"nan", "none", "null", "\\n"}:
            return []
        items = None
        if text[0] in "[{":
            for loader in (json.loads, ast.literal_eval):
                try:
                    val = loader(text)
                except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                    continue
                items = val if isinstance(val, list) else [val]
                break
        if items is None:
            items = _SPLIT.split(text)
    out: list[str] = []
    for it in items:
        if isinstance(it, dict):
            it = it.get("name") or it.get("genre") or ""
        if isinstance(it, (list, tuple)):
            sub = parse_genre_cell(list(it))
        else:
            s = str(it)
            # a list element may itself be a separated string
            sub = [canonical_genre(p) for p in _SPLIT.split(s)] if _SPLIT.search(s) else [canonical_genre(s)]
        for g in sub:
            if g and g not in out:
                out.append(g)
    return out
