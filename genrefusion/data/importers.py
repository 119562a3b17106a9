"""Importers: MM-IMDb, CSV/TSV and JSON-lines sources -> the canonical dataset layout.

Each importer only reads its source and yields ``RawTitle`` records; ``write_dataset`` does the
rest the same way for all of them: ids checked, genres normalised (``parse_genre_cell``), plots
cleaned, posters decoded and re-encoded to JPEG under ``posters/`` (in a process pool: decoding is the
slow part), and every dropped item or removed field reported by id with a reason.

Rules: a title without a genre, or with neither a usable poster nor a plot, is dropped. A missing,
corrupt or unsafe poster drops the poster only (the title is kept with its plot). Genres outside
``genres`` (when given) are removed from the title.
"""
from __future__ import annotations

import codecs
import contextlib
import csv
import difflib
import io
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import BadInput, ConfigError, DatasetError
from ..genres import IMDB_GENRES, canonical_genre, is_missing, parse_genre_cell
from ..io import is_under, read_json, resolve_inside, write_json
from ..paths import check_writable_target
from .dataset import SPLIT, TITLES, DatasetWriter, Problem, poster_name
from .images import load_image, save_jpeg
from .records import Title

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_INLINE = 64  # below this many posters a process pool costs more than it saves

# Common column / field names per canonical field (compared after lower-casing and dropping
# non-alphanumerics), first match wins.
GUESSES: dict[str, tuple[str, ...]] = {
    "id": ("id", "movieid", "movie_id", "titleid", "imdbid", "imdb_id", "tconst", "filmid"),
    "imdb_id": ("imdbid", "imdb_id", "tconst", "imdb", "imdbtitleid"),
    "title": ("title", "name", "primarytitle", "movietitle", "originaltitle", "movie", "film", "seriestitle"),
    "plot": ("plot", "overview", "summary", "description", "synopsis", "storyline", "plotsummary", "plotoutline"),
    "genres": ("genres", "genre", "genrenames", "genrelist"),
    "poster": ("poster", "posterpath", "image", "imagepath", "img", "imgpath", "posterfile", "filename",
               "posterurl", "imageurl", "cover", "coverurl", "file"),
    "year": ("year", "releasedate", "releaseyear", "startyear", "date"),
    "kind": ("kind", "type", "titletype"),
}
FIELDS = tuple(GUESSES)


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


@dataclass
class RawTitle:
    """One source record before checks. ``where`` locates it in the source (row/line/file)."""

    where: str
    id: str | None
    genres: list[str] = field(default_factory=list)
    plot: str | None = None
    title: str | None = None
    imdb_id: str | None = None
    year: int | None = None
    kind: str | None = None
    poster: Path | None = None          # resolved source file
    poster_note: Problem | None = None  # why the poster cannot be used (missing, unsafe, URL)
    plot_note: Problem | None = None    # why the plot was dropped (not text)
    drop: Problem | None = None         # the record is unusable (bad JSON, ...)
    source_id: str | None = None        # the record's own id as written, echoed back by batch prediction


@dataclass
class ImportReport:
    out: str
    source: str
    imported: int = 0
    with_poster: int = 0
    with_plot: int = 0
    dropped: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)
    genres: list[str] = field(default_factory=list)
    split: dict[str, int] | None = None
    split_unmatched: int = 0   # split ids that match no source record
    split_unassigned: int = 0  # imported titles in no part of the split
    # genres outside IMDb's list kept as labels of their own (no --genres given): name -> titles
    custom_genres: dict[str, int] = field(default_factory=dict)

    def dropped_by_reason(self) -> dict[str, int]:
        return dict(Counter(p.kind for p in self.dropped))

    def to_dict(self) -> dict:
        return {
            "out": self.out, "source": self.source, "imported": self.imported, "with_poster": self.with_poster,
            "with_plot": self.with_plot, "genres": self.genres, "split": self.split,
            "split_unmatched": self.split_unmatched, "split_unassigned": self.split_unassigned,
            "custom_genres": self.custom_genres,
            "dropped_by_reason": self.dropped_by_reason(),
            "dropped": [{"id": p.id, "reason": p.kind, "message": p.message} for p in self.dropped],
            "notes": [{"id": p.id, "reason": p.kind, "message": p.message} for p in self.notes],
        }

    def lines(self) -> list[str]:
        by = self.dropped_by_reason()
        out = [f"imported {self.imported} titles into {self.out} ({self.with_poster} with poster, "
               f"{self.with_plot} with plot, {len(self.genres)} genres)",
               f"dropped {len(self.dropped)}" + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(by.items())) + ")"
                                                 if by else "")]
        out += [f"dropped {p.named()}: {p.kind}: {p.message}" for p in self.dropped]
        out += [f"{_NOTE_LABELS.get(p.kind) or _kept_without(p.kind)}: {p.named()}: {p.kind}: {p.message}"
                for p in self.notes]
        if self.custom_genres:  # a typo or a spelling we do not know would otherwise become a genre silently
            out.append("genres not in IMDb's list, kept as labels of their own: "
                       + ", ".join(f"{g!r} ({n} title{'s' * (n != 1)})" for g, n in self.custom_genres.items())
                       + "; if they are typos or other spellings, fix the cells, or pass --genres with the ones to keep")
        if self.split:
            out.append("split kept: " + ", ".join(f"{k} {v}" for k, v in self.split.items())
                       + (f"; {self.split_unmatched} split ids match no record; {self.split_unassigned} imported "
                          "titles are in no part" if self.split_unmatched or self.split_unassigned else ""))
        return out


