"""IMDb title pages: the parser, `collect imdb-pages` (offline) and `collect imdb` (fetcher) against a
local server on 127.0.0.1 serving the fixture pages in tests/fixtures/collect/imdb."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from genrefusion.cli import main as cli
from genrefusion.collect.http import FatalFetchError, HttpClient
from genrefusion.collect.imdb_fetch import collect_imdb, sized_poster_url
from genrefusion.collect.imdb_pages import collect_imdb_pages, parse_title_page, read_page
from genrefusion.errors import BadInput

FIX = Path(__file__).resolve().parent / "fixtures" / "collect"
PAGES = FIX / "imdb"
sys.path.insert(0, str(FIX))
from fakeserver import FakeServer, check_dataset, poster_bytes  # noqa: E402

GOOD = ["tt0111161", "tt0133093", "tt0903747", "tt0108052", "tt9900001", "tt0103639", "tt9900002"]


@pytest.fixture
def server():
    with FakeServer(FIX) as s:
        yield s


def page(name: str):
    return parse_title_page(read_page(PAGES / name), name)


# -- parser ----------------------------------------------------------------------------------------
def test_json_ld_page_with_one_string_genre():
    p = page("tt0111161.html")
    assert (p.imdb_id, p.title, p.year, p.kind, p.genres) == (
        "tt0111161", "The Shawshank Redemption", 1994, "movie", ["Drama"])
    assert p.plot.startswith("A banker convicted of uxoricide") and p.sources == ["json-ld", "next-data"]
    assert p.poster_url.endswith("XkEyXkFqcGc@._V1_.jpg")


def test_next_data_only_page():
    p = page("tt0133093.html")
    assert p.sources == ["next-data"]
    assert (p.imdb_id, p.title, p.year, p.kind, p.genres) == ("tt0133093", "The Matrix", 1999, "movie",
                                                              ["Action", "Sci-Fi"])
    assert p.plot.startswith("When a beautiful stranger") and p.poster_url.startswith("https://m.media-amazon.com/")


def test_tv_series_entities_and_no_poster():
    tv = page("tt0903747.html")
    assert tv.kind == "tv" and tv.genres == ["Crime", "Drama", "Thriller"] and tv.year == 2008
    assert tv.plot.endswith("to secure his family's future.")
    sl = page("tt0108052.html")
    assert sl.title == "Schindler's List"
    # &amp;quot; (escaped twice), a newline + indent and a trailing no-break space are all cleaned
    assert sl.plot == ("In German-occupied Poland during World War II, industrialist Oskar Schindler gradually becomes "
                       "concerned for his Jewish workforce after witnessing their persecution by the \"Nazis\".")
    short = page("tt9900001.html")
    assert short.poster_url is None and short.genres == ["Comedy", "Short"]


def raw_blocks(name: str) -> tuple[dict, dict]:
    """The page's JSON-LD title object and __NEXT_DATA__ aboveTheFoldData, read without the parser."""
    import re

    text = (PAGES / name).read_text()
    ld = json.loads(re.search(r'<script type="application/ld\+json">(.*?)</script>', text, re.S).group(1))
    nd = json.loads(re.search(r'<script id="__NEXT_DATA__" type="application/json">(.*?)</script>', text, re.S).group(1))
    return ld, nd["props"]["pageProps"]["aboveTheFoldData"]


# field -> (its value in JSON-LD, its value in __NEXT_DATA__), as the blocks hold them
FIELDS = {
    "title": (lambda ld: ld["name"], lambda nd: nd["titleText"]["text"]),
    "year": (lambda ld: int(ld["datePublished"][:4]), lambda nd: nd["releaseYear"]["year"]),
    "genres": (lambda ld: ld["genre"], lambda nd: [g["text"] for g in nd["genres"]["genres"]]),
    "plot": (lambda ld: ld["description"], lambda nd: nd["plot"]["plotText"]["plainText"]),
    "poster_url": (lambda ld: ld["image"], lambda nd: nd["primaryImage"]["url"]),
}


