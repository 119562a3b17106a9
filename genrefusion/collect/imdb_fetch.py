"""Fetch IMDb title pages and posters by tt-id, politely, into the canonical dataset layout.

IMDb's conditions of use restrict automated collection: the user must have the right to fetch
(see docs/collect.md). The client is rate-limited (default 1 request/s), identifies itself, honours
robots.txt and Retry-After, and caches every answer so nothing is fetched twice.
"""
from __future__ import annotations

from pathlib import Path

from ..data.records import Title
from ..errors import GenreFusionError
from ..genres import IMDB_GENRES
from ..progress import track
from .common import MAX_SIDE, Candidate, FailureGuard, Report, prefetch_poster, read_imdb_ids, write_dataset
from .http import FatalFetchError, FetchError, HttpClient
from .imdb_pages import parse_title_page
from .imdb_urls import (IMDB_BASE, PAGE_HEADERS, PAGE_MAX_BYTES, POSTER_MAX_BYTES, poster_request_url,
                        sized_poster_url, title_url)

__all__ = ["IMDB_BASE", "collect_imdb", "resolve_imdb", "sized_poster_url", "title_url"]


def resolve_imdb(ids: list[str], client: HttpClient, report: Report, base_url: str = IMDB_BASE,
                 image_base_url: str | None = None, side: int = MAX_SIDE, max_failures: int = 10,
                 progress: bool = True) -> list[Candidate]:
    """Phase 1: fetch and parse each title page, and fetch its poster into the cache.

    Item-level failures are reported and skipped; FatalFetchError (blocked, long rate limit,
    robots.txt) stops the run with everything fetched so far kept in the cache.
    """
    guard = FailureGuard(max_failures)
    poster_guard = FailureGuard(max_failures, "poster requests")  # pages that work must not hide a blocked image host
    out: list[Candidate] = []
    seen: set[str] = set()
    for tt in track(ids, "imdb", "title", progress):
        url = title_url(base_url, tt)
        try:
            page = client.get(url, max_bytes=PAGE_MAX_BYTES, what=f"{tt} page", headers=PAGE_HEADERS)
            guard.ok()
        except FatalFetchError:
            raise
        except FetchError as err:
            guard.failed(err)
            report.skip(tt, str(err).removeprefix(f"{tt} "))
            continue
        try:
            info = parse_title_page(page.text(), name=f"{tt} page")
        except GenreFusionError as err:
            # an unparseable 200 is often a block/captcha page: forget it so a later run asks again
            client.forget(url)
            report.skip(tt, str(err).removeprefix(f"{tt} "))
            continue
        tid = info.imdb_id or tt
        if tid != tt:
            # IMDb redirects merged duplicates to the surviving title: keep the page's own id.
            report.warn(tt, f"page is for {tid} (redirected); recorded as {tid}")
        if tid in seen:
            report.skip(tt, f"duplicate of {tid}")
            continue
        seen.add(tid)
        if not info.genres:
            # nothing to label with: skip before asking for its poster
            report.skip(tid, "no genres on the title page")
            continue
        poster = {}
        if info.poster_url:
            poster = prefetch_poster(client, poster_request_url(url, info.poster_url, side, image_base_url), tid,
                                     report, poster_guard, POSTER_MAX_BYTES)
        t = Title(id=tid, imdb_id=tid, title=info.title, year=info.year, kind=info.kind, genres=info.genres,
                  plot=info.plot, source="imdb")
        report.record_sources(tid, info.field_sources)
        out.append(Candidate(t, **poster))
    return out


def collect_imdb(ids_file: str | Path, out: Path, client: HttpClient, *, base_url: str = IMDB_BASE,
                 image_base_url: str | None = None, name: str | None = None, force: bool = False,
                 require=(), max_failures: int = 10, report: Report | None = None) -> tuple[int, Report]:
    """``genrefusion collect imdb``: ids file -> dataset at ``out`` (vocabulary: IMDb's genre list)."""
    report = report or Report()
    ids = read_imdb_ids(ids_file)
    cands = resolve_imdb(ids, client, report, base_url=base_url, image_base_url=image_base_url,
                         max_failures=max_failures)
    n = write_dataset(out, cands, name=name, genres=list(IMDB_GENRES), source=f"IMDb title pages ({base_url})",
                      report=report, force=force, require=require,
                      fetch_poster=lambda u: client.get(u, max_bytes=POSTER_MAX_BYTES).body,
                      extra_meta={"requested": len(ids)})
    return n, report
