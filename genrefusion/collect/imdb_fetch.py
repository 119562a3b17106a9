"""Fetch IMDb title pages and posters by tt-id, politely, into the canonical dataset layout.

IMDb's conditions of use restrict automated collection: the user must have the right to fetch
(see docs/collect.md). The client is rate-limited (default 1 request/s), identifies itself, honours
robots.txt and Retry-After, and caches every answer so nothing is fetched twice.
"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urljoin, urlsplit, urlunsplit

from ..data.records import Title
from ..errors import GenreFusionError
from ..genres import IMDB_GENRES
from .common import MAX_SIDE, Candidate, FailureGuard, Report, prefetch_poster, read_imdb_ids, write_dataset
from .http import FatalFetchError, FetchError, HttpClient
from .imdb_pages import parse_title_page

IMDB_BASE = "https://www.imdb.com"
PAGE_MAX_BYTES = 8 * 1024 * 1024  # current title pages are ~1-2 MB, mostly inline JSON
POSTER_MAX_BYTES = 10 * 1024 * 1024
# Sent with page requests so titles, plots and genre names come back in English.
PAGE_HEADERS = {"Accept-Language": "en-US,en;q=0.8", "Accept": "text/html,application/xhtml+xml"}

_SIZED = re.compile(r"^(?P<stem>.*?)(?:\._V1_[^/]*)?\.(?P<ext>jpe?g|png|webp)$", re.IGNORECASE)


def sized_poster_url(url: str, side: int = MAX_SIDE) -> str:
    """Ask IMDb's image server for a poster at most ``side`` px tall (``…@._V1_SY384.jpg``) instead of
    the full-size original (often several MB). URLs not in IMDb's image layout are left alone."""
    parts = urlsplit(url)
    if "/images/" not in parts.path:
        return url
    m = _SIZED.match(parts.path)
    if not m:
        return url
    return urlunsplit(parts._replace(path=f"{m['stem']}._V1_SY{int(side)}.{m['ext']}", query=""))


def rebase_url(url: str, base: str | None) -> str:
    """Point ``url`` at another host (a mirror, a local test server), keeping its path and query."""
    u = urlsplit(url)
    if not base or u.scheme not in ("http", "https"):  # a data: or odd URL stays as it is (and is refused)
        return url
    b = urlsplit(base.rstrip("/"))
    return urlunsplit((b.scheme, b.netloc, b.path + u.path, u.query, ""))


def title_url(base_url: str, tt: str) -> str:
    return f"{base_url.rstrip('/')}/title/{tt}/"


def resolve_imdb(ids: list[str], client: HttpClient, report: Report, base_url: str = IMDB_BASE,
                 image_base_url: str | None = None, side: int = MAX_SIDE, max_failures: int = 10,
                 progress: bool = True) -> list[Candidate]:
    """Phase 1: fetch and parse each title page, and fetch its poster into the cache.

    Item-level failures are reported and skipped; FatalFetchError (blocked, long rate limit,
    robots.txt) stops the run with everything fetched so far kept in the cache.
    """
    from tqdm import tqdm

    guard = FailureGuard(max_failures)
    out: list[Candidate] = []
    seen: set[str] = set()
    for tt in tqdm(ids, desc="imdb", unit="title", disable=None if progress else True):
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
            poster_url = rebase_url(sized_poster_url(urljoin(url, info.poster_url), side), image_base_url)
            poster = prefetch_poster(client, poster_url, tid, report, guard, POSTER_MAX_BYTES)
        t = Title(id=tid, imdb_id=tid, title=info.title, year=info.year, kind=info.kind, genres=info.genres,
                  plot=info.plot, source="imdb")
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