_NOTE_LABELS = {"unknown-genre": "genre removed", "split-duplicate": "split"}


def _kept_without(kind: str) -> str:
    return f"kept without {'poster' if 'poster' in kind or kind == 'unsafe-path' else 'field'}"


# -- small value parsers ------------------------------------------------------------------
def clean_text(v, keep_placeholders: bool = False) -> str | None:
    """A plot/title value -> stripped text without control characters, or None when empty, an object, or a
    placeholder such as "N/A" (``keep_placeholders``: titles, where "Unknown" is a film). Lists (MM-IMDb
    plots) are joined with a space."""
    if v is None or isinstance(v, dict):
        return None
    if isinstance(v, (list, tuple)):
        v = " ".join(s for s in (clean_text(x) for x in v) if s)
    v = _CONTROL.sub(" ", str(v)).strip()
    return None if not v or (is_missing(v) and not keep_placeholders) else v


def parse_year(v) -> int | None:
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return int(v) if 1870 <= v <= 2100 else None
    m = re.search(r"(18[7-9]\d|19\d\d|20\d\d|2100)", str(v))
    return int(m.group(1)) if m else None


def parse_imdb_id(v, digits_ok: bool = False) -> str | None:
    """``tt0111161``, an IMDb URL, or (``digits_ok``: from a column known to hold IMDb ids, e.g.
    MovieLens ``imdbId``) bare digits -> ``tt`` + at least 7 digits. Other ids (TMDB) -> None."""
    if v is None or isinstance(v, bool):
        return None
    s = str(v).strip()
    if isinstance(v, float) and v.is_integer():
        s = str(int(v))
    m = re.fullmatch(r"(?:tt)?0*(\d{1,10})", s, re.IGNORECASE)
    if m and (s.lower().startswith("tt") or (digits_ok and s.isdigit())):
        return f"tt{int(m.group(1)):07d}"
    m = re.search(r"\btt(\d{5,10})\b", s)  # an IMDb URL
    return f"tt{m.group(1)}" if m else None


# IMDb's kinds (title.basics titleType, IMDbPY's kind, OMDb's Type) by _norm: a TV movie is a movie
_KINDS = {"movie": "movie", "tvmovie": "movie", "videomovie": "movie", "video": "movie", "short": "movie",
          "tvseries": "tv", "tvminiseries": "tv", "series": "tv", "episode": "tv", "tvepisode": "tv", "tvshort": "tv",
          "tvspecial": "tv", "tvpilot": "tv", "videogame": None, "game": None}


def parse_kind(v) -> str | None:
    if v is None:
        return None
    if _norm(v) in _KINDS:
        return _KINDS[_norm(v)]
    s = str(v).lower()
    if "game" in s:
        return None
    if any(k in s for k in ("tv", "series", "episode", "show")):
        return "tv"
    if any(k in s for k in ("movie", "film", "video", "feature", "short")):
        return "movie"
    return None


def _resolve_poster(cell, images: Path, where: str, tid: str | None) -> tuple[Path | None, Problem | None]:
    """Poster cell -> a source file under ``images``, or a note saying why not (never escapes ``images``)."""
    name, located = tid or where, not tid
    if is_missing(cell):
        return None, None
    cell = str(cell).strip()
    if re.match(r"^[a-z][a-z0-9+.-]*://", cell, re.IGNORECASE):
        return None, Problem(name, "poster-url", f"poster is a URL, not downloaded: {cell}", located)
    rel = cell.replace("\\", "/")  # a Windows path
    given = Path(rel)
    if given.is_absolute() and is_under(given, images) and given.is_file():
        return given, None  # an absolute path inside the images folder (--images / admits any)
    # TMDB poster_path values look absolute ("/abc.jpg") but are relative to an image folder; so is a
    # Windows drive path (C:/data/a.jpg) from another machine
    rel_stripped = re.sub(r"^[a-z]:", "", rel, flags=re.IGNORECASE).lstrip("/")
    try:
        path = resolve_inside(images, rel_stripped)
    except DatasetError as err:
        return None, Problem(name, "unsafe-path", f"poster {err} (relative to {images})", located)
    if path.is_file():
        return path, None
    base = images / Path(rel_stripped).name  # a path from another machine: try the file name
    if base.is_file() and is_under(base, images):
        return base, None
    if given.is_absolute() and given.is_file():  # the user's own absolute path: say how to allow it
        return None, Problem(name, "missing-poster", f"poster {cell} is outside the images folder {images.resolve()} "
                                                     "(posters are read inside it); pass --images with a folder that "
                                                     "holds it", located)
    return None, Problem(name, "missing-poster", f"poster file not found: {cell}", located)


