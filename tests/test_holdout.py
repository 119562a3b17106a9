"""Leave-one-dataset-out split: titles shared with the held-out dataset (imdb_id, or title + year when a
source has no imdb ids) are in no part; everything else is split as usual."""
from __future__ import annotations

from genrefusion.data import Dataset
from genrefusion.data.holdout import Overlap, holdout_split


def _rec(i, imdb=None, title=None, year=None, genres=("Drama",)):
    return {"id": f"x{i}", "imdb_id": imdb, "title": title, "year": year, "kind": "movie", "genres": list(genres),
            "plot": f"plot number {i}", "poster": None}


def test_holdout_removes_titles_sharing_imdb_id(tiny_dataset):
    # b shares tt9000000..tt9000019 with the held-out a (same imdb_offset); its other 20 titles are b's own
    a = Dataset(tiny_dataset(n=20, name="a", id_prefix="a"))
    b = Dataset(tiny_dataset(n=40, name="b", id_prefix="b", seed=1))
    split, dropped = holdout_split([b], [a], dev=0.2, seed=0)
    held_ids = {t.imdb_id for t in a.titles()}
    for t in b.titles():
        part = split.part_of("b", t.id)
        assert part in ((None,) if t.imdb_id in held_ids else ("train", "dev")), t.id
    assert split.parts["dev"] and all(split.part_of("a", t.id) == "test" for t in a.titles())
    assert dropped == {"b": {"imdb_id": 20}}
    assert len(split) == 20 + 20


def test_holdout_matches_title_and_year_without_imdb_id(tmp_path, write_raw_dataset):
    held = Dataset(write_raw_dataset(tmp_path / "held", [
        _rec(0, title="Breaking Bad", year=2008), _rec(1, imdb="tt0000001", title="Alpha", year=1999)], name="held"))
    other = Dataset(write_raw_dataset(tmp_path / "other", [
        _rec(0, title="Breaking  bad!", year=2008),      # same title + year, different spelling: dropped
        _rec(1, title="Breaking Bad", year=2013),       # another year: kept
        _rec(2, imdb="tt0000001", title="Alpha (re-release)", year=2005),  # same imdb_id: dropped
        _rec(3, title=None, year=2008),                 # nothing to match on: kept
    ] + [_rec(10 + i, title=f"T{i}", year=2000) for i in range(16)], name="other"))
    ov = Overlap([held])
    assert [ov.reason(t) for t in other.titles()][:4] == ["title+year", None, "imdb_id", None]
    split, dropped = holdout_split([other], [held], dev=0.25, seed=0)
    assert dropped == {"other": {"title+year": 1, "imdb_id": 1}}
    assert set(split.parts["train"] + split.parts["dev"]) == {f"other/{t.id}" for t in other.titles()} - {
        "other/x0", "other/x2"}
    assert split.parts["test"] == ["held/x0", "held/x1"]
