"""Datasets: malformed lines reported by line number with the rest kept, duplicate ids, unknown genres, missing
fields, unusable folders (one CLI error line), and poster paths escaping the folder (``../``, absolute, symlinks)
refused without ever opening the outside file -- proved with an audit hook on ``open``."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from genrefusion.data import Dataset, DatasetWriter, Title
from genrefusion.data.validate import validate_dataset
from genrefusion.errors import DatasetError

from .util import assert_cli_error, image_bytes, opened_files, run_cli

VOCAB = ["Comedy", "Drama"]


def _rec(tid, genres=("Drama",), plot="A plot about people.", poster=None, **kw):
    return {"id": tid, "genres": list(genres), "plot": plot, "poster": poster, **kw}


def _write(root: Path, lines, vocab=VOCAB) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "titles.jsonl", "wb") as fh:
        for ln in lines:
            if isinstance(ln, dict):
                ln = json.dumps(ln, ensure_ascii=False)
            fh.write(ln if isinstance(ln, bytes) else ln.encode("utf-8"))
            fh.write(b"\n")
    if vocab is not None:
        (root / "dataset.json").write_text(json.dumps({"name": root.name, "genres": vocab}))
    return root


# -- malformed lines ------------------------------------------------------------------------------------------
MALFORMED = [
    ("{this is not json", "malformed JSON"),
    ("[1, 2, 3]", "expected a JSON object"),
    ('{"genres": ["Drama"], "plot": "no id"}', "missing field 'id'"),
    ('{"id": "", "genres": ["Drama"]}', "missing field 'id'"),
    ('{"id": true, "genres": ["Drama"]}', "'id' must be a string"),
    ('{"id": "g5", "genres": 5}', "'genres' must be a list"),
    ('{"id": "g6", "genres": ["Drama", 7]}', "'genres' must be a list"),
    ('{"id": "p1", "genres": ["Drama"], "plot": 123}', "'plot' must be a string"),
    ('{"id": "p2", "genres": ["Drama"], "poster": ["a.jpg"]}', "'poster' must be a string"),
    ('{"id": "cut", "genres": ["Dra', "malformed JSON"),
    ('"just a string"', "expected a JSON object"),
]


@pytest.mark.parametrize("line,reason", MALFORMED, ids=[f"m{i}" for i in range(len(MALFORMED))])
def test_malformed_line_reported_with_number_rest_kept(tmp_path, line, reason, capsys):
    root = _write(tmp_path / "ds", [_rec("a"), _rec("b"), line, _rec("c")])
    ds = Dataset(root)
    assert [t.id for t in ds.titles()] == ["a", "b", "c"]
    assert [(p.id, p.kind) for p in ds.problems] == [("line 3", "bad-line")] and reason in ds.problems[0].message
    rep = validate_dataset(root)
    assert [(p.id, p.kind) for p in rep.problems] == [("line 3", "bad-line")], rep.problems
    assert reason in rep.problems[0].message and rep.usable_titles == 3
    rc, out, err = run_cli(["validate", root], capsys)
    assert rc == 0 and err.splitlines() == [f"line 3: bad-line: {rep.problems[0].message}"], err
    assert "usable: 3" in out


def test_many_bad_lines_each_numbered(tmp_path):
    lines = [_rec("ok0")] + [m for m, _ in MALFORMED] + [_rec("ok1")]
    rep = validate_dataset(_write(tmp_path / "ds", lines))
    assert [p.id for p in rep.problems] == [f"line {i}" for i in range(2, 2 + len(MALFORMED))]
    assert rep.usable_titles == 2


def test_blank_lines_and_crlf_are_not_problems(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    (root / "titles.jsonl").write_bytes(b"\r\n".join(json.dumps(_rec(t)).encode() for t in "xyz") + b"\r\n\n  \n")
    rep = validate_dataset(root)
    assert rep.problems == [] and rep.usable_titles == 3


# -- duplicates, genres, missing fields ---------------------------------------------------------------------
def test_duplicate_ids_every_copy_skipped_and_reported(tmp_path, capsys):
    root = _write(tmp_path / "ds", [_rec("dup"), _rec("ok"), _rec("dup", genres=["Comedy"]),
                                    {"id": 5, "genres": ["Drama"], "plot": "p"}, {"id": "5", "genres": ["Drama"],
                                                                                   "plot": "q"}])
    rep = validate_dataset(root)
    dups = [p for p in rep.problems if p.kind == "duplicate-id"]
    assert {p.id for p in dups} == {"dup", "5"}
    assert "line 1" in dups[0].message and "line 3" in dups[0].message
    assert not rep.usable("dup") and not rep.usable("5") and rep.usable("ok") and rep.usable_titles == 1
    with DatasetWriter(tmp_path / "out") as w:
        w.add(Title("x", ["Drama"], plot="p"))
        with pytest.raises(DatasetError, match="x: duplicate id"):
            w.add(Title("x", ["Comedy"], plot="q"))
    assert [t.id for t in Dataset(tmp_path / "out").titles()] == ["x"]


def test_unknown_genres_dropped_title_kept_unless_none_left(tmp_path):
    from genrefusion.data.corpus import load_corpus

    root = _write(tmp_path / "ds", [_rec("mixed", genres=["Drama", "Polka"]), _rec("only", genres=["Polka"]),
                                    _rec("ok", genres=["Comedy"])])
    rep = validate_dataset(root)
    unknown = {p.id: p.message for p in rep.problems if p.kind == "unknown-genre"}
    assert set(unknown) == {"mixed", "only"} and "'Polka'" in unknown["mixed"]
    assert rep.usable("mixed") and not rep.usable("only")
    corpus = load_corpus([Dataset(root)], genres=VOCAB)
    assert [t.id for t in corpus.titles] == ["mixed", "ok"] and corpus.genres == VOCAB
    assert corpus.Y.tolist() == [[0, 1], [1, 0]]


@pytest.mark.parametrize("rec,kind", [
    ({"id": "nog", "plot": "p"}, "no-genre"),
    ({"id": "emptyg", "genres": [], "plot": "p"}, "no-genre"),
    ({"id": "noin", "genres": ["Drama"]}, "no-input"),
    ({"id": "nulls", "genres": ["Drama"], "plot": None, "poster": None}, "no-input"),
    ({"id": "miss", "genres": ["Drama"], "poster": "posters/nope.jpg"}, "missing-poster"),
])
def test_missing_fields_skip_the_title(tmp_path, rec, kind):
    rep = validate_dataset(_write(tmp_path / "ds", [rec, _rec("ok")]))
    assert [(p.id, p.kind) for p in rep.problems] == [(rec["id"], kind)]
    assert not rep.usable(rec["id"]) and rep.usable_titles == 1


# -- unusable folders: one error line, nothing written ---------------------------------------------------------
def _folder_cases(tmp_path):
    nojsonl = tmp_path / "nojsonl"
    nojsonl.mkdir()
    badmeta = _write(tmp_path / "badmeta", [_rec("a")], vocab=None)
    (badmeta / "dataset.json").write_text("{not json")
    listmeta = _write(tmp_path / "listmeta", [_rec("a")], vocab=None)
    (listmeta / "dataset.json").write_text("[1, 2]")
    badgenres = _write(tmp_path / "badgenres", [_rec("a")], vocab=None)
    (badgenres / "dataset.json").write_text('{"genres": "Drama"}')
    dirjsonl = tmp_path / "dirjsonl"
    (dirjsonl / "titles.jsonl").mkdir(parents=True)
    afile = tmp_path / "afile.txt"
    afile.write_text("x")
    allbad = _write(tmp_path / "allbad", ["{bad", "[]"])
    return {
        "missing": (tmp_path / "nope", "not found"), "nojsonl": (nojsonl, "no titles.jsonl"),
        "badmeta": (badmeta, "not valid JSON"), "listmeta": (listmeta, "expected a JSON object"),
        "badgenres": (badgenres, "list of strings"), "dirjsonl": (dirjsonl, "no titles.jsonl"),
        "afile": (afile, "not a folder"), "allbad": (allbad, "no usable title"),
    }


@pytest.mark.parametrize("case", ["missing", "nojsonl", "badmeta", "listmeta", "badgenres", "dirjsonl", "afile",
                                  "allbad"])
def test_unusable_folder_validate_cli(tmp_path, case, capsys):
    path, needle = _folder_cases(tmp_path)[case]
    assert_cli_error(["validate", path], capsys, needle)


@pytest.mark.parametrize("case", ["missing", "nojsonl", "badmeta", "afile", "allbad"])
def test_unusable_folder_train_cli_writes_nothing(tmp_path, case, capsys):
    path, needle = _folder_cases(tmp_path)[case]
    out = tmp_path / "run"
    assert_cli_error(["train", path, "--out", out, "--no-progress", "--device", "cpu"], capsys, needle)
    assert not out.exists()


# -- paths escaping the dataset folder ----------------------------------------------------------------------
@pytest.fixture
def escaping(tmp_path):
    """A dataset whose posters try every way out, beside an outside folder holding real (openable) JPEGs."""
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    secret = outside / "secret.jpg"
    secret.write_bytes(image_bytes())
    (outside / "dir" / "x.jpg").write_bytes(image_bytes())
    root = tmp_path / "data" / "ds"
    (root / "posters").mkdir(parents=True)
    (root / "posters" / "good.jpg").write_bytes(image_bytes())
    os.symlink(secret, root / "posters" / "link_out.jpg")
    os.symlink(outside / "dir", root / "posters" / "linkdir")
    os.symlink("../../../outside/secret.jpg", root / "posters" / "rel_link.jpg")
    os.symlink(root / "posters" / "good.jpg", root / "posters" / "link_in.jpg")  # staying inside is fine
    unsafe = {
        "dotdot": "../../outside/secret.jpg",
        "inner_dotdot": "posters/../../../outside/secret.jpg",
        "absolute": str(secret),
        "home": "~/secret.jpg",
        "backslash": "..\\..\\outside\\secret.jpg",
        "link_out": "posters/link_out.jpg",
        "rel_link": "posters/rel_link.jpg",
        "link_dir": "posters/linkdir/x.jpg",
    }
    recs = [_rec("good", poster="posters/good.jpg"), _rec("link_in", poster="posters/link_in.jpg")]
    recs += [_rec(k, poster=v) for k, v in unsafe.items()]
    _write(root, recs)
    return root, outside, unsafe


def _outside_opened(seen, outside: Path):
    out = os.path.realpath(outside)
    return [p for p in seen if p == out or p.startswith(out + os.sep)]


def test_validate_refuses_escapes_and_opens_nothing_outside(escaping, capsys):
    root, outside, unsafe = escaping
    with opened_files() as seen:
        rep = validate_dataset(root, workers=1)
        rc, _, err = run_cli(["validate", root, "--workers", "1"], capsys)
    assert _outside_opened(seen, outside) == []
    assert os.path.realpath(root / "posters" / "good.jpg") in seen  # the hook does see poster opens
    kinds = {p.id: p.kind for p in rep.problems}
    assert kinds == {k: "unsafe-path" for k in unsafe}, rep.problems
    assert rep.poster_ok(Dataset(root).titles()[1])  # link_in stays inside: fine
    assert rc == 0 and all(f"{k}: unsafe-path:" in err for k in unsafe), err


def test_loader_and_training_corpus_refuse_escapes(escaping):
    from genrefusion.data.corpus import load_corpus

    root, outside, unsafe = escaping
    ds = Dataset(root)
    with opened_files() as seen:
        for t in ds.titles():
            if t.id in unsafe:
                with pytest.raises(DatasetError) as err:
                    ds.load_poster(t)
                assert t.id in str(err.value) and "\n" not in str(err.value)
            else:
                assert ds.load_poster(t).size == (40, 60)
        corpus = load_corpus([Dataset(root)], genres=VOCAB)
    assert _outside_opened(seen, outside) == []
    posters = dict(zip((t.id for t in corpus.titles), corpus.posters))
    assert all(posters[k] is None for k in unsafe) and posters["good"] is not None


def test_predict_batch_refuses_escapes(escaping, tiny_run, tmp_path, capsys):
    root, outside, unsafe = escaping
    out = tmp_path / "pred.jsonl"
    with opened_files() as seen:
        rc, stdout, err = run_cli(["predict", tiny_run, "--batch", root, "--out", out, "--no-progress"], capsys)
    assert rc == 0, err
    assert _outside_opened(seen, outside) == []
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    for k in unsafe:
        assert rows[k]["error"] and rows[k]["genres"] is None, rows[k]
    assert rows["good"]["error"] is None and rows["good"]["used"] == ["poster", "plot"]


def test_import_jsonl_refuses_escapes(escaping, tmp_path, capsys):
    root, outside, unsafe = escaping
    src = tmp_path / "src"
    (src / "img").mkdir(parents=True)
    (src / "img" / "good.jpg").write_bytes(image_bytes())
    os.symlink(outside / "secret.jpg", src / "img" / "link.jpg")
    recs = [{"id": "good", "genres": "Drama", "plot": "p", "poster": "good.jpg"},
            {"id": "dotdot", "genres": "Drama", "plot": "p", "poster": "../../outside/secret.jpg"},
            {"id": "link", "genres": "Drama", "plot": "p", "poster": "link.jpg"}]
    (src / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    dest = tmp_path / "imported"
    with opened_files() as seen:
        rc, stdout, err = run_cli(["import", "jsonl", src / "in.jsonl", "--images", src / "img", "--out", dest,
                                   "--workers", "1"], capsys)
    assert rc == 0, err
    assert _outside_opened(seen, outside) == []
    got = {t.id: t.poster for t in Dataset(dest).titles()}
    assert got["good"] and got["dotdot"] is None and got["link"] is None
    assert "unsafe-path" in stdout + err
