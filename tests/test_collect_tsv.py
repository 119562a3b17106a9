"""`collect imdb-tsv`: IMDb's non-commercial title.basics.tsv.gz joined to ids or to a dataset."""
from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest

from genrefusion.cli import main as cli
from genrefusion.collect.imdb_tsv import collect_tsv, scan_basics
from genrefusion.data.dataset import Dataset, DatasetWriter
from genrefusion.data.records import Title
from genrefusion.errors import BadInput, DatasetError
from genrefusion.genres import IMDB_GENRES

FIX = Path(__file__).resolve().parent / "fixtures" / "collect"
BASICS = FIX / "title.basics.tsv.gz"
sys.path.insert(0, str(FIX))
from fakeserver import check_dataset, poster_bytes  # noqa: E402


def test_scan_basics_reads_only_wanted_rows():
    rows = scan_basics(BASICS, {"tt0903747", "tt0475293", "tt7777777", "tt0000404"})
    assert sorted(rows) == ["tt0475293", "tt0903747", "tt7777777"]
    assert rows["tt0903747"] == {"title": "Breaking Bad", "title_type": "tvSeries", "kind": "tv", "year": 2008,
                                 "genres": ["Crime", "Drama", "Thriller"]}
    assert rows["tt0475293"]["kind"] == "movie"  # a tvMovie is a film
    assert rows["tt7777777"] == {"title": '"Untitled" Project', "title_type": "movie", "kind": "movie", "year": None,
                                 "genres": []}


def test_plain_tsv_and_bad_files(tmp_path):
    plain = tmp_path / "basics.tsv"
    plain.write_bytes(gzip.decompress(BASICS.read_bytes()))
    assert scan_basics(plain, {"tt0111161"})["tt0111161"]["genres"] == ["Drama"]
    cut = tmp_path / "cut.tsv.gz"
    cut.write_bytes(BASICS.read_bytes()[:-30])
    with pytest.raises(DatasetError, match="corrupt or truncated gzip"):
        scan_basics(cut, {"tt0000000"})
    wrong = tmp_path / "ratings.tsv.gz"
    wrong.write_bytes(gzip.compress(b"tconst\taverageRating\tnumVotes\ntt0111161\t9.3\t3000000\n"))
    with pytest.raises(DatasetError, match="not an IMDb title.basics file \\(missing column\\(s\\) titleType"):
        scan_basics(wrong, {"tt0111161"})
    with pytest.raises(BadInput, match="file not found"):
        scan_basics(tmp_path / "nope.tsv.gz", {"tt0111161"})


def source_dataset(root: Path) -> Path:
    """Posters and plots from elsewhere, with genres that disagree with IMDb's."""
    w = DatasetWriter(root, genres=["Action", "Crime", "Drama"], source="elsewhere")
    w.add(Title(id="tt0111161", imdb_id="tt0111161", genres=["Crime", "Drama"], plot="Two imprisoned men bond.",
                title="The Shawshank Redemption", year=1995), poster=poster_bytes("a", (200, 300)))
    w.add(Title(id="bb", imdb_id="tt0903747", genres=["Drama"], plot="A teacher turns to crime."),
          poster=poster_bytes("b", (500, 750)))
    w.add(Title(id="tt0133093", genres=["Action"], plot="A hacker learns the truth."))
    w.add(Title(id="tt7777777", genres=["Drama"], plot="No genres on IMDb yet."))
    w.add(Title(id="tt0000404", genres=["Drama"], plot="Not in the file."))
    w.add(Title(id="local-1", genres=["Drama"], plot="No IMDb id at all."))
    w.close()
    return root


