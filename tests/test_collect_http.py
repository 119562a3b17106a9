"""The shared polite HTTP client (genrefusion.collect.http) against a local server on 127.0.0.1."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from genrefusion.collect.http import (DEFAULT_USER_AGENT, FatalFetchError, FetchError, HttpClient, ResponseCache,
                                      TokenBucket, parse_retry_after)

FIX = Path(__file__).resolve().parent / "fixtures" / "collect"
sys.path.insert(0, str(FIX))
from fakeserver import FakeServer  # noqa: E402


@pytest.fixture
def server():
    with FakeServer(FIX) as s:
        yield s


def client(tmp_path=None, **kw):
    kw = {"rate": 1000.0, "backoff": 0.01, "jitter": False, "timeout": 2.0, "connect_timeout": 2.0, **kw}
    return HttpClient(cache_dir=tmp_path / "cache" if tmp_path is not None else None, **kw)


def test_token_bucket_spaces_requests_on_a_fake_clock():
    now = [0.0]
    slept = []

    def sleep(d):
        slept.append(d)
        now[0] += d

    b = TokenBucket(4.0, clock=lambda: now[0], sleep=sleep)
    stamps = []
    for _ in range(5):
        b.acquire()
        stamps.append(now[0])
    assert [round(y - x, 6) for x, y in zip(stamps, stamps[1:])] == [0.25] * 4
    now[0] += 10.0  # idle time refills at most `burst` tokens: no burst of 40 afterwards
    b.acquire()
    t0 = now[0]
    b.acquire()
    assert now[0] - t0 == pytest.approx(0.25)
    with pytest.raises(Exception, match="rate limit must be > 0"):
        TokenBucket(0)


def test_default_client_is_polite():
    c = HttpClient()
    assert c.bucket.rate <= 1.0 and c.bucket.burst == 1
    assert c.session.headers["User-Agent"] == DEFAULT_USER_AGENT
    assert DEFAULT_USER_AGENT.startswith("genrefusion/")


class FakeTime:
    """An injected clock: ``sleep`` advances it instead of waiting, so a schedule is checked exactly."""

    def __init__(self):
        self.now, self.slept = 0.0, []

    def clock(self) -> float:
        return self.now

    def sleep(self, d: float) -> None:
        self.slept.append(d)
        self.now += d


def test_rate_limit_schedule_at_the_server(server):
    import requests

    rate, n, t = 20.0, 20, FakeTime()
    sent = []

    class Stamped(requests.Session):  # when (on the injected clock) each request went out
        def get(self, *a, **kw):
            sent.append(t.now)
            return super().get(*a, **kw)

    c = client(rate=rate, clock=t.clock, sleep=t.sleep, session=Stamped())  # no cache: all go to the server
    for i in range(n):
        c.get(f"{server.url}/images/M/p{i}.jpg")
    assert len(server.times("/images/")) == n and c.stats["network"] == n
    # the first goes at once, then exactly one every 1/rate s; an unlimited client would never sleep
    assert [round(b - a, 9) for a, b in zip(sent, sent[1:])] == [1 / rate] * (n - 1)
    assert sum(t.slept) == pytest.approx((n - 1) / rate)
    assert all(h["User-Agent"] == DEFAULT_USER_AGENT for _, _, h in server.hits)


def test_retries_429_honouring_retry_after_then_success(server):
    path = "/images/M/busy.jpg"
    server.script[path] = [("status", 429, {"Retry-After": "1"}), ("status", 429, {"Retry-After": "1"})]
    t = FakeTime()
    c = client(clock=t.clock, sleep=t.sleep)
    r = c.get(server.url + path)
    assert r.status == 200 and r.body == server.body(path)
    assert server.count(path) == 3 and c.stats["retries"] == 2
    # backoff alone would wait 10 then 20 ms: each wait is the 1 s the server asked for (after which the
    # limiter has a token ready, so it adds no wait of its own)
    assert t.slept == [1.0, 1.0], t.slept


def test_retries_500_timeout_and_truncated_body_then_success(server):
    path = "/images/M/flaky.jpg"
    server.script[path] = [("status", 500), ("sleep", 1.0), ("truncate",), ("status", 503)]
    c = client(timeout=0.3, retries=4)
    r = c.get(server.url + path)
    assert r.body == server.body(path)
    assert server.count(path) == 5 and c.stats["retries"] == 4


def test_backoff_grows_exponentially():
    c = client(backoff=0.5, max_backoff=3.0)
    assert [c._delay(a, None) for a in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert c._delay(0, 7.0) == 7.0  # Retry-After wins over a shorter backoff


def test_gives_up_after_retries_with_one_line_error(server):
    path = "/images/M/down.jpg"
    server.script[path] = [("status", 500)] * 3
    c = client(retries=2)
    with pytest.raises(FetchError) as ei:
        c.get(server.url + path, what="tt0000001 poster")
    assert not isinstance(ei.value, FatalFetchError)
    assert str(ei.value) == "tt0000001 poster: HTTP 500 after 3 attempts" and ei.value.status == 500
    assert server.count(path) == 3


def test_persistent_429_or_long_retry_after_stops_the_run(server):
    path = "/images/M/limited.jpg"
    server.script[path] = [("status", 429)] * 2
    with pytest.raises(FatalFetchError, match="rate limited, stopping"):
        client(retries=1).get(server.url + path)
    server.script[path] = [("status", 503, {"Retry-After": "3600"})]
    with pytest.raises(FatalFetchError, match="asks to wait 3600 s"):
        client(max_retry_after=60).get(server.url + path)
    assert server.count(path) == 3  # no retry after being told to come back in an hour


def test_403_is_fatal_and_404_is_not(server):
    path = "/images/M/blocked.jpg"
    server.script[path] = [("status", 403)]
    with pytest.raises(FatalFetchError, match="HTTP 403"):
        client().get(server.url + path)
    with pytest.raises(FetchError, match="HTTP 404") as ei:
        client().get(server.url + "/nothing-here")
    assert not isinstance(ei.value, FatalFetchError) and server.count("/nothing-here") == 1


def test_download_bounded_by_max_bytes(server):
    c = client()
    url = server.url + "/images/M/big.jpg"
    size = len(server.body("/images/M/big.jpg"))
    with pytest.raises(FetchError, match=f"too large \\({size} bytes > 100 allowed\\)"):
        c.get(url, max_bytes=100)
    assert c.get(url, max_bytes=size).body == server.body("/images/M/big.jpg")


def test_cache_serves_reruns_without_network(server, tmp_path):
    urls = [f"{server.url}/images/M/c{i}.jpg" for i in range(3)]
    c1 = client(tmp_path)
    bodies = [c1.get(u).body for u in urls]
    with pytest.raises(FetchError):
        c1.get(server.url + "/gone")  # a 404 is an answer too: cached, not asked again
    assert c1.stats["network"] == 4 and server.count() == 4
    c2 = client(tmp_path)  # a new run, same cache folder
    assert [c2.get(u).body for u in urls] == bodies
    with pytest.raises(FetchError, match="HTTP 404"):
        c2.get(server.url + "/gone")
    assert c2.stats == {"network": 0, "cache_hits": 4, "retries": 0} and server.count() == 4
    c2.forget(urls[0])
    assert c2.get(urls[0]).from_cache is False and server.count() == 5


def test_failed_answers_are_not_cached(server, tmp_path):
    path = "/images/M/later.jpg"
    server.script[path] = [("status", 500)]
    with pytest.raises(FetchError):
        client(tmp_path, retries=0).get(server.url + path)
    assert client(tmp_path).get(server.url + path).status == 200
    assert server.count(path) == 2


def test_cache_entry_half_written_is_a_miss(tmp_path):
    from genrefusion.collect.http import Response

    cache = ResponseCache(tmp_path)
    cache.put("http://x/a", Response("http://x/a", 200, "image/jpeg", b"abc"))
    assert cache.get("http://x/a").body == b"abc"
    body_p, meta_p = cache._paths("http://x/a")
    body_p.write_bytes(b"ab")  # body and metadata disagree (a kill between the two writes of a re-fetch)
    assert cache.get("http://x/a") is None
    meta_p.unlink()
    assert cache.get("http://x/a") is None
    assert not list(tmp_path.rglob("*.tmp"))


def test_secret_params_stay_out_of_cache_and_messages(server, tmp_path):
    path = "/images/M/secret.jpg"
    server.script[path] = [("status", 500)] * 2
    c = client(tmp_path, retries=1, secret_params={"api_key": "s3cr3t-value"}, secret_origin=server.url)
    with pytest.raises(FetchError) as ei:
        c.get(server.url + path, {"language": "en-US"})
    assert "s3cr3t" not in str(ei.value)
    r = c.get(server.url + path, {"language": "en-US"})
    assert r.url.endswith("secret.jpg?language=en-US")
    assert all(b"s3cr3t" not in p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file())


def test_robots_txt_disallow_stops_before_fetching(server):
    server.robots = "User-agent: *\nDisallow: /title/\n"
    c = client(robots=True)
    with pytest.raises(FatalFetchError, match="disallowed by robots.txt"):
        c.get(server.url + "/title/tt0111161/")
    assert server.paths() == ["/robots.txt"]
    assert c.get(server.url + "/images/M/ok.jpg").status == 200


ROBOTS_9309 = """User-agent: *
Disallow: /title/tt*/mediaviewer
Disallow: /find$
Disallow: /title/
Allow: /title/tt
"""


@pytest.mark.parametrize("path, allowed", [
    ("/title/tt0111161/mediaviewer/rm1234/", False),  # '*' is a wildcard (the stdlib parser reads it literally)
    ("/find", False),                                 # '$' anchors the end (literal for the stdlib parser)
    ("/find?q=aladdin", True),                        # ... so a longer URL is not matched by '/find$'
    ("/title/tt0111161/", True),                      # the longest match wins: Allow /title/tt over Disallow /title/
    ("/title/", False),                               # (the stdlib parser applies the first matching rule)
])
def test_robots_txt_read_as_rfc_9309(server, path, allowed):
    server.robots = ROBOTS_9309
    c = client(robots=True)
    if allowed:
        assert c.get(server.url + path, ok_status=(200, 404)).status in (200, 404)
        assert server.paths() == ["/robots.txt", path.split("?")[0]]
    else:
        with pytest.raises(FatalFetchError, match="disallowed by robots.txt"):
            c.get(server.url + path)
        assert server.paths() == ["/robots.txt"]


def test_robots_txt_crawl_delay_slows_the_client(server, caplog):
    server.robots = "User-agent: *\nCrawl-delay: 0.25\nAllow: /\n"
    c = client(robots=True, rate=10.0)
    with caplog.at_level(logging.INFO, logger="genrefusion.collect"):
        c.get(server.url + "/images/M/a.jpg")
    assert c.bucket.rate == pytest.approx(4.0)
    # the user asked for 10 requests/s: the lowered rate is said, once
    assert caplog.messages == [f"{server.url}/robots.txt asks for Crawl-delay: 0.25 s; rate lowered from 10 to 4 "
                               "requests/s"]


def test_parse_retry_after():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)


@pytest.mark.parametrize("status, allowed", [(404, True), (403, True), (401, True), (500, False)])
def test_robots_txt_4xx_means_no_restriction_5xx_means_disallow(server, status, allowed):
    # RFC 9309: an "unavailable" robots.txt (any 4xx) puts no restriction, an unreachable one (5xx) forbids all
    server.script["/robots.txt"] = [("status", status)] * 3
    c = client(robots=True, retries=2)
    url = server.url + "/images/M/r.jpg"
    if allowed:
        assert c.get(url).status == 200
        assert server.paths() == ["/robots.txt", "/images/M/r.jpg"]
    else:
        with pytest.raises(FatalFetchError, match="robots.txt: cannot be fetched"):
            c.get(url)
        assert server.paths() == ["/robots.txt"] * 3  # retried like any 5xx, then nothing else asked


def test_unusable_url_fails_at_once_without_retries():
    t = FakeTime()
    c = client(retries=3, backoff=5.0, clock=t.clock, sleep=t.sleep)
    for bad in ("www.imdb.com/title/tt0111161/", "ftp://example.org/x", "http:///nohost"):
        with pytest.raises(FatalFetchError, match="not an http\\(s\\) URL with a host"):
            c.get(bad)
    assert c.stats == {"network": 0, "cache_hits": 0, "retries": 0} and t.slept == []  # no wait, no retry


def test_robots_txt_is_cached_for_a_day_only(server, tmp_path):
    import json

    from genrefusion.collect import http as http_mod

    url = server.url + "/images/M/day.jpg"
    client(tmp_path, robots=True).get(url)
    client(tmp_path, robots=True).get(server.url + "/images/M/day2.jpg")
    assert server.paths().count("/robots.txt") == 1  # a re-run within the day trusts the cached copy
    for meta in (tmp_path / "cache").rglob("*.json"):
        d = json.loads(meta.read_text())
        if d["url"].endswith("/robots.txt"):
            d["fetched_ts"] -= http_mod.ROBOTS_MAX_AGE + 60
            meta.write_text(json.dumps(d))
    server.robots = "User-agent: *\nDisallow: /images/M/secret\n"
    c = client(tmp_path, robots=True)
    assert c.get(url).from_cache  # pages keep coming from the cache; only robots.txt expires
    with pytest.raises(FatalFetchError, match="disallowed by robots.txt"):
        c.get(server.url + "/images/M/secret-poster.jpg")
    assert server.paths().count("/robots.txt") == 2