def _poster_by_id(tid: str | None, images: Path) -> Path | None:
    if not tid:
        return None
    for ext in IMAGE_EXTS:
        p = images / f"{tid}{ext}"
        if p.is_file() and is_under(p, images):
            return p
    return None


# -- writing --------------------------------------------------------------------------------
def _convert_chunk(items: list[tuple[str, str, str, int | None]]) -> list[tuple[str, str | None]]:
    """Worker: decode each source poster and save it as JPEG at its destination."""
    out = []
    for tid, src, dest, max_side in items:
        try:
            im = load_image(src, name=f"poster {Path(src).name}")
            save_jpeg(im, Path(dest), max_side=max_side)
            out.append((tid, None))
        except BadInput as err:
            out.append((tid, str(err)))
        except Exception as err:  # noqa: BLE001 - a disk error on one poster is reported, not fatal
            out.append((tid, f"poster {Path(src).name}: cannot convert ({err})"))
    return out


def _convert_posters(items, workers: int | None) -> dict[str, str | None]:
    from concurrent.futures import ProcessPoolExecutor

    from .validate import default_workers

    workers = workers or default_workers()
    if workers <= 1 or len(items) < _INLINE:
        return dict(_convert_chunk(items))
    n_chunks = min(len(items), workers * 8)
    size = -(-len(items) // n_chunks)
    result: dict[str, str | None] = {}
    ex = ProcessPoolExecutor(max_workers=workers)
    try:
        for part in ex.map(_convert_chunk, [items[i:i + size] for i in range(0, len(items), size)]):
            result.update(part)
    finally:  # interrupted: the chunks not started are cancelled, the running ones awaited (no orphan workers)
        ex.shutdown(wait=True, cancel_futures=True)
    return result


def check_out(out: str | os.PathLike, sources: Iterable[str | os.PathLike], force: bool) -> Path:
    """Refuse an output folder that is protected, already a dataset (without ``force``), or
    overlaps the source (the source is never modified)."""
    out = Path(out)
    check_writable_target(out / TITLES, "an imported dataset")
    for src in sources:
        if src is None:
            continue
        src = Path(src)
        if is_under(src, out) or (src.is_dir() and is_under(out, src)):
            raise DatasetError(f"{out}: output folder overlaps the source {src}; pick another --out")
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out}: exists and is not a folder")
    if (out / TITLES).exists() and not force:
        raise DatasetError(f"{out}: already holds a dataset (use --force to overwrite)")
    return out


def write_dataset(raws: Iterable[RawTitle], out: str | os.PathLike, *, source: str, name: str | None = None,
                  genres: list[str] | None = None, force: bool = False, max_side: int | None = None,
                  workers: int | None = None, split: dict[str, list[str]] | None = None,
                  id_map: dict[str, str] | None = None, sources: Iterable = ()) -> ImportReport:
    """Check, normalise and write ``raws`` as a canonical dataset at ``out`` (see module docstring).

    ``split`` (part -> source ids, mapped through ``id_map``) is written as ``split.json`` for the
    titles that were imported.
    """
    out = check_out(out, sources, force)
    rep = ImportReport(out=str(out), source=source)
    vocab = [canonical_genre(g) for g in genres] if genres else None
    kept = _keep(raws, vocab, rep)

    # posters: decode + re-encode in parallel, straight into the dataset being written: the output folder, or,
    # when it replaces a dataset, a folder beside it swapped in whole (the old one stays whole if this run stops)
    made = [d for d in (out / "posters", out) if not d.exists()]  # removed again when no dataset is written
    out.mkdir(parents=True, exist_ok=True)
    writer = DatasetWriter(out, name=name or out.resolve().name, genres=None, source=source, overwrite=force,
                           max_side=max_side, stage=force and (out / TITLES).is_file())
    dest_of: dict[str, str] = {}
    used: set[str] = set()
    jobs = []
    for r in kept:
        if r.poster is None:
            continue
        rel = poster_name(r.id)
        stem, n = rel[:-4], 1
        while rel in used:  # two ids that differ only in unsafe characters
            rel, n = f"{stem}_{n}.jpg", n + 1
        used.add(rel)
        dest_of[r.id] = rel
        jobs.append((r.id, str(r.poster), str(writer.dir / rel), max_side))

    def discard() -> None:  # no dataset written: the posters converted and the folders made go too
        writer.abort()
        _unlink_posters(writer.dir, {Path(d).name for d in dest_of.values()})
        for d in made:
            with contextlib.suppress(OSError):
                d.rmdir()

    try:
        failures = _convert_posters(jobs, workers) if jobs else {}
        written, present = _write_titles(writer, kept, dest_of, failures, source, rep)
    except BaseException:  # Ctrl-C / SIGTERM included
        discard()
        raise
    if not rep.imported:  # an empty dataset would only block the rerun
        discard()
        return rep
    rep.genres = list(vocab) if vocab else sorted(present)
    if not vocab:
        rep.custom_genres = {g: present[g] for g in sorted(present) if g not in IMDB_GENRES}
    writer.genres = rep.genres
    writer.close()

    _unlink_posters(out, {Path(d).name for d in dest_of.values()} - written)  # converted, then the title dropped

    if split:
        _write_split(out, split, id_map, {r.id for r in kept} - {p.id for p in rep.dropped}, writer.name, rep)
    elif force and (out / SPLIT).exists():
        (out / SPLIT).unlink()  # a split of the overwritten dataset no longer matches its ids
    return rep


