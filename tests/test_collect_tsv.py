"""`collect imdb-tsv`: IMDb's non-commercial title.basics.tsv.gz joined to ids or to a dataset."""
from __future__ import annotations

import gzip
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