@pytest.mark.parametrize("field", FIELDS)
def test_page_data_wins_over_json_ld_where_they_disagree(field):
    # tt9900002: a 2007 festival film whose two blocks differ in every field, as real pages' blocks can
    # (JSON-LD: original title, 3 of 4 genres, one country's 2008 release date, an older plot and poster)
    ld, nd = raw_blocks("tt9900002.html")
    from_ld, from_page = FIELDS[field][0](ld), FIELDS[field][1](nd)
    assert from_ld != from_page  # the fixture really disagrees, so the precedence is observable
    p = page("tt9900002.html")
    assert getattr(p, field) == from_page and p.field_sources[field] == "next-data"


def test_full_genre_list_not_json_ld_three():
    ld, nd = raw_blocks("tt0103639.html")
    assert ld["genre"] == ["Animation", "Adventure", "Comedy"]  # what JSON-LD says of Aladdin (1992)
    p = page("tt0103639.html")
    assert p.genres == ["Animation", "Adventure", "Comedy", "Family", "Fantasy", "Musical", "Romance"]
    assert p.year == 1992 and p.field_sources["genres"] == "next-data"


def test_json_ld_only_page_takes_the_year_from_the_page_title():
    # an older page without __NEXT_DATA__: datePublished (1994-03-04) is one country's release date,
    # the page title says "Schindler's List (1993) - IMDb"
    p = page("tt0108052.html")
    assert p.sources == ["json-ld"] and p.year == 1993 and p.field_sources["year"] == "page-title"
    html = (PAGES / "tt0108052.html").read_text()
    no_title = html.replace("(1993) - IMDb", "- IMDb")
    p = parse_title_page(no_title)
    assert p.year == 1994 and p.field_sources["year"] == "json-ld"  # the last resort


@pytest.mark.parametrize("title, year", [("Breaking Bad (TV Series 2008–2013) - IMDb", 2008),
                                         ("Night Shift (Short 2019) - IMDb", 2019),
                                         ("2001: A Space Odyssey (1968) - IMDb", 1968),
                                         ("Crash (I) (2004) - IMDb", 2004)])
def test_year_from_page_title_forms(title, year):
    html = (PAGES / "tt0108052.html").read_text().replace("Schindler&#x27;s List (1993) - IMDb", title)
    assert parse_title_page(html).year == year


def test_next_data_kind_when_json_ld_has_none():
    html = (PAGES / "tt0903747.html").read_text().replace('"@type":"TVSeries"', '"@type":"CreativeWork"')
    assert parse_title_page(html).kind == "tv"  # from titleType.id tvSeries


@pytest.mark.parametrize("name, reason", [
    ("tt0944947.html", "malformed JSON-LD (line 1 column"),
    ("nm0000151.html", "JSON-LD describes Person, not a title"),
    ("blocked.html", "no JSON-LD or __NEXT_DATA__ title data"),
])
def test_unparseable_pages_name_the_file_and_reason(name, reason):
    with pytest.raises(BadInput) as ei:
        page(name)
    msg = str(ei.value)
    assert msg.startswith(f"{name}: ") and reason in msg and "\n" not in msg


@pytest.mark.parametrize("cut_in", ["__NEXT_DATA__", "JSON-LD"])
def test_page_cut_off_inside_a_script_block_says_so(cut_in):
    """A page saved before it finished (or a truncated file) is not 'not an IMDb title page'."""
    name = "tt0133093.html" if cut_in == "__NEXT_DATA__" else "tt0108052.html"
    html = (PAGES / name).read_text()
    cut = html[:html.rindex("</script>") - 100]
    with pytest.raises(BadInput) as ei:
        parse_title_page(cut, name)
    assert f"cut off inside its {cut_in} block" in str(ei.value)
    assert "not an IMDb title page" not in str(ei.value)