def _unlink_posters(root: Path, names: Iterable[str]) -> None:
    for fname in names:
        with contextlib.suppress(OSError):
            (root / "posters" / fname).unlink()


def _check_vocab(vocab: list[str], seen: set[str]) -> None:
    """A --genres name neither in IMDb's list nor in the data is a typo, not a genre with no titles."""
    for g in vocab:
        if g not in IMDB_GENRES and g not in seen:
            close = difflib.get_close_matches(g, [*IMDB_GENRES, *sorted(seen - set(IMDB_GENRES))], n=1)
            raise ConfigError(f"--genres: {g!r} is neither an IMDb genre nor a genre of the data"
                              + (f"; did you mean {close[0]!r}?" if close else ""))


def _keep(raws: Iterable[RawTitle], vocab: list[str] | None, rep: ImportReport) -> list[RawTitle]:
    """The records to import: an id (once), a genre (in ``vocab`` if given); the others go to ``rep.dropped``."""
    kept: list[RawTitle] = []
    seen: dict[str, str] = {}  # id -> where its imported copy is
    genres_seen: set[str] = set()
    vocab_set = set(vocab) if vocab else None
    for r in raws:
        genres_seen.update(r.genres)
        if r.drop is not None:
            rep.dropped.append(r.drop)
            continue
        if not r.id:
            rep.dropped.append(Problem(r.where, "missing-id", "no id (and no IMDb id) in this record", True))
            continue
        if r.id in seen:
            rep.dropped.append(Problem(r.id, "duplicate-id", f"{r.where}: id already imported from {seen[r.id]}"))
            continue
        gs = [g for g in r.genres if g]
        if vocab_set is not None:
            unknown = [g for g in gs if g not in vocab_set]
            if unknown and len(unknown) < len(gs):
                rep.notes.append(Problem(r.id, "unknown-genre", f"{', '.join(unknown)} not in --genres"))
            gs = [g for g in gs if g in vocab_set]
            if not gs and r.genres:
                rep.dropped.append(Problem(r.id, "no-genre", f"none of its genres ({', '.join(r.genres)}) is in --genres"))
                continue
        if not gs:
            rep.dropped.append(Problem(r.id, "no-genre", "no genre"))
            continue
        r.genres = gs
        if isinstance(r.plot, dict):  # {"en": ..., "fr": ...}: not ours to pick one
            r.plot_note = Problem(r.id, "bad-plot", "plot is a JSON object, not text; dropped")
        r.plot = clean_text(r.plot)
        seen[r.id] = r.where
        kept.append(r)
    if vocab:
        _check_vocab(vocab, genres_seen)
    return kept


def _write_titles(writer: DatasetWriter, kept: list[RawTitle], dest_of: dict[str, str], failures: dict,
                  source: str, rep: ImportReport) -> tuple[set[str], Counter]:
    """Write the kept titles (a title left with neither poster nor plot is dropped); returns the poster file
    names written and the genres present, with their title counts."""
    present: Counter = Counter()
    written: set[str] = set()
    try:
        for r in kept:
            rel = dest_of.get(r.id)
            if rel is not None and failures.get(r.id):
                r.poster_note = Problem(r.id, "bad-poster", failures[r.id])
                rel = None
            notes = [n for n in (r.poster_note, r.plot_note) if n is not None]
            if rel is None and r.plot is None:
                why = "".join(f" ({n.message})" for n in notes)
                rep.dropped.append(Problem(r.id, "no-input", f"neither a usable poster nor a plot{why}"))
                continue
            rep.notes += notes
            t = Title(id=r.id, genres=r.genres, plot=r.plot, title=clean_text(r.title, True), imdb_id=r.imdb_id,
                      year=r.year, kind=r.kind, source=source)
            writer.add(t, poster_file=rel)
            if rel:
                written.add(Path(rel).name)
            present.update(r.genres)
            rep.imported += 1
            rep.with_poster += rel is not None
            rep.with_plot += r.plot is not None
    except BaseException as err:
        writer.abort(err)
        raise
    return written, present


