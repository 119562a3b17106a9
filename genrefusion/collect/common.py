"""Glue shared by the collectors: id lists, skip reports, and writing the canonical dataset.

Collectors run in two phases. Phase 1 resolves every title (network, through the cached client)
into a ``Candidate``; phase 2 decides the genre vocabulary, re-reads each poster (from the cache)
and writes through ``DatasetWriter``. A run killed in phase 1 has written nothing; one killed in
phase 2 leaves no ``titles.jsonl``; either re-run is served from the cache.
"""
from __future__ import annotations

import contextlib
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import urlsplit

from ..data.dataset import TITLES, DatasetWriter
from ..data.images import load_image
from ..data.records import Title
from ..errors import BadInput, DatasetError, GenreFusionError
from ..io import write_json
from ..paths import check_writable_target
from .http import FatalFetchError, FetchError

MAX_SIDE = 384
REPORT = "collect_report.json"
_TT = re.compile(r"(?<![0-9a-z])(tt\d{7,10})(?!\d)")
TMDB_ID = re.compile(r"^(?:(movie|tv)\s*[:/]\s*)?(\d+)$", re.IGNORECASE)  # 550, movie:550, tv/1399


@dataclass
class Skip:
    id: str
    reason: str


@dataclass
class Report:
    """Problems found while collecting, each by title id (or file name) and reason."""

    skipped: list[Skip] = field(default_factory=list)  # item not written
    warnings: list[Skip] = field(default_factory=list)  # written, but something dropped (poster, a genre)
    field_sources: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> {field: where it came from}
    echo: bool = True

    @staticmethod
    def _reason(id_: str, reason: str) -> str:
        # errors name their item themselves ("tt0111161 page: ..."); the report line names it already
        for pre in (f"{id_}: ", f"{id_} "):
            if reason.startswith(pre):
                return reason[len(pre):]
        return reason

    def skip(self, id_: str, reason: str) -> None:
        reason = self._reason(id_, reason)
        self.skipped.append(Skip(id_, reason))
        if self.echo:
            print(f"skipped {id_}: {reason}", file=sys.stderr)

    def warn(self, id_: str, reason: str) -> None:
        reason = self._reason(id_, reason)
        self.warnings.append(Skip(id_, reason))
        if self.echo:
            print(f"warning {id_}: {reason}", file=sys.stderr)

    def record_sources(self, id_: str, sources: dict[str, str]) -> None:
        """Where each field of a title came from (a page has several blocks that can disagree)."""
        self.field_sources[id_] = dict(sources)

    def to_dict(self) -> dict:
        out = {"skipped": [vars(s) for s in self.skipped], "warnings": [vars(s) for s in self.warnings]}
        if self.field_sources:
            counts: dict[str, dict[str, int]] = {}
            for per_title in self.field_sources.values():
                for fld, src in per_title.items():
                    counts.setdefault(fld, {}).setdefault(src, 0)
                    counts[fld][src] += 1
            out["field_source_counts"] = counts
            out["field_sources"] = self.field_sources
        return out


@dataclass
class Candidate:
    """A resolved title, ready to write. The poster comes from ``poster_url`` (read through the
    client, normally a cache hit by now), ``poster_path`` (a local file) or ``poster_data`` (bytes
    kept in memory when the client has no cache, so nothing is fetched twice)."""

    title: Title
    poster_url: str | None = None
    poster_path: Path | None = None
    poster_data: bytes | None = None


