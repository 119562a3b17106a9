"""genrefusion.batch: inputs, the decision rule, writers, shards and merge checks."""
from __future__ import annotations

import json

import numpy as np
import pytest

from genrefusion import batch as B
from genrefusion.errors import BadInput, ConfigError, DatasetError

GENRES = ["Action", "Comedy", "Drama", "Horror"]
THR = np.array([0.5, 0.4, 0.3, 0.9])


def test_decide_rule():
    s = np.array([0.6, 0.45, 0.2, 0.95])
    assert B.decide(s, GENRES, THR) == ["Horror", "Action", "Comedy"]          # above threshold, most probable first
    assert B.decide(s, GENRES, THR, threshold=0.5) == ["Horror", "Action"]     # one threshold for all
    assert B.decide(s, GENRES, THR, top_k=2) == ["Horror", "Action"]           # top-k alone ignores thresholds
    assert B.decide(np.array([0.1, 0.1, 0.25, 0.1]), GENRES, THR, top_k=1) == ["Drama"]
    assert B.decide(s, GENRES, THR, top_k=5, threshold=0.9) == ["Horror"]      # both: at most k above it
    for bad in (0, -1, True, 1.5):
        with pytest.raises(BadInput, match="top_k"):
            B.check_overrides(bad, None)
    for bad in (-0.1, 1.1, float("nan")):
        with pytest.raises(BadInput, match="threshold"):
            B.check_overrides(None, bad)


def test_parse_shard():
    assert B.parse_shard("2/8") == (2, 8) and B.parse_shard(None) is None
    for bad in ("0/3", "4/3", "a/b", "3", "1/0"):
        with pytest.raises(ConfigError, match="--shard"):
            B.parse_shard(bad)
    # block j goes to shard (j mod N) + 1: every block in exactly one shard
    owners = [[k for k in (1, 2, 3) if B.block_in_shard(j, (k, 3))] for j in range(7)]
    assert owners == [[1], [2], [3], [1], [2], [3], [1]]


def test_open_input_errors(tmp_path):
    with pytest.raises(BadInput, match="not found"):
        B.open_input(tmp_path / "nope.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="not a dataset folder"):
        B.open_input(tmp_path / "empty")
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    with pytest.raises(BadInput, match="unknown batch input type"):
        B.open_input(tmp_path / "x.parquet")
    with pytest.raises(BadInput, match="unknown output type"):
        B.output_format(tmp_path / "out.txt")


def test_dataset_items_keep_bad_lines_as_errors(write_raw_dataset, make_jpeg, tmp_path):
    root = tmp_path / "ds"
    make_jpeg(root / "posters" / "a.jpg")
    write_raw_dataset(root, [
        {"id": "a", "genres": [], "plot": "A plot.", "poster": "posters/a.jpg"},
        {"id": "b", "genres": [], "plot": "Another plot.", "poster": "../../etc/passwd"},
    ], genres=GENRES, name="ds", lines=["{not json\n", "\n", '{"id": "c", "genres": [], "plot": "Third."}\n'])
    items = list(B.open_input(root))
    assert [i.index for i in items] == [0, 1, 2, 3]          # the blank line is not a record
    assert items[0].error is None and items[0].poster.name == "a.jpg"
    assert items[1].error and "escapes" in items[1].error
    assert items[2].error and "line 3" in items[2].error and "malformed JSON" in items[2].error
    assert items[3].id == "c" and items[3].poster is None and items[3].error is None
    prepared = [B.prepare(i) for i in items]
    assert prepared[0].used == ["poster", "plot"] and prepared[3].used == ["plot"]
    assert prepared[1].title is None and prepared[2].title is None


def test_dataset_title_whose_poster_file_is_gone_is_predicted_from_its_plot_with_a_warning(write_raw_dataset,
                                                                                          tmp_path):
    """As a CSV/JSONL poster cell naming a missing file (and as evaluate reads it): not a failed title."""
    root = write_raw_dataset(tmp_path / "ds", [
        {"id": "tt0133093", "genres": [], "plot": "A hacker.", "poster": "posters/tt0133093.jpg"},
        {"id": "tt0000002", "genres": [], "plot": None, "poster": "posters/tt0000002.jpg"},
    ], genres=GENRES, name="ds")
    items = list(B.open_input(root))
    assert items[0].error is None and items[0].poster is None and items[0].plot == "A hacker."
    assert items[0].warning == "tt0133093: poster posters/tt0133093.jpg: file not found"
    assert B.prepare(items[0]).used == ["plot"]
    assert B.prepare(items[1]).title is None and "not found" in B.prepare(items[1]).item.error  # no plot: an error


def test_jsonl_input_and_writer_roundtrip(tiny_run, make_jpeg, tmp_path):
    from genrefusion.predict import GenreClassifier

    clf = GenreClassifier.load(tiny_run)
    make_jpeg(tmp_path / "p1.jpg", color=(20, 200, 220))
    lines = [{"id": "one", "plot": "Robots on a spaceship.", "poster": "p1.jpg"},
             {"id": "two", "plot": "", "poster": ""},                    # no input at all
             {"id": "three", "plot": "A couple falls in love at a wedding."}]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    progress = []
    with B.BatchWriter(out, clf.genres_) as w:
        stats = B.run_batch(clf, B.open_input(src), w, batch_size=2,
                            progress=lambda n, skipped=False: progress.append(n))
    assert (stats.rows, stats.ok, stats.errors) == (3, 2, 1) and sum(progress) == 3
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["one", "two", "three"]
    assert rows[1]["error"] and rows[0]["used"] == ["poster", "plot"] and rows[2]["used"] == ["plot"]
    want = clf.predict_proba([{"poster": tmp_path / "p1.jpg", "plot": lines[0]["plot"]}, {"plot": lines[2]["plot"]}])
    np.testing.assert_allclose([rows[0]["scores"][g] for g in clf.genres_], want[0], atol=2e-6)
    np.testing.assert_allclose([rows[2]["scores"][g] for g in clf.genres_], want[1], atol=2e-6)


def test_rows_keep_the_ids_the_input_gave(tiny_run, tmp_path):
    """The importers key titles by the IMDb id they find in an id; a prediction row echoes the caller's own."""
    from genrefusion.predict import GenreClassifier

    clf = GenreClassifier.load(tiny_run)
    ids = ["cornell_tmdb/tt0029583", "https://www.imdb.com/title/tt0111161/", "my-42", "x"]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps({"id": i, "plot": "A cop hunts a killer."}) for i in ids) + "\n")
    csv_src = tmp_path / "in.csv"  # an id column beside an imdb_id column: the id column is the caller's
    csv_src.write_text("id,imdb_id,plot\nmy-42,tt0111161,A cop hunts a killer.\n,tt0068646,A family of gangsters.\n")
    for path, want in ((src, ids), (csv_src, ["my-42", "tt0068646"])):
        out = tmp_path / f"{path.stem}-{path.suffix[1:]}.jsonl"
        with B.BatchWriter(out, clf.genres_) as w:
            B.run_batch(clf, B.open_input(path), w, batch_size=2)
        assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == want