def _write_split(out: Path, split: dict[str, list], id_map: dict[str, str] | None, imported_ids: set[str],
                 name: str, rep: ImportReport) -> None:
    """``split.json`` for the imported titles. Split ids are mapped as the records' ids were: through ``id_map``
    (source id -> our id), else as IMDb ids (``17``, ``"tt0000017"`` and ``"0000017"`` are one title). An id in
    two parts stays in the first; ids of no record and imported titles in no part are counted in ``rep``."""
    id_map = id_map or {}
    known = set(id_map.values()) | imported_ids
    parts: dict[str, list[str]] = {p: [] for p in ("train", "dev", "test")}
    part_of: dict[str, str] = {}
    for part, ids in split.items():
        for sid in ids:
            tid = id_map.get(str(sid)) or parse_imdb_id(sid, digits_ok=True) or str(sid)
            if tid not in known:
                rep.split_unmatched += 1
            elif tid in part_of:
                if part_of[tid] != part:
                    rep.notes.append(Problem(tid, "split-duplicate", f"listed in {part_of[tid]} and {part}; "
                                                                     f"kept in {part_of[tid]}"))
            else:
                part_of[tid] = part
                if tid in imported_ids:
                    parts[part].append(tid)
    rep.split_unassigned = len(imported_ids - set(part_of))
    write_json(out / SPLIT, {"seed": None, "dev": None, "test": None, "datasets": [name], "parts": parts},
               indent=1)
    rep.split = {p: len(v) for p, v in parts.items()}


# -- MM-IMDb --------------------------------------------------------------------------------
def _strip_author(plot):
    return plot.rsplit("::", 1)[0] if isinstance(plot, str) else plot


_SPLIT_ALIASES = {"train": "train", "dev": "dev", "val": "dev", "valid": "dev", "validation": "dev", "test": "test"}


def read_mmimdb(src: str | os.PathLike) -> tuple[Iterator[RawTitle], dict[str, list[str]] | None, dict[str, str]]:
    """MM-IMDb layout: ``SRC/dataset/<id>.json`` (+ ``<id>.jpeg``) and optional ``SRC/split.json``.
    ``SRC`` may also be the ``dataset/`` folder itself. Returns (records, split, source id -> our id)."""
    src = Path(src)
    if not src.is_dir():
        raise DatasetError(f"{src}: MM-IMDb folder not found")
    folder = src / "dataset" if (src / "dataset").is_dir() else src
    # one listing: records, and images by stem whatever the case of their extension (0111161.JPEG);
    # macOS "._*" files and other dot-files are not records
    entries = sorted(f for f in folder.iterdir() if not f.name.startswith(".") and f.is_file())
    files = [f for f in entries if f.suffix.lower() == ".json" and f.name.lower() != SPLIT]
    images: dict[str, Path] = {}
    for f in entries:
        if f.suffix.lower() in IMAGE_EXTS:
            images.setdefault(f.stem, f)
    if not files:
        nested = next((d for d in sorted(src.iterdir()) if (d / "dataset").is_dir()), None)
        raise DatasetError(f"{src}: no MM-IMDb records (expected dataset/<id>.json)"
                           + (f"; {nested.name}/dataset/ is one level down: pass {nested}" if nested else ""))
    split_path = next((p for p in (src / SPLIT, folder.parent / SPLIT, folder / SPLIT) if p.is_file()), None)
    split = None
    if split_path is not None:
        raw = read_json(split_path, "MM-IMDb split.json")
        if not isinstance(raw, dict):
            raise DatasetError(f"{split_path}: expected an object with train/dev/test id lists")
        split = {}
        for k, ids in raw.items():
            part = _SPLIT_ALIASES.get(str(k).lower())
            if part is None or not isinstance(ids, list):
                raise DatasetError(f"{split_path}: unexpected entry {k!r} (train/dev/test id lists)")
            split.setdefault(part, []).extend(ids)  # ids normalised as the records' ids (_write_split)

    id_map = {f.stem: parse_imdb_id(f.stem, digits_ok=True) or f"mmimdb-{f.stem}" for f in files}

    def gen() -> Iterator[RawTitle]:
        for f in files:
            where = f"dataset/{f.name}"
            tid = id_map[f.stem]
            try:
                d = json.loads(f.read_bytes().decode("utf-8-sig"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                yield RawTitle(where, tid, drop=Problem(tid, "bad-record", f"{where}: not valid JSON ({err})"))
                continue
            if not isinstance(d, dict):
                yield RawTitle(where, tid, drop=Problem(tid, "bad-record", f"{where}: expected a JSON object"))
                continue
            img = images.get(f.stem)
            note = None if img else Problem(tid, "missing-poster", f"dataset/{f.stem}.jpeg not found")
            plot = d.get("plot")  # IMDbPY plots end in "::author <email>"
            plot = [_strip_author(x) for x in plot] if isinstance(plot, list) else _strip_author(plot)
            yield RawTitle(
                where, tid, genres=parse_genre_cell(d.get("genres")),
                plot=clean_text(plot) or clean_text(d.get("plot outline")),
                title=clean_text(d.get("title"), True),
                imdb_id=parse_imdb_id(d.get("imdb_id") or d.get("imdbID"), digits_ok=True) or
                (tid if tid.startswith("tt") else None),
                year=parse_year(d.get("year")), kind=parse_kind(d.get("kind")), poster=img, poster_note=note)

    return gen(), split, id_map


# -- CSV / TSV ------------------------------------------------------------------------------
_TRUE = {"1", "1.0", "true", "yes", "y", "x", "t"}


def _decode(path: Path, encoding: str) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"{path}: file not found") from None
    except OSError as err:
        raise BadInput(f"{path}: cannot read ({err.strerror})") from None
    utf8 = encoding.lower().replace("_", "-") in ("utf-8-sig", "utf-8", "utf8")
    if utf8 and data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):  # never UTF-8: Excel's "Unicode text"
        encoding = "utf-16"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise BadInput(f"{path}: line {line}: not valid {'utf-8' if utf8 else encoding} (byte {err.start}); "
                       "pass --encoding (e.g. cp1252)") from None
    except LookupError:
        raise ConfigError(f"--encoding: unknown encoding {encoding!r}") from None


