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
    "sciencefiction": "Sci-Fi", "scifi": "Sci-Fi", "sf": "Sci-Fi",
    "filmnoir": "Film-Noir", "noir": "Film-Noir",
    "biopic": "Biography", "bio": "Biography", "biographical": "Biography",
    "doc": "Documentary", "documentaries": "Documentary",
    "historical": "History", "musicals": "Musical",
    "romcom": None, "realitytv": "Reality-TV", "reality": "Reality-TV",
    "gameshow": "Game-Show", "talkshow": "Talk-Show",
    "sports": "Sport", "kids": "Family", "children": "Family", "childrens": "Family",
    "animated": "Animation", "anime": "Animation", "cartoon": "Animation",
    "thrillers": "Thriller", "suspense": "Thriller", "comedies": "Comedy", "dramas": "Drama",
    "horrors": "Horror", "westerns": "Western", "warfilm": "War",
    "mysteries": "Mystery", "romantic": "Romance", "romance": "Romance",
}

# TMDB's TV genres that merge two of IMDb's (IMDb has no Politics); collect tmdb maps them through here too
_COMBINED = {"actionadventure": ("Action", "Adventure"), "scififantasy": ("Sci-Fi", "Fantasy"),
             "warpolitics": ("War",)}
# Placeholders that mean "no value" in exported data (pandas, OMDb, IMDb's TSV files), read as missing in
# every cell: genres, plots, poster paths.
MISSING = frozenset({"", "nan", "none", "null", "\\n", "n/a", "na", "-", "unknown"})


def is_missing(v) -> bool:
    return v is None or (isinstance(v, str) and v.strip().lower() in MISSING)


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


_SPLIT = re.compile(r"\s*(?:[|,;]|/(?<!\bn/)(?!a\b))\s*", re.IGNORECASE)  # not the slash of "N/A"


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
        if is_missing(text):
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
        if is_missing(it):  # a JSON null or an "N/A" in a list
            continue
        if isinstance(it, dict):
            it = it.get("name") or it.get("genre") or ""
        if isinstance(it, (list, tuple)):
            sub = parse_genre_cell(list(it))
        else:
            # a list element may itself be a separated string
            sub = [g for p in _SPLIT.split(str(it)) if not is_missing(p)
                   for g in _COMBINED.get(_key(p), (canonical_genre(p),))]
        for g in sub:
            if g and g not in out:
                out.append(g)
    return out