def test_sized_poster_url_requests_bounded_size():
    base = "https://m.media-amazon.com/images/M/MV5BMDAyY2FhYjctNDc5OS00MDNlLThiMGUtY2UxYWVkNGY2ZjljXkEyXkFqcGc@"
    assert sized_poster_url(base + "._V1_.jpg") == base + "._V1_SY384.jpg"
    assert sized_poster_url(base + "._V1_UX182_CR0,0,182,268_AL_.jpg?x=1") == base + "._V1_SY384.jpg"
    assert sized_poster_url(base + ".jpg", 256) == base + "._V1_SY256.jpg"
    assert sized_poster_url("https://example.org/poster.jpg") == "https://example.org/poster.jpg"


# -- collect imdb-pages (offline) ------------------------------------------------------------------
def test_collect_imdb_pages_offline(tmp_path):
    src = tmp_path / "saved"
    shutil.copytree(PAGES, src)
    Image.new("RGB", (600, 900), (200, 40, 40)).save(src / "tt0111161.jpg")  # <tt-id>.jpg beside the page
    files = src / "tt0903747_files"  # what a browser's "save complete page" leaves
    files.mkdir()
    (files / "MV5BMzU5ZGYzNmQtMTdhYy00OGRiLTg0NmQtYjVjNzliZTg1ZGE4XkEyXkFqcGc@._V1_.jpg").write_bytes(
        poster_bytes("bb", (300, 450)))
    (src / "tt0108052.jpg").write_bytes(b"<html>not a poster</html>")
    shutil.copy(src / "tt0133093.html", src / "matrix-copy.htm")  # same title saved twice
    out = tmp_path / "ds"
    n, rep = collect_imdb_pages(src, out)
    titles = check_dataset(out)
    assert n == 7 and sorted(titles) == sorted(GOOD)
    assert titles["tt0111161"].poster and titles["tt0903747"].poster
    assert not titles["tt0133093"].poster and not titles["tt0108052"].poster and not titles["tt9900001"].poster
    assert titles["tt0903747"].kind == "tv" and titles["tt0108052"].title == "Schindler's List"
    skipped = {s.id: s.reason for s in rep.skipped}
    # pages are read in name order: matrix-copy.htm comes first, so tt0133093.html is the duplicate
    assert set(skipped) == {"tt0944947.html", "nm0000151.html", "blocked.html", "tt0133093.html"}
    assert skipped["tt0133093.html"] == "duplicate of tt0133093 (already read from matrix-copy.htm)"
    assert skipped["blocked.html"].startswith("no JSON-LD or __NEXT_DATA__")
    warned = {w.id: w.reason for w in rep.warnings}
    assert "not an image" in warned["tt0108052"]
    on_disk = json.loads((out / "collect_report.json").read_text())
    assert {s["id"] for s in on_disk["skipped"]} == set(skipped)
    # where each field came from, per title and counted
    assert on_disk["field_sources"]["tt0103639"]["genres"] == "next-data"
    assert on_disk["field_sources"]["tt0108052"] == {"imdb_id": "json-ld", "title": "json-ld", "year": "page-title",
                                                     "kind": "json-ld", "genres": "json-ld", "plot": "json-ld",
                                                     "poster_url": "json-ld"}
    assert on_disk["field_source_counts"]["year"] == {"next-data": 6, "page-title": 1}
    assert titles["tt0103639"].genres == ["Animation", "Adventure", "Comedy", "Family", "Fantasy", "Musical",
                                          "Romance"]