def guess_columns(header: list[str]) -> dict[str, str]:
    """Map canonical fields to header names using ``GUESSES`` (each column used once)."""
    by_norm = {}
    for h in header:
        by_norm.setdefault(_norm(h), h)
    found: dict[str, str] = {}
    used: set[str] = set()
    for fld in ("imdb_id", "id", "title", "plot", "genres", "poster", "year", "kind"):
        for cand in GUESSES[fld]:
            h = by_norm.get(_norm(cand))
            if h is not None and (h not in used or fld == "id"):
                found[fld] = h
                used.add(h)
                break
    # "id" may be the same column as "imdb_id" (e.g. tconst) -- but prefer a dedicated id column
    return found


def wide_genre_columns(header: list[str], exclude: Iterable[str] = ()) -> dict[str, str]:
    """Header names that are IMDb genre names (one 0/1 column per genre) -> canonical genre."""
    excl = set(exclude)
    out = {}
    for h in header:
        if h in excl:
            continue
        g = canonical_genre(h)
        if g in IMDB_GENRES:
            out[h] = g
    return out


def sniff_delimiter(text: str, sep: str | None = None) -> str:
    """The CSV delimiter: ``sep`` when given, else csv.Sniffer on the head of the file, checked
    against the header (genre cells full of ``|`` or ``;`` can fool the sniffer)."""
    if sep:
        d = {"\\t": "\t", "tab": "\t", "TAB": "\t"}.get(sep, sep)
        if len(d) != 1 or d in "\"\r\n":
            raise ConfigError(f"--sep: must be one character (or '\\t' for a tab), got {sep!r}")
        return d
    head = text[:64 * 1024]
    first = head.splitlines()[0] if head else ""
    candidates = []
    try:
        candidates.append(csv.Sniffer().sniff(head, delimiters=",\t;|").delimiter)
    except csv.Error:
        pass
    candidates += [d for d in ("\t", ",", ";", "|") if d not in candidates]

    def score(d: str):
        try:
            rows = list(csv.reader(io.StringIO(head), delimiter=d))[:50]
        except csv.Error:
            return (-1, 0, 0)
        if not rows or len(rows[0]) < 2:
            return (-1, 0, 0)
        n = len(rows[0])
        consistent = sum(len(r) == n for r in rows[1:-1] if r) / max(1, len([r for r in rows[1:-1] if r]))
        known = len(guess_columns(rows[0])) + len(wide_genre_columns(rows[0]))
        return (round(consistent, 1), known, -candidates.index(d))

    best = max(candidates, key=score)
    if score(best)[0] < 0:
        if first.count("\t"):
            return "\t"
        return ","
    return best


def _csv_columns(path: Path, header: list[str], columns: dict[str, str] | None, genre_columns: str,
                 require_genres: bool, images) -> tuple[dict[str, str], dict[str, str]]:
    """(field -> column, wide genre column -> genre): the user's ``columns``, the rest guessed from ``header``."""
    cols = guess_columns(header)
    for fld, h in (columns or {}).items():
        if fld not in FIELDS:
            raise ConfigError(f"unknown column field {fld!r} (one of {', '.join(FIELDS)})")
        if h not in header:
            raise ConfigError(f"--{fld.replace('_id', '')}-col: column {h!r} not in {path.name} "
                              f"(columns: {', '.join(header)})")
        cols[fld] = h
    if "id" not in cols and "imdb_id" in cols:
        cols["id"] = cols["imdb_id"]
    wide: dict[str, str] = {}
    if genre_columns == "wide" or (genre_columns == "auto" and "genres" not in cols):
        wide = wide_genre_columns(header, exclude=set(cols.values()))
        if genre_columns == "wide" and not wide:
            raise ConfigError(f"{path.name}: --genre-columns wide but no column is named after an IMDb genre")
        if genre_columns == "auto" and len(wide) < 3:
            wide = {}
        if wide:
            cols.pop("genres", None)
    # require_genres=False: unlabelled input (``predict --batch``), genres are optional there
    if "genres" not in cols and not wide and require_genres:
        raise DatasetError(f"{path}: no genre column found (columns: {', '.join(header)}); pass --genres-col")
    if "plot" not in cols and "poster" not in cols and images is None:
        raise DatasetError(f"{path}: neither a plot nor a poster column found (columns: {', '.join(header)}); "
                           "pass --plot-col / --poster-col")
    return cols, wide


