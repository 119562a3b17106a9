"""`collect tmdb`: the TMDB API route, against a local TMDB-shaped server (tests/fixtures/collect/tmdb)."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from genrefusion.cli import main as cli
from genrefusion.collect.http import FatalFetchError, HttpClient
from genrefusion.collect.tmdb import (TMDB_MOVIE_GENRES, TMDB_TV_GENRES, TmdbClient, auth_for, collect_tmdb,
                                      map_tmdb_genres, read_tmdb_ids, vocab_for)
from genrefusion.errors import BadInput
from genrefusion.genres import IMDB_GENRES

FIX = Path(__file__).resolve().parent / "fixtures" / "collect"
sys.path.insert(0, str(FIX))
from fakeserver import API_KEY, FakeServer, check_dataset  # noqa: E402


@pytest.fixture
def server():
    with FakeServer(FIX) as s:
        yield s


def tmdb_client(server, tmp_path, key=API_KEY, images=None, **kw):
    params, headers = auth_for(key)
    http = HttpClient(cache_dir=tmp_path / "cache", rate=200.0, backoff=0.01, jitter=False, timeout=1.0,
                      secret_params=params, secret_headers=headers, secret_origin=server.url, **kw)
    return TmdbClient(http, base_url=server.url + "/3", image_base_url=(images or server).url + "/t/p")


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


def test_credentials_go_to_the_api_origin_only(server, tmp_path):
    # v3: the api_key query parameter reaches the API, never the image host (a second server: another origin)
    with FakeServer(FIX) as images:
        ids = tmp_path / "ids.txt"
        ids.write_text("tt0111161\ntt0133093\n")
        n, _ = collect_tmdb(ids, tmp_path / "ds", tmdb_client(server, tmp_path, images=images))
        assert n == 2 and images.count("/t/p/w342/") == 2
        assert all(t.poster for t in check_dataset(tmp_path / "ds").values())
        assert all(API_KEY not in p for p in images.raw) and all(API_KEY in p for p in server.raw)
        # v4: the bearer token header likewise
        token = "eyJhbGciOiJIUzI1NiJ9." + "x" * 80 + ".sig"
        params, headers = auth_for(token)
        http = HttpClient(rate=500.0, secret_params=params, secret_headers=headers, secret_origin=server.url + "/3")
        http.get(server.url + "/3/movie/1", ok_status=(401,), refusal_fatal=False)
        http.get(images.url + "/t/p/w342/a.jpg")
        assert server.hits[-1][2]["Authorization"] == f"Bearer {token}"
        assert all("Authorization" not in h for _, _, h in images.hits)
        assert "***" in http.redact(f"failed with Bearer {token}")


def test_an_answer_that_is_not_a_json_object_is_not_cached(server, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("tt0111161\ntt0133093\ntt0475293\n")
    server.script["/3/movie/603"] = [("body", b"<html><title>502 Bad Gateway</title></html>", "text/html")]
    server.script["/3/movie/278"] = [("body", b"[]", "application/json")]
    n, rep = collect_tmdb(ids, tmp_path / "ds", tmdb_client(server, tmp_path))
    assert n == 1 and {s.id: s.reason for s in rep.skipped} == {
        "tt0133093": "movie:603: expected a JSON object, got not JSON (text/html, 43 bytes)",
        "tt0111161": "movie:278: expected a JSON object, got JSON that is not an object (application/json, 2 bytes)"}
    # the healthy server is asked again: the bad answers were not kept
    n, rep = collect_tmdb(ids, tmp_path / "ds", tmdb_client(server, tmp_path), force=True)
    assert n == 3 and not rep.skipped
    assert server.count("/3/movie/603") == 2 and server.count("/3/movie/278") == 2


TALK_SHOW = (b'{"id": 2001, "name": "Late Talk", "genres": [{"id": 10767, "name": "Talk"}, {"id": 10763, "name": '
             b'"News"}], "overview": "Guests talk.", "first_air_date": "2001-01-01", "external_ids": {"imdb_id": '
             b'"tt0000201"}}')


def test_genre_list_follows_the_kinds_actually_written(server, tmp_path, caplog):
    # a talk show has none of the genres films and series share: it is skipped, and must not narrow
    # the genre list of what is left, all films
    ids = tmp_path / "ids.txt"
    ids.write_text("movie:278\nmovie:603\ntv:2001\n")
    server.script["/3/tv/2001"] = [("body", TALK_SHOW, "application/json")]
    n, rep = collect_tmdb(ids, tmp_path / "ds", tmdb_client(server, tmp_path), by="tmdb")
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert n == 2 and [s.id for s in rep.skipped] == ["tt0000201"]
    assert meta["genres"] == vocab_for({"movie"}) and "Horror" in meta["genres"]
    assert meta["collected"]["kinds"] == ["movie"] and "films and series mixed" not in caplog.text
    # a series that is written does mix the kinds: the narrower list, said once
    ids.write_text("movie:278\ntv:1396\n")
    with caplog.at_level(logging.INFO, logger="genrefusion.collect"):
        collect_tmdb(ids, tmp_path / "ds", tmdb_client(server, tmp_path), by="tmdb", force=True)
    assert json.loads((tmp_path / "ds" / "dataset.json").read_text())["genres"] == vocab_for({"movie", "tv"})
    assert caplog.text.count("films and series mixed: the genre list is the") == 1


def test_several_tmdb_ids_on_a_line(tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("550, 603\ntv:1399 movie : 680\n278 Fight Club 1999\n603\n")
    assert read_tmdb_ids(ids) == [("movie", 550), ("movie", 603), ("tv", 1399), ("movie", 680), ("movie", 278)]
    # TMDB ids given where tt-ids are expected: the error says what to add
    with pytest.raises(BadInput, match="line 1: not an IMDb title id .*`collect tmdb --by tmdb`"):
        collect_tmdb(ids, tmp_path / "ds", None)


def test_find_messages_episode_redirect_and_base_url(server, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("tt0959621\ntt5000001\ntt0133093\n")
    server.script["/3/find/tt0959621"] = [("body", json.dumps({
        "movie_results": [], "tv_results": [], "tv_season_results": [],
        "tv_episode_results": [{"id": 62085, "name": "Pilot", "show_id": 1396, "season_number": 1}]}).encode(),
        "application/json")]
    server.script["/3/find/tt5000001"] = [("body", b'{"movie_results": [{"id": 278}]}', "application/json")]
    n, rep = collect_tmdb(ids, tmp_path / "ds", tmdb_client(server, tmp_path))
    assert n == 2 and {s.id: s.reason for s in rep.skipped} == {
        "tt0959621": "a TV episode (of TV show tv:1396 on TMDB), not a film or series: list the series' id instead"}
    assert {w.id: w.reason for w in rep.warnings}["tt5000001"] == (
        "TMDB's record (movie:278) is for tt0111161; recorded as tt0111161")
    # a base URL without /3: /find is not there, so no title can be found; one line, at the first
    tm = tmdb_client(server, tmp_path)
    tm.base = server.url
    with pytest.raises(FatalFetchError, match="/find: HTTP 404; --base-url should end in /3"):
        collect_tmdb(ids, tmp_path / "ds2", tm)
    assert server.count("/find/") == 1


def test_refusals_name_what_to_check(server, tmp_path):
    tm = tmdb_client(server, tmp_path, key="wrong-key-123")
    with pytest.raises(FatalFetchError, match="access refused; check the API key"):
        tm.details("movie", 278)
    server.script["/title/tt0111161/"] = [("status", 403)]
    with pytest.raises(FatalFetchError, match="access refused; this client may be blocked") as ei:
        HttpClient(rate=500.0).get(server.url + "/title/tt0111161/")
    assert "API key" not in str(ei.value)