def test_collect_imdb_pages_cli_and_validate(tmp_path, capsys):
    out = tmp_path / "ds"
    assert cli(["collect", "imdb-pages", str(PAGES), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "skipped blocked.html: no JSON-LD" in err and "skipped tt0944947.html: malformed JSON-LD" in err
    # no posters saved beside these pages: titles keep their plots, and validation finds no problem
    assert cli(["validate", str(out), "--strict"]) == 0
    assert cli(["collect", "imdb-pages", str(PAGES), "--out", str(out)]) == 2
    assert "already holds a dataset (use --force" in capsys.readouterr().err


def test_pages_in_sub_folders_are_reported_not_silently_lost(tmp_path, capsys):
    """Pages one level down are not read; each is listed as skipped (a "save complete page" _files/ folder is not a
    sub-folder of pages), and a folder whose pages are all in sub-folders says where they are."""
    src = tmp_path / "saved"
    (src / "batch 2").mkdir(parents=True)
    shutil.copy(PAGES / "tt0133093.html", src / "tt0133093.html")
    shutil.copy(PAGES / "tt0111161.html", src / "batch 2" / "tt0111161.html")
    (src / "tt0133093_files").mkdir()
    (src / "tt0133093_files" / "frame.html").write_text("<html></html>")
    n, rep = collect_imdb_pages(src, tmp_path / "ds")
    assert n == 1
    assert {s.id: s.reason for s in rep.skipped} == {
        "batch 2/tt0111161.html": "in a sub-folder, which is not searched (run collect on that folder too)"}
    (src / "tt0133093.html").unlink()
    assert cli(["collect", "imdb-pages", str(src), "--out", str(tmp_path / "ds2")]) == 2
    err = capsys.readouterr().err
    assert "only in sub-folders, which are not searched: 1 in batch 2/" in err


def test_an_mhtml_single_file_save_is_refused_with_the_reason(tmp_path):
    """Chrome's "Webpage, Single File" (.mhtml, quoted-printable) is an IMDb page, not 'not an IMDb title page?';
    in a folder it is listed as skipped, not passed over."""
    import quopri

    body = quopri.encodestring((PAGES / "tt0133093.html").read_bytes())
    (tmp_path / "matrix.mhtml").write_bytes(
        b"From: <Saved by Blink>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/related;\r\n\ttype=\"text/html\";\r\n"
        b"\tboundary=\"--b--\"\r\n\r\n----b--\r\nContent-Type: text/html\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + body + b"\r\n----b----\r\n")
    shutil.copy(PAGES / "tt0111161.html", tmp_path / "tt0111161.html")
    with pytest.raises(BadInput, match="matrix.mhtml: an MHTML single-file save.*HTML only"):
        read_page(tmp_path / "matrix.mhtml")
    n, rep = collect_imdb_pages(tmp_path, tmp_path / "ds")
    assert n == 1 and [s.id for s in rep.skipped] == ["matrix.mhtml"]


def test_collect_imdb_pages_fetches_missing_posters(server, tmp_path):
    out = tmp_path / "ds"
    assert cli(["collect", "imdb-pages", str(PAGES / "tt0133093.html"), "--out", str(out), "--fetch-posters",
                "--image-base-url", server.url, "--cache", str(tmp_path / "cache"), "--rate", "50"]) == 0
    titles = check_dataset(out)
    assert titles["tt0133093"].poster
    assert server.paths() == ["/robots.txt",
                              "/images/M/MV5BN2NmN2VhMTQtMDNiOS00NDlhLTliMjgtODE2ZTY0ODQyNDRhXkEyXkFqcGc@._V1_SY384.jpg"]


# -- collect imdb (fetcher) ------------------------------------------------------------------------
IDS = GOOD + ["tt0944947", "tt1234567", "tt5555555"]  # bad page, 404, blocked (a captcha page with 200)
BAD_POSTER = "/images/M/MV5BMzU5ZGYzNmQtMTdhYy00OGRiLTg0NmQtYjVjNzliZTg1ZGE4XkEyXkFqcGc@._V1_SY384.jpg"


def ids_file(tmp_path) -> Path:
    p = tmp_path / "ids.txt"
    lines = ["# titles to collect", *IDS[:2], f"https://www.imdb.com/title/{IDS[2]}/?ref_=fn_al_tt_1", *IDS[3:],
             IDS[0] + "  # a duplicate line is fetched once"]
    p.write_text("\n".join(lines) + "\n")
    return p


def make_client(tmp_path, **kw):
    return HttpClient(cache_dir=tmp_path / "cache", rate=kw.pop("rate", 200.0), backoff=0.01, jitter=False,
                      timeout=1.0, robots=True, **kw)


def misbehave(server):
    server.pages["tt5555555"] = "blocked.html"
    server.script["/title/tt0133093/"] = [("status", 429, {"Retry-After": "0"}), ("status", 500)]
    server.script["/title/tt0108052/"] = [("truncate",)]
    server.script[BAD_POSTER] = [("body", b"<html>Service Unavailable</html>", "image/jpeg")] * 2


def test_collect_imdb_against_local_server(server, tmp_path):
    misbehave(server)
    out = tmp_path / "ds"
    client = make_client(tmp_path)
    n, rep = collect_imdb(ids_file(tmp_path), out, client, base_url=server.url, image_base_url=server.url)
    titles = check_dataset(out)
    assert n == 7 and sorted(titles) == sorted(GOOD)
    t = titles["tt0903747"]
    assert (t.kind, t.genres, t.year, t.poster) == ("tv", ["Crime", "Drama", "Thriller"], 2008, None)
    assert titles["tt0133093"].poster and titles["tt0108052"].poster and not titles["tt9900001"].poster
    # the page's own data, not its JSON-LD summary: all seven genres, the title's year, the page's poster
    assert titles["tt0103639"].genres == ["Animation", "Adventure", "Comedy", "Family", "Fantasy", "Musical",
                                          "Romance"]
    lh = titles["tt9900002"]
    assert (lh.title, lh.year, len(lh.genres)) == ("The Lighthouse Keeper's Daughter", 2007, 4)
    assert "/images/M/MV5BZmFjYTkwNzMtYjc3Mi00Nzg2LWE3NDQtNWNhYmQ5YjhlNDNmXkEyXkFqcGc@._V1_SY384.jpg" in server.paths()
    assert not [p for p in server.paths() if "MV5BOTgxNmE2YWQt" in p]  # JSON-LD's older poster: never asked for
    assert titles["tt0108052"].year == 1993  # JSON-LD-only page: the page title's year, not datePublished's 1994
    assert json.loads((out / "collect_report.json").read_text())["field_sources"]["tt9900002"]["plot"] == "next-data"
    skipped = {s.id: s.reason for s in rep.skipped}
    assert set(skipped) == {"tt0944947", "tt1234567", "tt5555555"}
    assert skipped["tt1234567"] == "page: HTTP 404"
    assert skipped["tt0944947"].startswith("page: malformed JSON-LD (line 1 column 142")
    assert skipped["tt5555555"].startswith("page: no JSON-LD or __NEXT_DATA__ title data")
    assert {w.id: w.reason for w in rep.warnings}["tt0903747"] == \
        "poster dropped, poster: not an image (unrecognised format)"
    # retried: 429 then 500 then the page; truncated page fetched again
    assert server.count("/title/tt0133093/") == 3 and server.count("/title/tt0108052/") == 2
    posters = [p for p in server.paths() if p.startswith("/images/")]
    assert posters and all(p.endswith("._V1_SY384.jpg") for p in posters)  # bounded size asked for
    assert all(h["User-Agent"].startswith("genrefusion/") for _, _, h in server.hits)
    assert server.paths().count("/robots.txt") == 1


def test_killed_run_resumes_from_cache_without_refetching(server, tmp_path, monkeypatch):
    misbehave(server)
    ids, out = ids_file(tmp_path), tmp_path / "ds"
    # run 1 dies (as with Ctrl-C) on its 7th network request, in the middle of phase 1
    c1 = make_client(tmp_path)
    real_get, calls = c1.session.get, []

    def dying_get(*a, **kw):
        calls.append(a[0])
        if len(calls) == 7:
            raise KeyboardInterrupt
        return real_get(*a, **kw)

    c1.session.get = dying_get
    with pytest.raises(KeyboardInterrupt):
        collect_imdb(ids, out, c1, base_url=server.url, image_base_url=server.url)
    assert not (out / "titles.jsonl").exists() and not (out / "dataset.json").exists()
    first = server.paths()
    assert len(first) == 6

    # run 2 dies in phase 2, while writing the dataset
    from genrefusion.data import dataset as dataset_mod

    real_add, added = dataset_mod.DatasetWriter.add, []

    def dying_add(self, *a, **kw):
        added.append(1)
        if len(added) == 3:
            raise KeyboardInterrupt
        return real_add(self, *a, **kw)

    monkeypatch.setattr(dataset_mod.DatasetWriter, "add", dying_add)
    with pytest.raises(KeyboardInterrupt):
        collect_imdb(ids, out, make_client(tmp_path), base_url=server.url, image_base_url=server.url)
    assert not (out / "titles.jsonl").exists() and not (out / "dataset.json").exists()
    assert not list(out.rglob("*.tmp"))
    monkeypatch.setattr(dataset_mod.DatasetWriter, "add", real_add)
    second = server.paths()[len(first):]

    # run 3 completes; run 4 (--force) touches the network only for answers that were not kept
    c3 = make_client(tmp_path)
    n, _ = collect_imdb(ids, out, c3, base_url=server.url, image_base_url=server.url)
    assert n == 7
    check_dataset(out)
    third = server.paths()[len(first) + len(second):]
    c4 = make_client(tmp_path)
    collect_imdb(ids, out, c4, base_url=server.url, image_base_url=server.url, force=True)
    fourth = server.paths()[len(first) + len(second) + len(third):]

    # a good answer is fetched once over all runs; only answers dropped as unusable are asked again
    # (pages that did not parse: the captcha page served for tt5555555 and the cut-off tt0944947; the
    # HTML "poster"), plus the retried 429/500/truncation
    retried = {"/title/tt0133093/": 3, "/title/tt0108052/": 2}
    unusable = {"/title/tt5555555/", "/title/tt0944947/", BAD_POSTER}
    counts = {p: server.paths().count(p) for p in set(server.paths())}
    for p, k in counts.items():
        if p not in unusable:
            assert k == retried.get(p, 1), (p, k)
    assert sorted(fourth) == sorted(unusable) and c4.stats["network"] == 3
    assert "/robots.txt" not in second + third + fourth


def test_sigkilled_cli_run_resumes_from_cache(server, tmp_path):
    """A real `kill -9` of the CLI mid-run: the re-run asks for nothing the killed run had cached."""
    ids, out, cache = ids_file(tmp_path), tmp_path / "ds", tmp_path / "cache"
    cmd = [sys.executable, "-m", "genrefusion", "collect", "imdb", str(ids), "--out", str(out), "--cache", str(cache),
           "--rate", "8", "--base-url", server.url, "--image-base-url", server.url, "--backoff", "0.01"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    while server.count() < 5 and proc.poll() is None:  # no deadline: the loop ends when the run does
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL and server.count() >= 5
    assert not (out / "titles.jsonl").exists()
    cached = {json.loads(p.read_text())["url"].removeprefix(server.url) for p in cache.rglob("*.json")}
    assert len(cached) >= 4
    n_before = len(server.paths())
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "wrote 7 titles" in r.stdout
    again = server.paths()[n_before:]
    assert not cached & set(again), cached & set(again)
    check_dataset(out)


def test_stops_after_consecutive_failures(server, tmp_path):
    from genrefusion.collect.http import FatalFetchError

    for tt in GOOD:
        server.script[f"/title/{tt}/"] = [("status", 502)]
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(GOOD) + "\n")
    with pytest.raises(FatalFetchError, match="3 requests failed in a row .*HTTP 502.*re-run later"):
        collect_imdb(ids, tmp_path / "ds", make_client(tmp_path, retries=0), base_url=server.url, max_failures=3)
    assert server.count("/title/") == 3 and not (tmp_path / "ds" / "titles.jsonl").exists()


def test_collect_imdb_cli_errors(tmp_path, capsys):
    bad = tmp_path / "ids.txt"
    bad.write_text("tt0111161\nThe Matrix (1999)\n")
    assert cli(["collect", "imdb", str(bad), "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "line 2: not an IMDb title id" in err and "\n" not in err
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    assert cli(["collect", "imdb", str(tmp_path / "empty.txt"), "--out", str(tmp_path / "o")]) == 2
    assert "holds no ids" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_client_without_cache_fetches_each_poster_once(server, tmp_path):
    # no cache folder: phase 2 must not ask the server again for the posters phase 1 checked
    ids = tmp_path / "ids.txt"
    ids.write_text("tt0111161\ntt0133093\n")
    client = HttpClient(cache_dir=None, rate=200.0, backoff=0.01, jitter=False, timeout=1.0)
    n, _ = collect_imdb(ids, tmp_path / "ds", client, base_url=server.url, image_base_url=server.url)
    titles = check_dataset(tmp_path / "ds")
    assert n == 2 and all(t.poster for t in titles.values())
    counts = {p: server.paths().count(p) for p in server.paths()}
    assert len(counts) == 4 and set(counts.values()) == {1}, counts


def test_imdb_pages_fetch_posters_drops_non_image_and_asks_again_later(server, tmp_path):
    src = tmp_path / "saved"
    src.mkdir()
    for tt in ("tt0133093", "tt0903747", "tt0111161"):
        shutil.copy(PAGES / f"{tt}.html", src)
    server.script[BAD_POSTER] = [("body", b"<html>Service Unavailable</html>", "image/jpeg")]
    shaw = "/images/M/MV5BMDAyY2FhYjctNDc5OS00MDNlLThiMGUtY2UxYWVkNGY2ZjljXkEyXkFqcGc@._V1_SY384.jpg"
    server.script[shaw] = [("status", 503)] * 2
    argv = ["collect", "imdb-pages", str(src), "--out", str(tmp_path / "ds"), "--fetch-posters",
            "--image-base-url", server.url, "--cache", str(tmp_path / "cache"), "--rate", "100", "--retries", "1",
            "--backoff", "0.01"]
    assert cli(argv) == 0
    titles = check_dataset(tmp_path / "ds")
    assert titles["tt0133093"].poster and not titles["tt0903747"].poster and not titles["tt0111161"].poster
    rep = json.loads((tmp_path / "ds" / "collect_report.json").read_text())
    warned = {w["id"]: w["reason"] for w in rep["warnings"]}
    assert warned["tt0903747"] == "poster dropped, poster: not an image (unrecognised format)"
    assert warned["tt0111161"] == "poster dropped, poster: HTTP 503 after 2 attempts"
    n = len(server.paths())
    # the re-run asks only for the two posters it could not use; the good one comes from the cache
    assert cli(argv + ["--force"]) == 0
    assert sorted(server.paths()[n:]) == sorted([BAD_POSTER, shaw])
    titles = check_dataset(tmp_path / "ds")
    assert all(t.poster for t in titles.values())


def test_failed_force_rerun_leaves_the_previous_dataset_intact(server, tmp_path, monkeypatch):
    ids, out = ids_file(tmp_path), tmp_path / "ds"
    collect_imdb(ids, out, make_client(tmp_path), base_url=server.url, image_base_url=server.url)
    before = (out / "titles.jsonl").read_bytes(), (out / "dataset.json").read_bytes()
    from genrefusion.data import dataset as dataset_mod

    real_add = dataset_mod.DatasetWriter.add

    def failing_add(self, t, *a, **kw):
        if self.count == 2:
            raise OSError(28, "No space left on device")
        return real_add(self, t, *a, **kw)

    monkeypatch.setattr(dataset_mod.DatasetWriter, "add", failing_add)
    with pytest.raises(OSError):
        collect_imdb(ids, out, make_client(tmp_path), base_url=server.url, image_base_url=server.url, force=True)
    assert ((out / "titles.jsonl").read_bytes(), (out / "dataset.json").read_bytes()) == before
    assert not list(out.rglob("*.tmp"))
    check_dataset(out)


@pytest.mark.parametrize("opt, val", [("--rate", "0"), ("--rate", "nan"), ("--timeout", "0"), ("--retries", "-1"),
                                      ("--max-failures", "0"), ("--timeout", "inf"), ("--timeout", "1e12"),
                                      ("--rate", "1e9"), ("--backoff", "inf"), ("--backoff", "-1")])
def test_out_of_range_http_options_are_one_line_errors(tmp_path, capsys, opt, val):
    ids = tmp_path / "ids.txt"
    ids.write_text("tt0111161\n")
    assert cli(["collect", "imdb", str(ids), "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"),
                "--base-url", "http://127.0.0.1:9", opt, val]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {opt}: out of range (") and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_imdb_pages_odd_poster_urls_lose_the_poster_not_the_run(server, tmp_path):
    src = tmp_path / "saved"
    src.mkdir()
    shaw = (PAGES / "tt0111161.html").read_text()
    url = "https://m.media-amazon.com/images/M/MV5BMDAyY2FhYjctNDc5OS00MDNlLThiMGUtY2UxYWVkNGY2ZjljXkEyXkFqcGc@._V1_.jpg"
    assert shaw.count(url) == 2  # JSON-LD image and __NEXT_DATA__ primaryImage
    (src / "tt0111161.html").write_text(shaw.replace(url, "/images/M/rel@._V1_.jpg"))  # relative to imdb.com
    (src / "tt0108052.html").write_text((PAGES / "tt0108052.html").read_text().replace(
        "https://m.media-amazon.com/images/M/MV5BNjM1ZDQxYWUtMzQyZS00MTE1LWJmZGYtNGUyNTdlYjM3ZmVmXkEyXkFqcGc@._V1_.jpg",
        "data:image/gif;base64,R0lGODlhAQABAAAAACw="))
    n, rep = collect_imdb_pages(src, tmp_path / "ds", client=make_client(tmp_path), image_base_url=server.url)
    titles = check_dataset(tmp_path / "ds")
    assert n == 2 and titles["tt0111161"].poster and not titles["tt0108052"].poster
    assert "/images/M/rel@._V1_SY384.jpg" in server.paths()
    assert {w.id: w.reason for w in rep.warnings}["tt0108052"].startswith(
        "poster dropped, not an http(s) URL: 'data:image/gif")


def test_refused_poster_loses_the_poster_and_a_blocked_image_host_stops_the_run(server, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(GOOD) + "\n")
    server.script[BAD_POSTER] = [("status", 403)]
    n, rep = collect_imdb(ids, tmp_path / "ds", make_client(tmp_path), base_url=server.url,
                          image_base_url=server.url)
    titles = check_dataset(tmp_path / "ds")
    bad = next(tt for tt, w in ((w.id, w.reason) for w in rep.warnings) if "HTTP 403" in w)
    assert n == len(GOOD) and titles[bad].poster is None and titles[bad].plot
    assert {w.id: w.reason for w in rep.warnings}[bad] == "poster dropped, poster: HTTP 403"
    # an image host refusing everything stops the run after --max-failures posters in a row, although
    # the pages in between are fine
    with FakeServer(FIX) as images:
        images._default = lambda path, query: (403, b"<Error>AccessDenied</Error>", "application/xml")
        with pytest.raises(FatalFetchError, match="3 poster requests failed in a row .*HTTP 403"):
            collect_imdb(ids, tmp_path / "ds2", make_client(tmp_path / "c2"), base_url=server.url,
                         image_base_url=images.url, max_failures=3)
        assert images.count("/images/") == 3