def _misquoted(row_text: str, delim: str) -> bool:
    """Whether one CSV row spanning several lines breaks the quoting rules: a lenient reader took the lines after
    an unclosed quote into one field, where a strict one stops."""
    try:
        next(csv.reader(io.StringIO(row_text, newline=""), delimiter=delim, strict=True), None)
    except csv.Error:
        return True
    return False


def read_csv(path: str | os.PathLike, *, images: str | os.PathLike | None = None, columns: dict[str, str] | None = None,
             sep: str | None = None, genre_columns: str = "auto", encoding: str = "utf-8-sig",
             id_prefix: str | None = None, require_genres: bool = True) -> tuple[Iterator[RawTitle], dict]:
    """Read a CSV/TSV; returns (records, info) where info tells the delimiter and the columns used.

    ``columns`` maps canonical fields (id, imdb_id, title, plot, genres, poster, year, kind) to header
    names; unnamed fields are guessed. ``genre_columns``: "auto" (wide 0/1 columns when no genres
    column exists and several headers are IMDb genres), "wide" (force), "none".
    """
    path = Path(path)
    text = _decode(path, encoding)
    delim = sniff_delimiter(text, sep)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetError(f"{path}: empty file") from None
    except csv.Error as err:
        raise DatasetError(f"{path}: cannot parse the header ({err})") from None
    header = [h.strip() for h in header]
    cols, wide = _csv_columns(path, header, columns, genre_columns, require_genres, images)
    img_root = Path(images) if images is not None else path.parent
    if images is not None and not img_root.is_dir():
        raise BadInput(f"{img_root}: image folder not found")
    idx = {h: i for i, h in enumerate(header)}
    prefix = id_prefix or _norm(path.stem) or "csv"
    info = {"delimiter": delim, "columns": cols, "wide_genre_columns": sorted(wide.values()), "images": str(img_root)}

    def cell(row, fld):
        h = cols.get(fld)
        if h is None:
            return None
        i = idx[h]
        v = row[i].strip() if i < len(row) else ""
        return v or None

    def gen() -> Iterator[RawTitle]:
        n, start, lines = 0, reader.line_num + 1, None
        try:
            for row in reader:
                first, start = start, reader.line_num + 1  # the row's lines: first .. reader.line_num
                where = f"row {reader.line_num}"
                if reader.line_num > first:  # a quoted field spans lines: a plot, or a quote left open?
                    lines = lines or io.StringIO(text, newline="").readlines()
                    if _misquoted("".join(lines[first - 1:reader.line_num]), delim):
                        raise DatasetError(f"{path}: line {first}: unbalanced quote: a quoted field opened in this "
                                           f"row does not end properly, so lines {first}-{reader.line_num} would be "
                                           "read as one title; fix the quote")
                if not any(c.strip() for c in row):
                    continue
                n += 1  # data rows only: <name>-<n> ids do not shift with blank lines
                if len(row) > len(header):  # short rows are padded, long ones are misparsed
                    yield RawTitle(where, None, drop=Problem(where, "bad-record",
                                                             f"{len(row)} fields, header has {len(header)}", True))
                    continue
                raw_id = cell(row, "id")
                imdb = parse_imdb_id(cell(row, "imdb_id"), digits_ok=True) or parse_imdb_id(raw_id)
                # like the shipped data: the IMDb id when known, else the source's id, else <name>-<n>
                tid = imdb or raw_id or f"{prefix}-{n}"
                if wide:
                    genres = [g for h, g in wide.items() if idx[h] < len(row) and row[idx[h]].strip().lower() in _TRUE]
                else:
                    genres = parse_genre_cell(cell(row, "genres"))
                poster, note = _resolve_poster(cell(row, "poster"), img_root, where, tid)
                if poster is None and note is None and images is not None:
                    poster = _poster_by_id(raw_id or tid, img_root)
                yield RawTitle(where, tid, genres=genres, plot=cell(row, "plot"), title=cell(row, "title"),
                               imdb_id=imdb, year=parse_year(cell(row, "year")), kind=parse_kind(cell(row, "kind")),
                               poster=poster, poster_note=note, source_id=raw_id)
        except csv.Error as err:
            raise DatasetError(f"{path}: line {reader.line_num}: malformed CSV ({err})") from None

    return gen(), info


