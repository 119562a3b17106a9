"""A polite, resumable HTTP client shared by every collector.

One client per run: a descriptive User-Agent, a token-bucket rate limit over *network* requests
(cache hits are free), retries with exponential backoff on 429/5xx/timeouts/truncated bodies that
honour ``Retry-After``, bounded streaming downloads, an optional robots.txt check, and an on-disk
response cache keyed by URL so a killed run re-fetches nothing it already has.

Secrets (an API key in the query string, a bearer token) are sent only to the API's own origin, kept out of
cache keys and redacted from messages.
"""
from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlencode, urlsplit, urlunsplit

from .. import __version__
from ..errors import GenreFusionError
from ..io import read_json, write_bytes, write_json

DEFAULT_USER_AGENT = (
    f"genrefusion/{__version__} (movie-genre research dataset collector; "
    "polite: rate-limited, cached, honours Retry-After and robots.txt)"
)
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
# Answers that will not change on a re-run: cached so a resumed run does not ask again.
CACHEABLE_STATUS = frozenset({200, 404, 410})
ROBOTS_MAX_AGE = 24 * 3600.0
log = logging.getLogger("genrefusion.collect")


class FetchError(GenreFusionError):
    """One URL could not be fetched (after retries). The run may skip the item and go on."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class FatalFetchError(FetchError):
    """The server refuses us as a whole (rate limited for long, key rejected, blocked, robots):
    continuing with other items would be impolite or pointless, so the run stops."""


@dataclass
class Response:
    url: str
    status: int
    content_type: str
    body: bytes
    from_cache: bool = False

    def json(self, what: str = "response"):
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise FetchError(f"{what}: not valid JSON ({err})", self.status) from None

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class TokenBucket:
    """At most ``rate`` acquisitions per second on average, bursts of at most ``burst``.

    With ``burst=1`` consecutive requests are at least ``1/rate`` seconds apart.
    """

    def __init__(self, rate: float, burst: int = 1, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if not rate > 0:
            raise GenreFusionError(f"rate limit must be > 0 requests/s, got {rate}")
        self.rate = float(rate)
        self.burst = max(1, int(burst))
        self._clock, self._sleep = clock, sleep
        self._tokens = float(self.burst)
        self._last = clock()
        self._lock = threading.Lock()

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self.rate = float(rate)

    def acquire(self) -> float:
        """Take one token, sleeping until one is available; returns the seconds slept."""
        slept = 0.0
        with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
                # a hair short of a token counts as one: float refill sums (0.05 * 20 = 0.9999...) would
                # otherwise ask for 1e-17 s sleeps that a coarse or injected clock never advances past
                if self._tokens >= 1.0 - 1e-9:
                    self._tokens = max(0.0, self._tokens - 1.0)
                    return slept
                wait = (1.0 - self._tokens) / self.rate
                self._sleep(wait)
                slept += wait


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


class ResponseCache:
    """``<dir>/<2 hex>/<sha256(key)>.body`` + ``.json`` (metadata, written last: its presence marks
    a complete entry, so a kill between the two writes leaves a miss, never a corrupt hit)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise GenreFusionError(f"{self.root}: cannot create the HTTP cache folder ({err.strerror})") from None

    def _paths(self, key: str) -> tuple[Path, Path]:
        h = hashlib.sha256(key.encode("utf-8")).hexdigest()
        d = self.root / h[:2]
        return d / f"{h}.body", d / f"{h}.json"

    def get(self, key: str, max_age: float | None = None) -> Response | None:
        """The complete entry for ``key``, or None; with ``max_age`` (seconds) an older entry is a miss."""
        body_p, meta_p = self._paths(key)
        if not meta_p.exists():
            return None
        try:
            meta = read_json(meta_p, "cache entry")
            body = body_p.read_bytes()
        except (GenreFusionError, OSError):
            return None  # unreadable entry: treat as a miss and fetch again
        if not isinstance(meta, dict) or meta.get("key") != key or meta.get("size") != len(body):
            return None
        if max_age is not None and not time.time() - float(meta.get("fetched_ts") or 0) <= max_age:
            return None
        return Response(url=meta.get("url", key), status=int(meta.get("status", 200)),
                        content_type=str(meta.get("content_type", "")), body=body, from_cache=True)

    def delete(self, key: str) -> None:
        # metadata first: without it the entry is a miss even if the body unlink fails
        for p in reversed(self._paths(key)):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
            except OSError as err:
                raise GenreFusionError(f"{p}: cannot remove a cache entry ({err.strerror})") from None

    def put(self, key: str, resp: Response) -> None:
        body_p, meta_p = self._paths(key)
        write_bytes(body_p, resp.body)
        write_json(meta_p, {"key": key, "url": resp.url, "status": resp.status,
                            "content_type": resp.content_type, "size": len(resp.body),
                            "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            "fetched_ts": time.time()}, indent=None)


class HttpClient:
    """GET with politeness, retries, bounded bodies and a resumable cache.

    ``secret_params`` (query parameters, e.g. an API key) and ``secret_headers`` (e.g. a bearer token) are
    sent only with requests to ``secret_origin``'s origin (scheme://host[:port]: the API, never an image host), left
    out of cache keys and redacted from every message.
    """

    def __init__(self, cache_dir: str | Path | None = None, rate: float = 1.0, burst: int = 1,
                 user_agent: str = DEFAULT_USER_AGENT, timeout: float = 30.0, connect_timeout: float = 10.0,
                 retries: int = 4, backoff: float = 2.0, max_backoff: float = 60.0, max_retry_after: float = 300.0,
                 max_bytes: int = 10 * 1024 * 1024, robots: bool = False, secret_params: dict | None = None,
                 secret_headers: dict | None = None, secret_origin: str | None = None, headers: dict | None = None,
                 jitter: bool = True, session=None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        import requests

        self._requests = requests
        self.session = session or requests.Session()
        self.session.headers.update({"User-Agent": user_agent, "Accept-Encoding": "gzip, deflate"})
        self.session.headers.update(headers or {})
        self.cache = ResponseCache(cache_dir) if cache_dir is not None else None
        self.bucket = TokenBucket(rate, burst, clock=clock, sleep=sleep)  # clock/sleep injectable for tests
        self.timeout = (connect_timeout, timeout)
        self.total_timeout = max(timeout * 4, timeout + 30.0)  # a trickling body cannot hold us forever
        self.retries, self.backoff, self.max_backoff = int(retries), float(backoff), float(max_backoff)
        self.max_retry_after = float(max_retry_after)
        self.max_bytes = int(max_bytes)
        self.robots = robots
        self.secret_params, self.secret_headers = dict(secret_params or {}), dict(secret_headers or {})
        if (self.secret_params or self.secret_headers) and not secret_origin:
            raise GenreFusionError("HttpClient: secrets need secret_origin (the URL of the API they are for)")
        self.secret_origin = _origin(secret_origin) if secret_origin else None
        self.jitter = jitter
        self._sleep = sleep
        self._robots: dict[str, object] = {}  # origin -> Protego rules, ALLOW_ALL, or None (unreachable)
        self.stats = {"network": 0, "cache_hits": 0, "retries": 0}

    # -- helpers ---------------------------------------------------------------------------
    def redact(self, text: str) -> str:
        for v in [*self.secret_params.values(), *(h.split()[-1] for h in self.secret_headers.values() if h)]:
            if v:
                text = text.replace(str(v), "***")
        return text

    def _with_secrets(self, url: str) -> bool:
        return self.secret_origin is not None and _origin(url) == self.secret_origin

    @staticmethod
    def build_url(url: str, params: dict | None = None) -> str:
        if not params:
            return url
        parts = urlsplit(url)
        extra = urlencode(sorted((k, v) for k, v in params.items() if v is not None))
        query = f"{parts.query}&{extra}" if parts.query else extra
        return urlunsplit(parts._replace(query=query))

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        d = min(self.max_backoff, self.backoff * (2 ** attempt))
        if self.jitter:
            d *= random.uniform(1.0, 1.25)  # de-synchronise several clients hitting the same server
        return max(d, retry_after or 0.0)

    def forget(self, url: str, params: dict | None = None) -> None:
        """Drop a cached answer that turned out unusable (a block page served as 200, a poster that is
        not an image) so a later run asks again instead of trusting it forever."""
        if self.cache is not None:
            self.cache.delete(self.build_url(url, params))

    # -- robots.txt ------------------------------------------------------------------------
    def _robots_allows(self, url: str) -> bool:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._robots:
            rp = None
            try:
                # every 4xx is an answer here (RFC 9309: robots.txt "unavailable" -> no restriction),
                # so a 401/403 on robots.txt is not the run-stopping refusal it is for a page
                # RFC 9309 also says not to trust a robots.txt older than 24 h: re-read it after that
                r = self.get(origin + "/robots.txt", max_bytes=512 * 1024, _robots=False,
                             ok_status=tuple(range(200, 300)) + tuple(range(400, 500)), refusal_fatal=False,
                             _max_age=ROBOTS_MAX_AGE)
            except FatalFetchError:
                raise
            except FetchError:
                # RFC 9309: an unreachable robots.txt (5xx, network) means "disallow all".
                r = None
            if r is not None and 200 <= r.status < 300:
                rp = parse_robots(r.text())
                agent = self.session.headers["User-Agent"]
                delay = rp.crawl_delay(agent) or rp.crawl_delay("*")
                if delay and 1.0 / float(delay) < self.bucket.rate:
                    log.info("%s/robots.txt asks for Crawl-delay: %g s; rate lowered from %g to %g requests/s",
                             origin, float(delay), self.bucket.rate, 1.0 / float(delay))
                    self.bucket.set_rate(1.0 / float(delay))
            elif r is not None:
                rp = ALLOW_ALL
            self._robots[origin] = rp
        rp = self._robots[origin]
        if rp is None:
            raise FatalFetchError(f"{origin}/robots.txt: cannot be fetched; not crawling {origin} without it")
        if rp is ALLOW_ALL:
            return True
        return rp.can_fetch(url, self.session.headers["User-Agent"])

    # -- the request -----------------------------------------------------------------------
    def get(self, url: str, params: dict | None = None, *, max_bytes: int | None = None, what: str | None = None,
            ok_status: tuple[int, ...] = (200,), headers: dict | None = None, _robots: bool = True,
            refusal_fatal: bool = True, _max_age: float | None = None) -> Response:
        """GET ``url`` (+``params``) and return the response whose status is in ``ok_status``.

        Served from the cache when possible. Raises FetchError (item-level: skip it) or
        FatalFetchError (stop the run). ``what`` names the item in messages (default: the URL).
        ``headers`` are sent but are not part of the cache key. ``refusal_fatal=False``: a 401/403 is an
        item-level FetchError (a poster), not the run-stopping refusal it is for a page or the API.
        """
        key = self.build_url(url, params)
        what = what or key
        check_url(key)
        secret = self._with_secrets(key)
        full = self.build_url(key, self.secret_params) if secret else key
        if secret and self.secret_headers:
            headers = {**(headers or {}), **self.secret_headers}
        limit = self.max_bytes if max_bytes is None else int(max_bytes)
        resp = self.cache.get(key, _max_age) if self.cache else None
        if resp is not None:
            self.stats["cache_hits"] += 1
        else:
            if self.robots and _robots and not self._robots_allows(key):
                raise FatalFetchError(f"{what}: disallowed by robots.txt for our User-Agent; not fetching")
            hint = ("check the API key" if secret else "this client may be blocked") if refusal_fatal else None
            resp = self._fetch(key, full, what, limit, headers, hint)
            if self.cache and resp.status in CACHEABLE_STATUS:
                self.cache.put(key, resp)
        if resp.status not in ok_status:
            raise FetchError(f"{what}: HTTP {resp.status}{_reason(resp)}", resp.status)
        if len(resp.body) > limit:  # a cached body from a run with a larger limit
            raise FetchError(f"{what}: response larger than {limit} bytes", resp.status)
        return resp

    def _fetch(self, key: str, full: str, what: str, limit: int, headers: dict | None = None,
               refusal_hint: str | None = "this client may be blocked") -> Response:
        """With a ``refusal_hint``, a 401/403 stops the run (FatalFetchError, the hint in its message)."""
        req = self._requests
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats["retries"] += 1
            self.bucket.acquire()
            self.stats["network"] += 1
            retry_after = None
            try:
                r = self.session.get(full, headers=headers, timeout=self.timeout, stream=True, allow_redirects=True)
            except req.Timeout:
                last = "timed out"
            except (req.exceptions.InvalidURL, req.exceptions.InvalidSchema, req.exceptions.MissingSchema,
                    req.exceptions.InvalidHeader) as err:
                # our own mistake (a bad --base-url or header): retrying cannot help, nor can the next title
                raise FatalFetchError(self.redact(f"{what}: cannot send the request ({err})")) from None
            except req.RequestException as err:
                last = f"connection failed ({type(err).__name__})"
            else:
                with r:
                    status = r.status_code
                    if status in RETRY_STATUS:
                        retry_after = parse_retry_after(r.headers.get("Retry-After"))
                        last = f"HTTP {status}"
                        if retry_after is not None and retry_after > self.max_retry_after:
                            raise FatalFetchError(
                                f"{what}: HTTP {status}, server asks to wait {retry_after:.0f} s "
                                f"(more than {self.max_retry_after:.0f} s); stopping, re-run later to resume")
                    else:
                        try:
                            body = self._read_body(r, what, limit)
                        except _Transient as err:
                            last = str(err)
                        else:
                            resp = Response(url=key, status=status, content_type=r.headers.get("Content-Type", ""),
                                            body=body)
                            if status in (401, 403) and refusal_hint:
                                raise FatalFetchError(f"{what}: HTTP {status}{_reason(resp)} (access refused; "
                                                      f"{refusal_hint})", status)
                            return resp
            if attempt < self.retries:
                self._sleep(self._delay(attempt, retry_after))
        msg = self.redact(f"{what}: {last} after {self.retries + 1} attempts")
        if last.startswith("HTTP 429"):
            raise FatalFetchError(msg + "; rate limited, stopping (re-run later to resume from the cache)", 429)
        raise FetchError(msg, int(last[5:8]) if last.startswith("HTTP ") else None)

    def _read_body(self, r, what: str, limit: int) -> bytes:
        req = self._requests
        declared = r.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise FetchError(f"{what}: response too large ({int(declared)} bytes > {limit} allowed)", r.status_code)
        chunks, total, start = [], 0, time.monotonic()
        try:
            for chunk in r.iter_content(64 * 1024):
                total += len(chunk)
                if total > limit:
                    raise FetchError(f"{what}: response larger than {limit} bytes; download stopped", r.status_code)
                if time.monotonic() - start > self.total_timeout:
                    raise _Transient(f"body not complete after {self.total_timeout:.0f} s")
                chunks.append(chunk)
        except (req.exceptions.ChunkedEncodingError, req.exceptions.ConnectionError) as err:
            raise _Transient(f"truncated body ({type(err).__name__})") from None
        except req.Timeout:
            raise _Transient("timed out reading the body") from None
        body = b"".join(chunks)
        # urllib3 enforces Content-Length already; re-check for transports that do not.
        if declared and declared.isdigit() and not r.headers.get("Content-Encoding") and len(body) < int(declared):
            raise _Transient(f"truncated body ({len(body)} of {declared} bytes)")
        return body


ALLOW_ALL = object()  # robots.txt "unavailable" (4xx): no restriction (RFC 9309 2.3.1.3)


def parse_robots(text: str):
    """robots.txt rules as RFC 9309 reads them (``protego``): ``*`` and ``$`` in paths, and the longest
    matching rule wins (Allow on a tie). The standard library's parser ignores both and applies the first
    matching rule, so ``Disallow: /title/tt*/mediaviewer`` would let us in and ``Allow: /title/tt`` after
    ``Disallow: /title/`` would keep us out."""
    from protego import Protego

    return Protego.parse(text)


def _origin(url: str) -> str:
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc}".lower()


def check_url(url: str, what: str = "URL") -> str:
    """Refuse anything but an absolute http(s) URL with a host, in one line naming it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise FatalFetchError(f"{what} {url!r}: not an http(s) URL with a host, such as https://host/path")
    return url


class _Transient(Exception):
    pass


def _reason(resp: Response) -> str:
    """A short server-supplied reason (TMDB's ``status_message``), if the body carries one."""
    if "json" not in resp.content_type:
        return ""
    try:
        msg = json.loads(resp.body.decode("utf-8")).get("status_message")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return ""
    return f" ({' '.join(str(msg).split())[:200]})" if msg else ""