def test_collect_tsv_onto_a_dataset(tmp_path, capsys):
    src = source_dataset(tmp_path / "src")
    out = tmp_path / "joined"
    assert cli(["collect", "imdb-tsv", str(BASICS), "--dataset", str(src), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "skipped tt7777777: no genres in title.basics.tsv.gz" in err
    assert "skipped tt0000404: not in title.basics.tsv.gz" in err
    assert "skipped local-1: no IMDb id to join on" in err
    titles = check_dataset(out)
    assert sorted(titles) == ["bb", "tt0111161", "tt0133093"]
    shaw = titles["tt0111161"]
    assert (shaw.genres, shaw.year, shaw.kind, shaw.plot) == (["Drama"], 1994, "movie", "Two imprisoned men bond.")
    assert titles["bb"].genres == ["Crime", "Drama", "Thriller"] and titles["bb"].kind == "tv"
    assert titles["bb"].poster and titles["tt0133093"].imdb_id == "tt0133093"
    assert titles["tt0133093"].title == "The Matrix" and titles["tt0133093"].genres == ["Action", "Sci-Fi"]
    assert Dataset(out).labelled_genres == list(IMDB_GENRES)
    # the source is read, never written
    assert [t.genres for t in Dataset(src).titles()][:2] == [["Crime", "Drama"], ["Drama"]]


def test_collect_tsv_ids_gives_label_records(tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("tt0944947\ntt0475293\ntt0000404\n")
    n, rep = collect_tsv(BASICS, tmp_path / "labels", ids_file=ids)
    titles = {t.id: t for t in Dataset(tmp_path / "labels").titles()}
    assert n == 2 and [s.id for s in rep.skipped] == ["tt0000404"]
    got = titles["tt0944947"]
    assert (got.title, got.kind, got.year, got.genres, got.poster, got.plot) == (
        "Game of Thrones", "tv", 2011, ["Action", "Adventure", "Drama"], None, None)


def test_collect_tsv_argument_errors(tmp_path, capsys):
    src = source_dataset(tmp_path / "src")
    with pytest.raises(BadInput, match="exactly one of --ids FILE or --dataset DIR"):
        collect_tsv(BASICS, tmp_path / "o")
    assert cli(["collect", "imdb-tsv", str(BASICS), "--dataset", str(src), "--out", str(src), "--force"]) == 2
    assert "--out must differ from --dataset" in capsys.readouterr().err


def test_scan_streams_and_stops_once_every_id_is_found(tmp_path):
    import tracemalloc

    header = "tconst\ttitleType\tprimaryTitle\toriginalTitle\tisAdult\tstartYear\tendYear\truntimeMinutes\tgenres\n"
    rows = "".join(f"tt{i:07d}\tmovie\tTitle number {i}\tTitle number {i}\t0\t{1950 + i % 70}\t\\N\t90\t"
                   f"{'Drama,Comedy' if i % 2 else 'Horror'}\n" for i in range(1, 120_001))
    big = tmp_path / "title.basics.tsv.gz"
    data = gzip.compress((header + rows).encode(), compresslevel=1)
    big.write_bytes(data[: len(data) - 2000])  # the end of the download is missing
    assert len(header + rows) > 8_000_000
    tracemalloc.start()
    found = scan_basics(big, {"tt0000007", "tt0000100"})
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # both ids sit near the start: reading stopped there, never reaching the cut-off end
    assert found["tt0000007"]["genres"] == ["Drama", "Comedy"] and found["tt0000100"]["genres"] == ["Horror"]
    assert peak < 2_000_000, peak  # streamed: far below the 8 MB the file holds unzipped
    with pytest.raises(DatasetError, match="corrupt or truncated gzip near line"):
        scan_basics(big, {"tt0000007", "tt9999999"})  # one id is not there: the whole file is read


def basics(tmp_path: Path, rows: list[str], bom: bool = False) -> Path:
    p = tmp_path / "title.basics.tsv"
    head = "tconst\ttitleType\tprimaryTitle\toriginalTitle\tisAdult\tstartYear\tendYear\truntimeMinutes\tgenres\n"
    p.write_text(("\ufeff" if bom else "") + head + "".join(r + "\n" for r in rows), encoding="utf-8")
    return p


def test_force_replaces_the_dataset_whole_and_only_when_complete(tmp_path, monkeypatch):
    from genrefusion.data import dataset as dataset_mod

    out = tmp_path / "joined"
    collect_tsv(BASICS, out, dataset=source_dataset(tmp_path / "src"))
    files = lambda: {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}  # noqa
    before = files()
    # other posters for the same titles; the run is interrupted after its first title
    w = DatasetWriter(tmp_path / "src2", genres=["Drama"])
    for tid, tt in (("tt0111161", "tt0111161"), ("bb", "tt0903747")):
        w.add(Title(id=tid, imdb_id=tt, genres=["Drama"], plot="Other."), poster=poster_bytes("new" + tid, (90, 60)))
    w.close()
    real_add = DatasetWriter.add

    def dying_add(self, *a, **kw):
        if self.count == 1:
            raise KeyboardInterrupt
        return real_add(self, *a, **kw)

    monkeypatch.setattr(dataset_mod.DatasetWriter, "add", dying_add)
    with pytest.raises(KeyboardInterrupt):
        collect_tsv(BASICS, out, dataset=tmp_path / "src2", force=True)
    assert files() == before  # the old dataset, posters included, untouched
    monkeypatch.setattr(dataset_mod.DatasetWriter, "add", real_add)
    # a finished --force with fewer titles keeps none of the old posters
    w = DatasetWriter(tmp_path / "src3", genres=["Drama"])
    w.add(Title(id="tt0111161", genres=["Drama"], plot="One."), poster=poster_bytes("c", (90, 60)))
    w.close()
    collect_tsv(BASICS, out, dataset=tmp_path / "src3", force=True)
    assert sorted(files()) == ["collect_report.json", "dataset.json", "posters/tt0111161.jpg", "titles.jsonl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["joined", "src", "src2", "src3"]  # no staging left


def test_dataset_writer_cleans_up_and_publishes_titles_last(tmp_path, monkeypatch):
    from genrefusion.data import dataset as dataset_mod

    root = tmp_path / "ds"
    (root / "posters").mkdir(parents=True)
    stale = [root / ".titles.jsonl.0123456789ab.tmp", root / "posters" / ".tt1.jpg.0123456789ab.tmp"]
    for p in stale:
        p.write_bytes(b"left by a killed run")
    w = DatasetWriter(root, genres=["Drama"])
    assert not any(p.exists() for p in stale)
    w.add(Title(id="a", genres=["Drama"], plot="x"))
    monkeypatch.setattr(dataset_mod, "write_json", lambda *a, **kw: (_ for _ in ()).throw(OSError(28, "full")))
    with pytest.raises(OSError):
        w.close()
    assert not (root / "titles.jsonl").exists()  # no dataset.json: the dataset is not complete


def test_tsv_ids_several_a_line_and_types_that_are_no_film_or_series(tmp_path):
    tsv = basics(tmp_path, ["tt0111161\tmovie\tA\tA\t0\t1994\t\\N\t142\tDrama",
                            "tt0133093\tmovie\tB\tB\t0\t1999\t\\N\t136\tAction,Sci-Fi",
                            "tt0903747\ttvSeries\tC\tC\t0\t2008\t2013\t49\tCrime,Drama",
                            "tt9420000\tvideoGame\tD\tD\t0\t2020\t\\N\t\\N\tAction",
                            "tt9420001\t\\N\tE\tE\t0\t2020\t\\N\t\\N\tDrama"], bom=True)
    ids = tmp_path / "ids.txt"
    ids.write_text("tt0111161, tt0133093 tt0903747\ntt9420000,A video game,2020\ntt9420001\n")
    n, rep = collect_tsv(tsv, tmp_path / "o", ids_file=ids)
    assert n == 3 and [t.id for t in Dataset(tmp_path / "o").titles()] == ["tt0111161", "tt0133093", "tt0903747"]
    assert {s.id: s.reason for s in rep.skipped} == {
        "tt9420000": "title type videoGame in title.basics.tsv is neither a film nor a series",
        "tt9420001": "title type missing in title.basics.tsv is neither a film nor a series"}


def test_tsv_joins_on_normalised_imdb_ids(tmp_path):
    w = DatasetWriter(tmp_path / "src", genres=["Drama"])
    for tid, tt in (("a", "TT0111161"), ("b", "https://www.imdb.com/title/tt0133093/?ref_=x"), ("c", "tt903747 "),
                    ("tt0944947", None)):
        w.add(Title(id=tid, imdb_id=tt, genres=["Drama"], plot="p"), poster=poster_bytes(tid, (60, 90)))
    w.close()
    n, rep = collect_tsv(BASICS, tmp_path / "o", dataset=tmp_path / "src")
    assert n == 4 and not rep.skipped
    assert {t.id: t.imdb_id for t in Dataset(tmp_path / "o").titles()} == {
        "a": "tt0111161", "b": "tt0133093", "c": "tt0903747", "tt0944947": "tt0944947"}


def test_tsv_without_joinable_ids_fails_before_reading_and_leaves_no_folder(tmp_path, monkeypatch, capsys):
    import genrefusion.collect.imdb_tsv as imdb_tsv

    w = DatasetWriter(tmp_path / "src", genres=["Drama"])
    w.add(Title(id="local-1", genres=["Drama"], plot="p"))
    w.add(Title(id="local-2", genres=["Drama"], plot="q"))
    w.close()
    monkeypatch.setattr(imdb_tsv, "scan_basics", lambda *a: pytest.fail("the file was read"))
    out = tmp_path / "o"
    assert cli(["collect", "imdb-tsv", str(BASICS), "--dataset", str(tmp_path / "src"), "--out", str(out)]) == 2
    assert "none of its 2 titles has an IMDb id to join on" in capsys.readouterr().err
    monkeypatch.undo()
    # every title skipped: the run fails, and the --out folder it made is not left behind, empty
    ids = tmp_path / "ids.txt"
    ids.write_text("tt0000404\n")
    assert cli(["collect", "imdb-tsv", str(BASICS), "--ids", str(ids), "--out", str(out)]) == 2
    assert "no titles collected" in capsys.readouterr().err and not out.exists()


def test_interrupted_run_leaves_its_report(tmp_path, monkeypatch):
    from genrefusion.data import dataset as dataset_mod

    src, out, real_add = source_dataset(tmp_path / "src"), tmp_path / "o", DatasetWriter.add

    def dying_add(self, *a, **kw):
        if self.count == 1:
            raise KeyboardInterrupt
        return real_add(self, *a, **kw)

    monkeypatch.setattr(dataset_mod.DatasetWriter, "add", dying_add)
    assert cli(["collect", "imdb-tsv", str(BASICS), "--dataset", str(src), "--out", str(out)]) == 130
    rep = json.loads((out / "collect_report.json").read_text())
    assert rep["error"] == "KeyboardInterrupt" and {"local-1", "tt0000404"} <= {s["id"] for s in rep["skipped"]}
    assert not (out / "titles.jsonl").exists()


def test_out_equal_to_dataset_is_refused_first(tmp_path, capsys):
    src = source_dataset(tmp_path / "src")
    assert cli(["collect", "imdb-tsv", str(BASICS), "--dataset", str(src), "--out", str(src)]) == 2
    err = capsys.readouterr().err
    assert "--out must differ from --dataset" in err and "--force" not in err