# -- JSON lines -----------------------------------------------------------------------------
def parse_field_map(spec: str | None) -> dict[str, str]:
    """``id=movie_id,plot=overview,genres=genre_names`` -> {field: source key}."""
    out: dict[str, str] = {}
    if not spec:
        return out
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise ConfigError(f"--map: expected FIELD=KEY, got {item!r}")
        k, v = (s.strip() for s in item.split("=", 1))
        if k == "imdb":
            k = "imdb_id"
        if k not in FIELDS:
            raise ConfigError(f"--map: unknown field {k!r} (one of {', '.join(FIELDS)})")
        if not v:
            raise ConfigError(f"--map: empty source key for {k!r}")
        out[k] = v
    return out


def _get(d: dict, key: str, default=None):
    """Dotted keys reach into nested objects (``images.poster``)."""
    cur = d
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur


_ABSENT = object()


def read_jsonl(path: str | os.PathLike, *, field_map: dict[str, str] | None = None,
               images: str | os.PathLike | None = None, id_prefix: str | None = None) -> Iterator[RawTitle]:
    """Any JSON-lines file: mapped fields first, then same-name and common-name keys."""
    path = Path(path)
    if path.is_dir():
        raise BadInput(f"{path}: is a folder, expected a JSON-lines file")
    if not path.is_file():
        raise BadInput(f"{path}: file not found")
    img_root = Path(images) if images is not None else path.parent
    if images is not None and not img_root.is_dir():
        raise BadInput(f"{img_root}: image folder not found")
    fmap = dict(field_map or {})
    prefix = id_prefix or _norm(path.stem) or "jsonl"
    found: set[str] = set()  # mapped fields whose key some record holds
    keys: set[str] = set()   # the records' top-level keys

    def value(d: dict, fld: str):
        if fld in fmap:
            v = _get(d, fmap[fld], _ABSENT)
            if v is _ABSENT:
                return None
            found.add(fld)
            return v
        norm = {_norm(k): k for k in d}
        for cand in GUESSES[fld]:
            k = norm.get(_norm(cand))
            if k is not None:
                return d[k]
        return None

    n_lines = 0  # non-blank lines
    with open(path, "rb") as fh:
        first = True
        for lineno, raw in enumerate(fh, 1):
            where = f"line {lineno}"
            if not raw.strip():
                continue
            n_lines += 1
            head, first = first and raw.decode("utf-8-sig", "replace").strip(), False
            if head and (head[0] == "[" or head == "{"):  # no JSON-lines file starts so: say what it is
                kind, jq = ("a JSON array", "'.[]'") if head[0] == "[" else ("pretty-printed JSON", ".")
                raise DatasetError(f"{path}: looks like {kind}, not JSON lines (one object per line); "
                                   f"convert it first, e.g. jq -c {jq} {path.name} > {path.stem}.jsonl")
            try:
                d = json.loads(raw.decode("utf-8-sig"))
            except UnicodeDecodeError:
                yield RawTitle(where, None, drop=Problem(where, "bad-record", "not valid UTF-8", True))
                continue
            except json.JSONDecodeError as err:
                yield RawTitle(where, None, drop=Problem(where, "bad-record", f"malformed JSON ({err.msg})", True))
                continue
            if not isinstance(d, dict):
                yield RawTitle(where, None, drop=Problem(where, "bad-record", "expected a JSON object", True))
                continue
            keys.update(d)
            raw_id = value(d, "id")
            if isinstance(raw_id, float) and raw_id.is_integer():
                raw_id = int(raw_id)  # 2016.0: an integer column that held a NaN somewhere
            raw_id = None if raw_id is None or isinstance(raw_id, (dict, list, bool)) else str(raw_id).strip() or None
            imdb = parse_imdb_id(value(d, "imdb_id"), digits_ok=True) or parse_imdb_id(raw_id)
            tid = imdb or raw_id or f"{prefix}-{lineno}"
            pcell = value(d, "poster")
            poster, note = _resolve_poster(pcell if isinstance(pcell, str) else None, img_root, where, tid)
            if poster is None and note is None and images is not None:
                poster = _poster_by_id(raw_id or tid, img_root)
            yield RawTitle(where, tid, genres=parse_genre_cell(value(d, "genres")), plot=value(d, "plot"),
                           title=clean_text(value(d, "title"), True), imdb_id=imdb, year=parse_year(value(d, "year")),
                           kind=parse_kind(value(d, "kind")), poster=poster, poster_note=note, source_id=raw_id)
    if n_lines and not keys:  # the wrong file (a CSV?), not n bad records: one line, not one per line
        raise DatasetError(f"{path}: not JSON lines: none of its {n_lines} lines is a JSON object")
    missing = [f for f in fmap if f not in found]
    if keys and missing:  # a typo in --map would otherwise drop the field from every title silently
        f = missing[0]
        raise ConfigError(f"--map {f}={fmap[f]}: key {fmap[f]!r} found in no record of {path.name} "
                          f"(keys seen: {', '.join(sorted(keys))})")
