"""IMDb addresses shared by both IMDb collectors (``collect imdb`` fetches pages, ``collect imdb-pages`` reads
saved ones): the site, the size limits, title-page URLs and poster URLs at a bounded size.

Both collectors import this module and never each other.
"""
from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit, urlunsplit

from .common import MAX_SIDE

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


def poster_request_url(page_url: str, poster_url: str, side: int = MAX_SIDE, image_base_url: str | None = None) -> str:
    """The URL to fetch a page's poster from: resolved against the page (a saved page came from
    www.imdb.com, so a relative image URL is relative to it), at a bounded size, on ``image_base_url``
    when given."""
    return rebase_url(sized_poster_url(urljoin(page_url, poster_url), side), image_base_url)