def test_unusable_poster_cell_is_a_warning_when_the_plot_is_usable(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(x) + "\n" for x in [
        {"id": "url", "plot": "A heist.", "poster": "https://example.com/p.jpg"},
        {"id": "na", "plot": "A heist.", "poster": "N/A"},
        {"id": "gone", "plot": "A heist.", "poster": "missing.jpg"},
        {"id": "url-only", "plot": "N/A", "poster": "https://example.com/p.jpg"}]).encode())
    items = list(B.open_input(src))
    assert [i.id for i in items] == ["url", "na", "gone", "url-only"]  # a BOM does not cost the first record
    assert [i.error is None for i in items] == [True, True, True, False] and "URL" in items[3].error
    assert "URL" in items[0].warning and items[1].warning is None and "missing.jpg" in items[2].warning
    assert items[0].poster is None and items[0].plot == "A heist." and B.prepare(items[0]).used == ["plot"]


def test_warning_column_survives_csv_shards_and_merge(tmp_path):
    import csv

    rows = [{"index": i, "id": str(i), "genres": ["Drama"], "scores": dict.fromkeys(GENRES, 0.5), "used": ["plot"],
             "threshold_set": "plot", "error": None, "warning": f"{i}: poster is a URL" if i % 2 else None}
            for i in range(4)]
    parts = []
    for k in (1, 2):
        part = tmp_path / f"part{k}.csv"
        with B.BatchWriter(part, GENRES) as w:
            for r in rows[2 * k - 2:2 * k]:
                w.write(r)
        B.manifest_path(part).write_text(json.dumps(
            {"shard": k, "of": 2, "block_size": 2, "input_digest": "d", "input_rows": 4, "rows": 2, "errors": 0,
             "model": "m", "top_k": None, "threshold": None}), encoding="utf-8")
        parts.append(part)
    B.merge_shards(parts[::-1], tmp_path / "all.csv")
    with open(tmp_path / "all.csv", newline="", encoding="utf-8") as fh:
        got = list(csv.DictReader(fh))
    assert [r["warning"] for r in got] == ["", "1: poster is a URL", "", "3: poster is a URL"]
    assert [r["error"] for r in got] == [""] * 4 and got[0]["score_Drama"] == "0.500000"


def test_writer_is_atomic(tmp_path):
    out = tmp_path / "out.csv"
    with pytest.raises(RuntimeError):
        with B.BatchWriter(out, GENRES) as w:
            w.write({"index": 0, "id": "x", "genres": ["Drama"], "scores": dict.fromkeys(GENRES, 0.5),
                     "used": ["plot"], "error": None})
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []  # no partial file behind the final name, no temp left


def _shard(tmp_path, k, n, rows, digest="d1", **extra):
    p = tmp_path / f"part{k}.jsonl"
    p.write_text("".join(json.dumps({"index": i, "id": str(i)}) + "\n" for i in rows), encoding="utf-8")
    m = {"shard": k, "of": n, "block_size": 2, "input_digest": digest, "input_rows": 4, "rows": len(rows),
         "errors": 0, "model": "m", "top_k": None, "threshold": None, **extra}
    B.manifest_path(p).write_text(json.dumps(m), encoding="utf-8")
    return p


def test_merge_checks(tmp_path):
    a, b = _shard(tmp_path, 1, 2, [0, 1]), _shard(tmp_path, 2, 2, [2, 3])
    info = B.merge_shards([b, a], tmp_path / "all.jsonl")
    assert info["rows"] == 4
    assert [json.loads(x)["index"] for x in (tmp_path / "all.jsonl").read_text().splitlines()] == [0, 1, 2, 3]
    with pytest.raises(BadInput, match="given more than once"):
        B.merge_shards([a, a], tmp_path / "x.jsonl")
    with pytest.raises(BadInput, match="input_digest"):
        B.merge_shards([a, _shard(tmp_path, 2, 2, [2, 3], digest="other")], tmp_path / "x.jsonl")
    c = _shard(tmp_path, 2, 2, [2, 3])
    c.write_text(c.read_text().splitlines()[0] + "\n")  # truncated after the manifest was written
    with pytest.raises(BadInput, match="truncated"):
        B.merge_shards([a, c], tmp_path / "x.jsonl")
    with pytest.raises(BadInput, match="overwrite"):
        B.merge_shards([a, b], a)
    assert not (tmp_path / "x.jsonl").exists()
