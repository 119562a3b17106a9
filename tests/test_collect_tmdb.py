"""`collect tmdb`: the TMDB API route, against a local TMDB-shaped server (tests/fixtures/collect/tmdb)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from genrefusion.cli import main as cli
from genrefusion.collect.http import FatalFetchError, HttpClient
from genrefusion.collect.tmdb import (TMDB_MOVIE_GENRES, TMDB_TV_GENRES, TmdbClient, auth_for, collect_tmdb,
                                      map_tmdb_genres, vocab_for)
from genrefusion.genres import IMDB_GENRES

FIX = Path(__file__).resolve().parent / "fixtures" / "collect"
sys.path.insert(0, str(FIX))
from fakeserver import API_KEY, FakeServer, check_dataset  # noqa: E402


@pytest.fixture
def server():
    with FakeServer(FIX) as s:
        yield s


def tmdb_client(server, tmp_path, key=API_KEY, **kw):
    params, headers = auth_for(key)
    http = HttpClient(cache_dir=tmp_path / "cache", rate=200.0, backoff=0.01, jitter=False, timeout=1.0,
                      secret_params=params, headers=headers, **kw)
    return TmdbClient(http, base_url=server.url + "/3", image_base_url=server.url + "/t/p")


def test_genre_mapping_to_imdb_names():
    assert map_tmdb_genres(["Science Fiction", "TV Movie", "Family"]) == ["Sci-Fi", "Family"]
    assert map_tmdb_genres([{"id": 10759, "name": "Action & Adventure"}, {"id": 10765, "name": "Sci-Fi & Fantasy"},
                            {"id": 10768, "name": "War & Politics"}]) == ["Action", "Adventure", "Sci-Fi", "Fantasy",
                                                                           "War"]
    assert map_tmdb_genres(["Kids", "Soap", "Talk", "News", "Reality"]) == ["Family", "Talk-Show", "News",
                                                                            "Reality-TV"]
    # every name on TMDB's two lists maps into IMDb's vocabulary (or is deliberately dropped)
    for name in TMDB_MOVIE_GENRES + TMDB_TV_GENRES:
        assert set(map_tmdb_genres([name])) <= set(IMDB_GENRES), name
    assert "Horror" in vocab_for({"movie"}) and "Horror" not in vocab_for({"tv"})
    assert "Reality-TV" in vocab_for({"tv"}) and "Reality-TV" not in vocab_for({"movie", "tv"})


def test_auth_v3_key_in_query_v4_token_in_header():
    assert auth_for("abc123") == ({"api_key": "abc123"}, {})
    token = "eyJhbGciOiJIUzI1NiJ9." + "x" * 80 + ".sig"
    assert auth_for(token) == ({}, {"Authorization": f"Bearer {token}"})


def test_collect_tmdb_by_imdb_id(server, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("tt0111161\ntt0133093\ntt0903747\ntt8111088\ntt0475293\ntt0000002\n")
    server.script["/3/movie/603"] = [("status", 500), ("truncate",)]
    server.script["/t/p/w342/ztkUQFLlC19CCMYHW9o1zWhJRNq.jpg"] = [("body", b"GIF89a-but-not-really", "image/gif")]
    out = tmp_path / "ds"
    tm = tmdb_client(server, tmp_path)
    n, rep = collect_tmdb(ids, out, tm)
    titles = check_dataset(out)
    assert n == 5 and sorted(titles) == ["tt0111161", "tt0133093", "tt0475293", "tt0903747", "tt8111088"]
    assert titles["tt0133093"].genres == ["Action", "Sci-Fi"]
    assert titles["tt8111088"].genres == ["Sci-Fi", "Fantasy", "Action", "Adventure", "Drama"]
    assert titles["tt8111088"].kind == "tv" and titles["tt0111161"].kind == "movie"
    # movies and series mixed: only genres both TMDB lists can label; Music/Romance dropped with a warning
    assert titles["tt0475293"].genres == ["Family", "Comedy"] and titles["tt0475293"].poster is None
    warned = {w.id: w.reason for w in rep.warnings}
    assert "Music, Romance" in warned["tt0475293"]
    assert "not an image" in warned["tt0903747"] and titles["tt0903747"].poster is None
    assert titles["tt0111161"].plot.startswith("Imprisoned in the 1940s") and titles["tt0111161"].year == 1994
    assert {s.id: s.reason for s in rep.skipped} == {
        "tt0000002": "not found on TMDB (/find returned no movie or TV result)"}
    assert server.count("/3/movie/603") == 3  # 500, truncated, then the answer
    assert server.count("/t/p/w342/") == 4  # posters asked at w342, re-encoded to <= 384 px
    # a re-run is served from the cache, except the poster that was not an image
    tm2 = tmdb_client(server, tmp_path)
    collect_tmdb(ids, out, tm2, force=True)
    assert tm2.http.stats["network"] == 1
    # the key never reaches the cache or the dataset
    for p in list((tmp_path / "cache").rglob("*")) + list(out.rglob("*")):
        if p.is_file():
            assert API_KEY.encode() not in p.read_bytes(), p


def test_collect_tmdb_by_tmdb_id_cli(server, tmp_path, monkeypatch, capsys):
    ids = tmp_path / "ids.txt"
    ids.write_text("movie:603\ntv/1396\n278  # bare ids are movies by default\n999999\n")
    monkeypatch.setenv("MY_TMDB", API_KEY)
    out = tmp_path / "ds"
    argv = ["collect", "tmdb", str(ids), "--by", "tmdb", "--api-key-env", "MY_TMDB", "--out", str(out),
            "--base-url", server.url + "/3", "--image-base-url", server.url + "/t/p", "--cache", str(tmp_path / "c"),
            "--rate", "100"]
    assert cli(argv) == 0
    cap = capsys.readouterr()
    assert "skipped movie:999999: HTTP 404 (The resource you requested could not be found.)" in cap.err
    titles = check_dataset(out)
    assert sorted(titles) == ["tt0111161", "tt0133093", "tt0903747"]
    assert titles["tt0903747"].plot.startswith("Walter White")


def test_bad_or_missing_api_key(server, tmp_path, monkeypatch, capsys):
    ids = tmp_path / "ids.txt"
    ids.write_text("tt0111161\ntt0133093\n")
    with pytest.raises(FatalFetchError, match="HTTP 401 \\(Invalid API key"):
        collect_tmdb(ids, tmp_path / "ds", tmdb_client(server, tmp_path, key="wrong-key-123"))
    assert server.count("/3/") == 1  # stopped at the first refusal, not once per title
    assert not (tmp_path / "ds" / "titles.jsonl").exists()
    monkeypatch.delenv("TMDB_API_KEY", raising=False)
    assert cli(["collect", "tmdb", str(ids), "--out", str(tmp_path / "ds2")]) == 2
    assert "environment variable TMDB_API_KEY is not set" in capsys.readouterr().err


def test_bad_base_url_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    ids = tmp_path / "ids.txt"
    ids.write_text("tt0111161\n")
    monkeypatch.setenv("TMDB_API_KEY", API_KEY)
    out = tmp_path / "ds"
    assert cli(["collect", "tmdb", str(ids), "--out", str(out), "--base-url", "api.themoviedb.org/3",
                "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: --base-url 'api.themoviedb.org/3': not an http(s) URL with a host, "
                   "such as https://host/path")
    assert not out.exists()