def read_id_lines(path: str | Path, what: str = "ids file") -> list[tuple[int, str]]:
    """Non-blank, non-comment lines of an id list as (line number, text)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise BadInput(f"{p}: {what} not found") from None
    except UnicodeDecodeError:
        raise BadInput(f"{p}: {what} is not UTF-8 text") from None
    except OSError as err:
        raise BadInput(f"{p}: cannot read {what} ({err.strerror})") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        s = line.split("#", 1)[0].strip()
        if s:
            out.append((n, s))
    if not out:
        raise BadInput(f"{p}: {what} holds no ids")
    return out


def id_tokens(line: str) -> list[str]:
    """The words of an id-list line: split at whitespace and commas (``tt1, tt2 tt3``; ``movie: 550`` is one)."""
    return [w for w in re.split(r"[\s,;]+", re.sub(r"\s*([:/])\s*", r"\1", line)) if w]


def read_imdb_ids(path: str | Path) -> list[str]:
    """tt-ids from a file: bare ``tt0111161`` or IMDb URLs, one or several a line (other words on a line,
    such as a title after the id, are ignored); ``#`` comments; order kept, duplicates dropped. A line
    without a tt-id is an error naming the line."""
    ids: dict[str, None] = {}  # ordered set
    for n, s in read_id_lines(path):
        found = [m.group(1) for m in (_TT.search(w.lower()) for w in id_tokens(s)) if m]
        if not found:
            hint = "; TMDB ids go with `collect tmdb --by tmdb`" if TMDB_ID.match((id_tokens(s) or [""])[0]) else ""
            raise BadInput(f"{path} line {n}: not an IMDb title id ({s[:60]!r}; expected e.g. tt0111161{hint})")
        ids.update(dict.fromkeys(found))
    return list(ids)


def check_out(out: str | Path, force: bool) -> Path:
    """Refuse a protected target or an existing dataset (without --force) before any network use."""
    out = check_writable_target(out, "a collected dataset")
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out}: exists and is not a folder")
    if (out / TITLES).exists() and not force:
        raise DatasetError(f"{out}: already holds a dataset (use --force to overwrite)")
    return out


def write_dataset(out: Path, candidates: Iterable[Candidate], *, name: str | None, genres: list[str],
                  source: str, report: Report, force: bool = False, fetch_poster: Callable[[str], bytes] | None = None,
                  require: Iterable[str] = (), max_side: int = MAX_SIDE, extra_meta: dict | None = None) -> int:
    """Write ``candidates`` as a canonical dataset at ``out``; returns the number of titles written.

    Genres outside ``genres`` are dropped (warned); a title left with no genre is skipped; a poster
    that cannot be fetched or decoded is dropped (warned) and the title kept unless ``require``
    names "poster"; "plot" in ``require`` skips titles without a plot. Nothing half-written is left
    behind: ``titles.jsonl`` appears only when every title is written, and a dataset already at ``out``
    (``force``) is replaced whole only then (the new one is staged beside it).
    """
    require = set(require)
    vocab = set(genres)
    writer = DatasetWriter(out, name=name or out.name, genres=list(genres), source=source,
                           overwrite=force, max_side=max_side, stage=(out / TITLES).exists())
    try:
        for c in candidates:
            t = c.title
            unknown = [g for g in t.genres if g not in vocab]
            if unknown:
                report.warn(t.id, f"genre(s) not labelled by this source dropped: {', '.join(unknown)}")
            t = t.replace(genres=[g for g in t.genres if g in vocab])
            if not t.genres:
                report.skip(t.id, "no genres")
                continue
            if "plot" in require and not t.plot:
                report.skip(t.id, "no plot")
                continue
            poster = None
            try:
                if c.poster_path is not None:
                    poster = load_image(c.poster_path, name=f"{t.id} poster {c.poster_path.name}")
                elif c.poster_data is not None:
                    poster = load_image(c.poster_data, name=f"{t.id} poster")
                elif c.poster_url is not None and fetch_poster is not None:
                    poster = load_image(fetch_poster(c.poster_url), name=f"{t.id} poster")
            except GenreFusionError as err:
                if _fatal(err):
                    raise
                report.warn(t.id, f"poster dropped, {str(err).removeprefix(t.id + ' ')}")
            if poster is None and "poster" in require:
                report.skip(t.id, "no usable poster")
                continue
            try:
                writer.add(t, poster=poster)
            # a poster that fails re-encoding, or an id the source holds twice: skip the title, not the run
            # (disk full is an OSError -> GenreFusionError, which stops the run)
            except (BadInput, DatasetError) as err:
                report.skip(t.id, str(err))
        if writer.count == 0:
            raise DatasetError(f"{out}: no titles collected ({len(report.skipped)} skipped); nothing written")
        writer.close(extra_meta={"collected": {"titles": writer.count, "skipped": len(report.skipped),
                                               "warnings": len(report.warnings), **(extra_meta or {})}})
    except BaseException as err:
        writer.abort(err)
        raise
    write_json(out / REPORT, report.to_dict())
    return writer.count


def finish_failed(out: Path, created: bool, report: Report, err: BaseException) -> None:
    """After a run that failed (or was interrupted): remove ``out`` if this run created it and wrote no file
    there, else leave ``collect_report.json`` beside what was written. A folder holding a dataset (an old
    one that --force kept whole) is left alone."""
    if created and out.is_dir() and not any(p.is_file() for p in out.rglob("*")):
        shutil.rmtree(out, ignore_errors=True)
    elif out.is_dir() and not (out / TITLES).exists():
        with contextlib.suppress(GenreFusionError):  # the run's own error is the one to show
            write_json(out / REPORT, {**report.to_dict(), "error": str(err) or type(err).__name__})


def _fatal(err: Exception) -> bool:
    return isinstance(err, FatalFetchError)


class FailureGuard:
    """Stop the run after ``limit`` consecutive network failures: a server that is down or
    blocking us should not be asked again for every remaining title."""

    def __init__(self, limit: int = 10, what: str = "requests"):
        self.limit, self.run, self.what = max(1, int(limit)), 0, what

    def ok(self) -> None:
        self.run = 0

    def failed(self, err: FetchError) -> None:
        if err.status in (404, 410):  # a missing title says nothing about the server
            self.run = 0
            return
        self.run += 1
        if self.run >= self.limit:
            raise FatalFetchError(f"{self.limit} {self.what} failed in a row (last: {err}); stopping, "
                                  "re-run later to resume from the cache")


def prefetch_poster(client, url: str, tid: str, report: Report, guard: FailureGuard,
                    max_bytes: int) -> dict:
    """Phase 1 for a poster: fetch it into the cache and check it decodes. Returns the ``Candidate``
    poster fields: ``{"poster_url": url}`` (phase 2 reads the cache), ``{"poster_data": bytes}`` for a
    client without a cache, or ``{}`` when unusable (warned; a non-image answer is dropped from the
    cache so a later run asks again). Any failure, a refusal (401/403) or a long rate limit included, loses
    the poster, not the title; ``guard`` stops the run once the image host fails too often in a row."""
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        # the URL comes from the page / API answer: a bad one loses this poster, not the run
        report.warn(tid, f"poster dropped, not an http(s) URL: {url[:100]!r}")
        return {}
    try:
        body = client.get(url, max_bytes=max_bytes, what=f"{tid} poster", refusal_fatal=False).body
        guard.ok()
    except FetchError as err:
        guard.failed(err)
        report.warn(tid, f"poster dropped, {str(err).removeprefix(tid + ' ')}")
        return {}
    try:
        load_image(body, name=f"{tid} poster")
    except BadInput as err:
        client.forget(url)
        report.warn(tid, f"poster dropped, {str(err).removeprefix(tid + ' ')}")
        return {}
    return {"poster_url": url} if client.cache is not None else {"poster_data": body}


def summary(count: int, out: Path, report: Report, stats: dict | None = None) -> str:
    s = f"wrote {count} titles to {out} ({len(report.skipped)} skipped, {len(report.warnings)} warnings"
    if stats:
        s += f"; HTTP: {stats.get('network', 0)} requests, {stats.get('cache_hits', 0)} from cache"
    return s + ")"
