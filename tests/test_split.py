"""Split: determinism, grouping by imdb_id across datasets, rare genres in every part, CLI rules."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from genrefusion.cli import main
from genrefusion.data import Dataset
from genrefusion.data.split import MIN_PRESENT, PARTS, Split, make_split
from genrefusion.errors import ConfigError, DatasetError


def test_deterministic_per_seed(tiny_dataset, tmp_path):
    ds = [Dataset(tiny_dataset(n=60))]
    a, b = make_split(ds, seed=3), make_split(ds, seed=3)
    a.save(tmp_path / "a.json")
    b.save(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert make_split(ds, seed=4).parts != a.parts  # the seed matters
    assert sorted(sum(a.parts.values(), [])) == sorted(t.id for t in ds[0].titles())  # a partition


def test_fractions_roughly_respected(tiny_dataset):
    ds = [Dataset(tiny_dataset(n=200))]
    s = make_split(ds, dev=0.1, test=0.2, seed=0)
    n = {p: len(s.parts[p]) for p in PARTS}
    assert abs(n["dev"] - 20) <= 4 and abs(n["test"] - 40) <= 5 and sum(n.values()) == 200


def test_grouping_across_datasets(tiny_dataset):
    # b shares imdb ids tt9000000..tt9000039 with a (same imdb_offset), c is disjoint
    a = Dataset(tiny_dataset(n=40, name="a", id_prefix="a"))
    b = Dataset(tiny_dataset(n=30, name="b", id_prefix="b", seed=1))
    c = Dataset(tiny_dataset(n=30, name="c", id_prefix="c", imdb_offset=1000))
    s = make_split([a, b, c], seed=0)
    assert s.qualified and all("/" in k for p in PARTS for k in s.parts[p])
    by_imdb: dict[str, set] = {}
    for ds in (a, b, c):
        for t in ds.titles():
            by_imdb.setdefault(t.imdb_id, set()).add(s.part_of(ds.name, t.id))
    assert all(len(parts) == 1 and None not in parts for parts in by_imdb.values())
    shared_parts = Counter(next(iter(by_imdb[t.imdb_id])) for t in b.titles())
    assert len(shared_parts) >= 2  # shared groups are not all piled into one part
    assert s.part_of("a", "a-0000") in PARTS and s.part_of("zzz", "a-0000") is None


def test_titles_without_imdb_id_are_their_own_group(tmp_path, write_raw_dataset):
    recs = [{"id": f"x{i}", "imdb_id": None, "genres": ["Drama"], "plot": "p"} for i in range(20)]
    a = Dataset(write_raw_dataset(tmp_path / "a", recs, name="a"))
    b = Dataset(write_raw_dataset(tmp_path / "b", recs, name="b"))
    s = make_split([a, b], seed=0)
    # same ids in two datasets but no imdb_id: not known to be the same title, split independently
    assert len(s) == 40
    assert any(s.part_of("a", f"x{i}") != s.part_of("b", f"x{i}") for i in range(20))


def test_rare_genres_in_every_part(tmp_path, write_raw_dataset):
    # 5 titles of a rare genre among many common ones: iterative stratification alone tends to leave
    # the 10% dev part without it; the repair step must fix that for every seed
    recs = [{"id": f"t{i}", "imdb_id": f"tt{i:07d}", "genres": ["Drama"] if i % 2 else ["Comedy"], "plot": "p"}
            for i in range(100)]
    for i in range(5):
        recs[i * 7]["genres"] = ["Drama", "Western"]
    for i in range(6):
        recs[i * 11 + 1]["genres"] = ["Comedy", "War"]
    ds = [Dataset(write_raw_dataset(tmp_path / "d", recs, name="d"))]
    for seed in range(5):
        counts = make_split(ds, seed=seed).counts(ds)
        for g in ("Western", "War", "Drama", "Comedy"):
            assert all(counts[p].get(g, 0) >= 1 for p in PARTS), (seed, g, counts)


def test_shipped_combined_every_frequent_genre_in_every_part(shipped):
    dss = [Dataset(shipped / n) for n in ("cornell_tmdb", "imdb_top250", "poster_genres_av")]
    s = make_split(dss, seed=0)
    counts = s.counts(dss)
    total = Counter(g for ds in dss for t in ds.titles() for g in set(t.genres))
    frequent = [g for g, n in total.items() if n >= MIN_PRESENT]
    assert "Film-Noir" in frequent and "News" in frequent  # rare genres are part of the check
    for g in frequent:
        assert all(counts[p].get(g, 0) >= 1 for p in PARTS), (g, {p: counts[p].get(g) for p in PARTS})
    # shared titles (by imdb_id) never straddle parts
    by_imdb: dict[str, set] = {}
    for ds in dss:
        for t in ds.titles():
            by_imdb.setdefault(t.imdb_id, set()).add(s.part_of(ds.name, t.id))
    assert all(len(v) == 1 for v in by_imdb.values())
    assert sum(counts[p]["titles"] for p in PARTS) == sum(len(ds) for ds in dss)


def test_load_save_roundtrip_and_formats(tmp_path, tiny_dataset):
    ds = Dataset(tiny_dataset(n=30, name="solo"))
    s = make_split([ds], seed=0)
    s.save(tmp_path / "s.json")
    d = json.loads((tmp_path / "s.json").read_text())
    assert set(d) == {"seed", "dev", "test", "datasets", "parts"} and d["datasets"] == ["solo"]
    t = Split.load(tmp_path / "s.json")
    assert t.parts == s.parts and t.part_of("solo", "tiny-0001") == s.part_of(None, "tiny-0001")
    assert t.part_of("other", "tiny-0001") is None
    # a bare MM-IMDb style split file is accepted and matches any dataset
    (tmp_path / "mm.json").write_text(json.dumps({"train": ["a"], "dev": ["b"], "test": ["c"]}))
    mm = Split.load(tmp_path / "mm.json")
    assert mm.part_of("whatever", "b") == "dev"
    assert (mm.seed, mm.dev, mm.test) == (None, None, None)  # was dev == ["b"], test == ["c"]: no fractions
    (tmp_path / "old.json").write_text(json.dumps({"dev": ["b"], "test": ["c"], "parts": {"train": ["a"]}}))
    assert Split.load(tmp_path / "old.json").dev is None  # a run's split.json written from such a file before


@pytest.mark.parametrize("content, msg", [
    ("{oops", "not valid JSON"), ("[]", "JSON object"), ('{"parts": {"train": ["a"], "test": ["a"]}}', "both"),
    ('{"parts": {"holdout": []}}', "unknown split part"), ('{"parts": {"train": "abc"}}', "list of ids"),
])
def test_load_rejects_malformed(tmp_path, content, msg):
    (tmp_path / "s.json").write_text(content)
    with pytest.raises(DatasetError, match=msg):
        Split.load(tmp_path / "s.json")


def test_bad_fractions_and_names(tiny_dataset):
    ds = Dataset(tiny_dataset(n=10))
    for dev, test in ((0.5, 0.5), (-0.1, 0.2), (0.1, 1.2), (0, 0.2)):  # dev 0: no titles to tune or stop on
        with pytest.raises(ConfigError):
            make_split([ds], dev=dev, test=test)
    with pytest.raises(DatasetError, match="named"):
        make_split([ds, Dataset(ds.root)])


# -- CLI ---------------------------------------------------------------------------------------
def test_cli_writes_keeps_and_forces(tiny_dataset, capsys):
    root = tiny_dataset(n=40)
    assert main(["split", str(root), "--seed", "1"]) == 0
    out = capsys.readouterr().out
    first = (root / "split.json").read_bytes()
    assert "split written" in out and "titles" in out and "Action" in out  # per-genre table
    assert main(["split", str(root), "--seed", "2"]) == 0
    assert "keeping existing split" in capsys.readouterr().out
    assert (root / "split.json").read_bytes() == first
    assert main(["split", str(root), "--seed", "2", "--force"]) == 0
    assert (root / "split.json").read_bytes() != first
    assert json.loads((root / "split.json").read_text())["seed"] == 2


def test_cli_warns_when_the_kept_split_leaves_titles_out(tiny_dataset, capsys):
    root = tiny_dataset(n=10)
    ids = [t.id for t in Dataset(root).titles()]
    (root / "split.json").write_text(json.dumps({"train": ids[:6], "dev": ids[6:7], "test": ids[7:8]}))  # MM-IMDb's
    assert main(["split", str(root)]) == 0
    cap = capsys.readouterr()
    assert "(no seed or fractions: an imported split)" in cap.out and "dev: [" not in cap.out  # was "dev: [...]"
    assert cap.err == f"warning: {root / 'split.json'} places 8 of the 10 titles; training skips the other 2 " \
                      "(--force makes a new split)\n"
    assert main(["split", str(root), "--force"]) == 0  # 10 titles: a tenth for dev leaves none there
    assert capsys.readouterr().err == (f"warning: {root / 'split.json'} places no title of tiny in its dev part; "
                                       "training needs dev and test titles (add titles or raise --dev)\n")
    assert main(["split", str(root), "--force", "--dev", "0.3"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("empty", ["dev", "test"])
def test_cli_warns_when_a_kept_split_has_an_empty_part(tiny_dataset, capsys, empty):
    root = tiny_dataset(n=10)
    ids = [t.id for t in Dataset(root).titles()]
    parts = {"train": ids[:8], "dev": ids[8:], "test": ids[8:]} | {empty: []}
    (root / "split.json").write_text(json.dumps(parts))  # MM-IMDb's form
    assert main(["split", str(root)]) == 0
    assert capsys.readouterr().err == (f"warning: {root / 'split.json'} places no title of tiny in its {empty} part; "
                                       "training needs dev and test titles (--force makes a new split)\n")


def test_cli_refuses_shipped_folder(shipped, tmp_path, capsys):
    target = shipped / "imdb_top250"
    assert main(["split", str(target)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "--out" in err
    assert not (target / "split.json").exists()
    assert main(["split", str(target), "--out", str(tmp_path / "s.json")]) == 0
    assert Split.load(tmp_path / "s.json").part_of("imdb_top250", "tt0111161") in PARTS


def test_cli_several_datasets_need_out(tiny_dataset, tmp_path, capsys):
    a, b = tiny_dataset(n=12, name="a"), tiny_dataset(n=12, name="b", imdb_offset=500)
    assert main(["split", str(a), str(b)]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["split", str(a), str(b), "--out", str(tmp_path)]) == 0  # a folder: split.json inside
    assert Split.load(tmp_path / "split.json").datasets == ["a", "b"]


def test_cli_bad_args_one_line(tiny_dataset, tmp_path, capsys):
    root = tiny_dataset(n=12)
    for argv in (["split", str(root), "--dev", "0.7", "--test", "0.5"], ["split", str(tmp_path / "nope")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    # 0 made an empty part (was accepted): no dev titles to tune on, no test titles to report on
    for option, argv in (("--dev", ["--dev", "0", "--test", "0"]), ("--test", ["--test", "0"])):
        assert main(["split", str(root), *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {option}: must be > 0") and len(err.strip().splitlines()) == 1
    assert not (root / "split.json").exists()


def test_folds_partition_the_included_titles_by_group(tiny_dataset):
    from genrefusion.data.split import make_folds

    a = Dataset(tiny_dataset(n=60, name="a", id_prefix="a"))
    b = Dataset(tiny_dataset(n=40, name="b", id_prefix="b", seed=1))  # shares imdb ids with a
    pool = set(make_split([a, b], seed=0).ids("train"))
    folds = make_folds([a, b], 4, seed=0, include=pool.__contains__)
    assert folds == make_folds([a, b], 4, seed=0, include=pool.__contains__)  # deterministic
    assert sorted(k for f in folds for k in f) == sorted(pool)  # disjoint, and exactly the pool
    assert min(map(len, folds)) >= len(pool) // 4 - 6
    fold_of = {k: i for i, f in enumerate(folds) for k in f}
    imdb = {f"{ds.name}/{t.id}": t.imdb_id for ds in (a, b) for t in ds.titles()}
    by_group: dict[str, set] = {}
    for k, i in fold_of.items():
        by_group.setdefault(imdb[k], set()).add(i)
    assert all(len(v) == 1 for v in by_group.values())  # one film never in two folds
    with pytest.raises(ConfigError):
        make_folds([a, b], 1)


# -- the split a training run takes (train --split, or the datasets' own split.json) ---------------------------
def test_given_split_takes_a_datasets_own_split_rekeyed(tiny_dataset, tmp_path):
    from genrefusion.data.split import given_split

    a = Dataset(tiny_dataset(tmp_path / "a", name="a", id_prefix="a"))
    assert given_split([a]) == (None, "", [])  # no split.json: the run makes one
    ids = [t.id for t in a.titles()]
    # an MM-IMDb-style bare split that leaves two titles out
    (a.root / "split.json").write_text(json.dumps({"train": ids[:14], "dev": ids[14:18], "test": ids[18:22]}))
    split, source, warnings = given_split([a])
    assert source == str(a.split_path) and split.source == source
    assert split.ids("test") == ids[18:22] and len(split) == 22
    assert split.to_dict()["dev"] is None  # was the dev id list, written to the run's split.json as a fraction
    assert warnings == [f"2 of 24 titles are in no part of {source} and are not used"]
    assert given_split([a], "new")[0] is None
    # several datasets, each with its own split: combined, keyed <dataset>/<id>
    b = Dataset(tiny_dataset(tmp_path / "b", name="b", id_prefix="b", imdb_offset=500))
    bids = [t.id for t in b.titles()]
    (b.root / "split.json").write_text(json.dumps({"train": bids[:20], "dev": bids[20:22], "test": bids[22:]}))
    split, source, warnings = given_split([a, b])
    assert split.qualified and f"b/{bids[23]}" in split.ids("test") and f"a/{ids[0]}" in split.ids("train")
    assert len(warnings) == 1  # a's two unplaced titles
    # only one of them carries a split: not used, said
    (b.root / "split.json").unlink()
    split, _, warnings = given_split([a, b])
    assert split is None and "not using" in warnings[0] and "b without a split.json" in warnings[0]


def test_given_split_file_checks(tiny_dataset, tmp_path):
    from genrefusion.data.split import given_split

    # b's titles are the same films as a's (same imdb_ids)
    a = Dataset(tiny_dataset(tmp_path / "a", name="a", id_prefix="a"))
    b = Dataset(tiny_dataset(tmp_path / "b", name="b", id_prefix="b"))
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"train": ["nope-1"], "test": ["nope-2"]}))
    with pytest.raises(DatasetError, match="places none of the 24 titles"):
        given_split([a], bare)
    with pytest.raises(DatasetError, match="holds the ids of one dataset"):
        given_split([a, b], bare)
    # a combined split in which the two titles of one film sit in different parts
    combined = make_split([a, b], seed=0)
    t0 = next(iter(a.titles()))
    parts = {p: [k for k in combined.ids(p) if k != "b/b-0000"] for p in PARTS}
    parts["test" if combined.part_of("a", t0.id) != "test" else "train"].append("b/b-0000")
    path = Split(None, None, None, ["a", "b"], parts).save(tmp_path / "leaky.json")
    split, _, warnings = given_split([a, b], path)
    assert len(split) == 48 and any("1 film(s) in several parts" in w and t0.imdb_id in w for w in warnings)
