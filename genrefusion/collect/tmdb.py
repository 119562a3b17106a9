"""The TMDB API route: plot (overview), genres (mapped to IMDb names) and poster per title.

Titles are looked up by TMDB id (``movie:550``, ``tv:1399``) or by IMDb id through ``/find``.
Uses the shared polite client; the API key goes in the query string (v3 key) or an
``Authorization: Bearer`` header (v4 read-access token) and never into the cache or messages.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from ..data.records import Title
from ..errors import BadInput, GenreFusionError
from ..genres import IMDB_GENRES, parse_genre_cell
from ..progress import track
from .common import (TMDB_ID, Candidate, FailureGuard, Report, id_tokens, prefetch_poster, read_id_lines,
                     read_imdb_ids, write_dataset)
from .http import FatalFetchError, FetchError, HttpClient

log = logging.getLogger("genrefusion.collect")

TMDB_API = "https://api.themoviedb.org/3"
TMDB_IMAGES = "https://image.tmdb.org/t/p"
# Smallest TMDB poster width whose 2:3 height (513 px) still covers the 384 px we keep.
POSTER_SIZE = "w342"
JSON_MAX_BYTES = 4 * 1024 * 1024
POSTER_MAX_BYTES = 10 * 1024 * 1024

# TMDB genre lists (/genre/movie/list, /genre/tv/list, language en-US).
TMDB_MOVIE_GENRES = ("Action", "Adventure", "Animation", "Comedy", "Crime", "Documentary", "Drama", "Family",
                     "Fantasy", "History", "Horror", "Music", "Mystery", "Romance", "Science Fiction",
                     "TV Movie", "Thriller", "War", "Western")
TMDB_TV_GENRES = ("Action & Adventure", "Animation", "Comedy", "Crime", "Documentary", "Drama", "Family", "Kids",
                  "Mystery", "News", "Reality", "Sci-Fi & Fantasy", "Soap", "Talk", "War & Politics", "Western")

# TMDB names that parse_genre_cell cannot map on its own. TMDB's TV list adds formats: "TV Movie" and "Soap"
# are formats with no IMDb genre (a soap is usually, but not always, a Drama: dropping is safer than guessing),
# "Talk" / "Reality" are IMDb's Talk-Show / Reality-TV. The merged genres ("Action & Adventure", "War & Politics":
# War only, IMDb has no Politics) and "Kids" (Family) are parse_genre_cell's own, shared with the importers.
TMDB_SPECIAL = {"soap": [], "talk": ["Talk-Show"], "reality": ["Reality-TV"], "tv movie": []}


def map_tmdb_genres(names) -> list[str]:
    """TMDB genre names (strings or ``{"id", "name"}`` dicts) -> IMDb genre names, order kept."""
    out: list[str] = []
    for n in names or []:
        if isinstance(n, dict):
            n = n.get("name")
        if not isinstance(n, str) or not n.strip():
            continue
        key = " ".join(n.lower().split())
        mapped = TMDB_SPECIAL[key] if key in TMDB_SPECIAL else parse_genre_cell(n)
        for g in mapped:
            if g not in out:
                out.append(g)
    return out


def _vocab(names) -> list[str]:
    return sorted({g for g in map_tmdb_genres(names) if g in IMDB_GENRES})


TMDB_MOVIE_VOCAB = _vocab(TMDB_MOVIE_GENRES)
TMDB_TV_VOCAB = _vocab(TMDB_TV_GENRES)


def vocab_for(kinds: set[str]) -> list[str]:
    """Genres a TMDB-built dataset labels. TMDB's TV list has no Horror/Romance/Thriller/History/Music
    and its movie list no News/Talk-Show/Reality-TV, so a dataset mixing both labels only the
    genres both lists map to: anything else would be a false negative for half the titles."""
    if kinds == {"tv"}:
        return list(TMDB_TV_VOCAB)
    if kinds == {"movie"} or not kinds:
        return list(TMDB_MOVIE_VOCAB)
    return sorted(set(TMDB_MOVIE_VOCAB) & set(TMDB_TV_VOCAB))


def kinds_written(cands: list[Candidate], require=()) -> set[str]:
    """The kinds of the titles that will be written. Mixing kinds narrows the vocabulary (``vocab_for``),
    which can leave titles with no genre, skipped; if those were all of one kind, the vocabulary is
    decided again without it, until nothing changes (kinds only shrink, so this ends)."""
    kinds = {c.title.kind for c in cands if c.title.kind}
    while True:
        vocab = set(vocab_for(kinds))
        kept = {c.title.kind for c in cands if c.title.kind in kinds and vocab.intersection(c.title.genres)
                and ("plot" not in require or c.title.plot)
                and ("poster" not in require or c.poster_url or c.poster_data or c.poster_path)}
        if kept == kinds:
            return kinds
        kinds = kept


def read_tmdb_ids(path: str | Path, default_kind: str = "movie") -> list[tuple[str, int]]:
    """(kind, id) pairs from lines ``movie:550``, ``tv/1399`` or a bare ``550`` (``default_kind``), several a
    line (``550, 603``) when the line holds nothing else; else the first word alone (``550 Fight Club 1999``)."""
    out: dict[tuple[str, int], None] = {}  # ordered set
    for n, s in read_id_lines(path):
        ms = [TMDB_ID.match(w) for w in id_tokens(s)] or [None]  # a line of commas holds no word
        if not ms[0]:
            raise BadInput(f"{path} line {n}: not a TMDB id ({s[:60]!r}; expected 550, movie:550 or tv:1399)")
        out.update(dict.fromkeys(((m.group(1) or default_kind).lower(), int(m.group(2)))
                                 for m in (ms if all(ms) else ms[:1])))
    return list(out)


def api_key_from_env(var: str) -> str:
    key = os.environ.get(var, "").strip()
    if not key:
        raise GenreFusionError(f"environment variable {var} is not set: put your TMDB API key "
                               "(v3 key or v4 read-access token) there")
    return key


def auth_for(key: str) -> tuple[dict, dict]:
    """(secret query params, headers) for a TMDB credential: v4 tokens are JWTs (dots, long)."""
    if "." in key and len(key) > 60:
        return {}, {"Authorization": f"Bearer {key}"}
    return {"api_key": key}, {}


def _year(date) -> int | None:
    m = re.match(r"(\d{4})", str(date or ""))
    return int(m.group(1)) if m else None


class TmdbClient:
    def __init__(self, http: HttpClient, base_url: str = TMDB_API, image_base_url: str = TMDB_IMAGES,
                 poster_size: str = POSTER_SIZE, language: str = "en-US"):
        self.http = http
        self.base = base_url.rstrip("/")
        self.images = image_base_url.rstrip("/")
        self.poster_size = poster_size
        self.language = language  # English genre names are what the mapping understands

    def _get(self, path: str, what: str, **params):
        url, params = f"{self.base}{path}", {"language": self.language, **params}
        r = self.http.get(url, params, max_bytes=JSON_MAX_BYTES, what=what)
        try:
            data = r.json(what)
        except FetchError:
            data = None
        if not isinstance(data, dict):
            # a proxy's error page or a JSON list served as 200: not TMDB's answer, so not kept for a re-run
            self.http.forget(url, params)
            got = "JSON that is not an object" if data is not None else "not JSON"
            raise FetchError(f"{what}: expected a JSON object, got {got} ({r.content_type or 'no Content-Type'}, "
                             f"{len(r.body)} bytes)", r.status)
        return data

    def find_imdb(self, tt: str, prefer: str | None = None) -> tuple[str, int] | None:
        """(kind, TMDB id) for a tt-id, or None. Kind ``episode`` / ``season`` (with the series' TMDB id):
        the tt-id is one episode or season of a series, not a title this collector takes."""
        try:
            data = self._get(f"/find/{tt}", f"{tt} /find", external_source="imdb_id")
        except FetchError as err:
            if err.status != 404:
                raise
            # /find answers 200 (empty results) for any tt-id: a 404 is a path the server does not have
            raise FatalFetchError(f"{self.base}/find: HTTP 404; --base-url should end in /3 "
                                  f"(TMDB's API version), e.g. {TMDB_API}", 404) from None
        order = [prefer] if prefer else []
        order += [k for k in ("movie", "tv", "tv_episode", "tv_season") if k not in order]
        for kind in order:
            hits = data.get(f"{kind}_results") or []
            key = "show_id" if kind.startswith("tv_") else "id"
            if hits and isinstance(hits[0], dict) and isinstance(hits[0].get(key), int):
                return kind.removeprefix("tv_"), hits[0][key]
        return None

    def details(self, kind: str, tmdb_id: int) -> dict:
        if kind == "tv":
            return self._get(f"/tv/{tmdb_id}", f"tv:{tmdb_id}", append_to_response="external_ids")
        return self._get(f"/movie/{tmdb_id}", f"movie:{tmdb_id}")

    def poster_url(self, poster_path: str | None) -> str | None:
        if not isinstance(poster_path, str) or not poster_path.strip():
            return None
        return f"{self.images}/{self.poster_size}/{poster_path.lstrip('/')}"

    def to_title(self, kind: str, d: dict, imdb_hint: str | None = None) -> tuple[Title, str | None]:
        imdb_id = d.get("imdb_id") or (d.get("external_ids") or {}).get("imdb_id") or imdb_hint
        if not (isinstance(imdb_id, str) and re.fullmatch(r"tt\d{7,10}", imdb_id)):
            imdb_id = None
        name = d.get("title") if kind == "movie" else d.get("name")
        date = d.get("release_date") if kind == "movie" else d.get("first_air_date")
        plot = " ".join(str(d.get("overview") or "").split()) or None
        t = Title(id=imdb_id or f"tmdb-{kind}-{d.get('id')}", imdb_id=imdb_id, title=name or None, year=_year(date),
                  kind=kind, genres=map_tmdb_genres(d.get("genres")), plot=plot, source="tmdb")
        return t, self.poster_url(d.get("poster_path"))


def resolve_tmdb(items: list, tmdb: TmdbClient, report: Report, by: str = "imdb", prefer: str | None = None,
                 max_failures: int = 10, progress: bool = True) -> list[Candidate]:
    """Phase 1: details (and poster, into the cache) for each id; failures reported and skipped."""
    guard, poster_guard = FailureGuard(max_failures), FailureGuard(max_failures, "poster requests")
    out: list[Candidate] = []
    seen: set[str] = set()
    for item in track(items, "tmdb", "title", progress):
        label = item if by == "imdb" else f"{item[0]}:{item[1]}"
        try:
            if by == "imdb":
                hit = tmdb.find_imdb(item, prefer)
                if hit is None:
                    guard.ok()
                    report.skip(label, "not found on TMDB (/find returned no movie or TV result)")
                    continue
                kind, tid = hit
                if kind in ("episode", "season"):
                    guard.ok()
                    report.skip(label, f"a TV {kind} (of TV show tv:{tid} on TMDB), not a film or series: "
                                       "list the series' id instead")
                    continue
            else:
                kind, tid = item
            d = tmdb.details(kind, tid)
            guard.ok()
        except FatalFetchError:
            raise
        except FetchError as err:
            guard.failed(err)
            report.skip(label, str(err).removeprefix(f"{label} "))
            continue
        t, poster_url = tmdb.to_title(kind, d, imdb_hint=item if by == "imdb" else None)
        if by == "imdb" and t.imdb_id != item:
            report.warn(label, f"TMDB's record ({kind}:{tid}) is for {t.imdb_id}; recorded as {t.imdb_id}")
        if t.id in seen:
            report.skip(label, f"duplicate of {t.id}")
            continue
        seen.add(t.id)
        poster = prefetch_poster(tmdb.http, poster_url, t.id, report, poster_guard,
                                 POSTER_MAX_BYTES) if poster_url else {}
        out.append(Candidate(t, **poster))
    return out


def collect_tmdb(ids_file: str | Path, out: Path, tmdb: TmdbClient, *, by: str = "imdb", kind: str | None = None,
                 name: str | None = None, force: bool = False, require=(), max_failures: int = 10,
                 report: Report | None = None) -> tuple[int, Report]:
    """``genrefusion collect tmdb``: ids -> dataset at ``out``. The genre vocabulary is what TMDB
    can label for the kinds collected (see ``vocab_for``); no Biography, Sport, Musical, ..."""
    report = report or Report()
    items = read_imdb_ids(ids_file) if by == "imdb" else read_tmdb_ids(ids_file, kind or "movie")
    cands = resolve_tmdb(items, tmdb, report, by=by, prefer=kind, max_failures=max_failures)
    kinds = kinds_written(cands, require)
    genres = vocab_for(kinds)
    if len(kinds) > 1:
        log.info("films and series mixed: the genre list is the %d genres both TMDB lists label (not %s)",
                 len(genres), ", ".join(sorted(set(TMDB_MOVIE_VOCAB) ^ set(TMDB_TV_VOCAB))))
    n = write_dataset(out, cands, name=name, genres=genres, source=f"TMDB API ({tmdb.base})", report=report,
                      force=force, require=require,
                      fetch_poster=lambda u: tmdb.http.get(u, max_bytes=POSTER_MAX_BYTES).body,
                      extra_meta={"requested": len(items), "kinds": sorted(kinds),
                                  "genre_mapping": "TMDB -> IMDb: Science Fiction -> Sci-Fi, Action & Adventure -> "
                                  "Action + Adventure, Sci-Fi & Fantasy -> Sci-Fi + Fantasy, War & Politics -> War, "
                                  "Kids -> Family, Talk -> Talk-Show, Reality -> Reality-TV, News -> News; "
                                  "TV Movie and Soap dropped"})
    return n, report
