"""Validation: one test per rule, the Python API used by training, the CLI contract, shipped counts."""
from __future__ import annotations

import json
import os
import re

import pytest

from genrefusion.cli import main
from genrefusion.data import Dataset
from genrefusion.data.validate import validate_dataset

VOCAB = ["Action", "Comedy", "Drama"]
PLOT = "A plot."


def _rec(tid, genres=("Drama",), plot=PLOT, poster=None):
    return {"id": tid, "imdb_id": None, "title": tid, "year": 2000, "kind": "movie", "genres": list(genres),
            "plot": plot, "poster": poster, "source": "test"}


@pytest.fixture
def broken(tmp_path, make_jpeg, write_raw_dataset):
    """A dataset with one title per rule (plus good ones), and the expected (id, kind) problems."""
    root = tmp_path / "broken"
    p = root / "posters"
    make_jpeg(p / "good.jpg")
    good = (p / "good.jpg").read_bytes()
    (p / "corrupt.jpg").write_bytes(good[:-len(good) // 3])           # truncated JPEG
    (p / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(200))  # JPEG magic, junk body
    (p / "zero.jpg").write_bytes(b"")
    (p / "text.jpg").write_text("not an image at all\n", encoding="utf-8")
    outside = tmp_path / "outside.jpg"
    make_jpeg(outside)
    os.symlink(outside, p / "link_out.jpg")
    os.symlink(p / "good.jpg", p / "link_in.jpg")  # a symlink staying inside is fine
    records = [
        _rec("ok1", poster="posters/good.jpg"),
        _rec("ok2", genres=("Action", "Comedy"), poster="posters/link_in.jpg"),
        _rec("ok3", plot=None, poster="posters/good.jpg"),
        _rec("corrupt", poster="posters/corrupt.jpg"),
        _rec("garbage", poster="posters/garbage.jpg"),
        _rec("zero", poster="posters/zero.jpg", plot=None),
        _rec("text", poster="posters/text.jpg"),
        _rec("missing", poster="posters/nope.jpg"),
        _rec("escape", poster="../../etc/passwd"),
        _rec("absolute", poster="/etc/passwd"),
        _rec("symlink", poster="posters/link_out.jpg"),
        _rec("dup"), _rec("dup", genres=("Comedy",)),
        _rec("emptyplot", plot="   \n", poster="posters/good.jpg"),
        _rec("ctrlplot", plot="bad \x00 bytes"),
        _rec("unknown", genres=("Drama", "Polka")),
        _rec("allunknown", genres=("Polka",)),
        _rec("nogenre", genres=()),
        _rec("noinput", plot=None),
    ]
    lines = ["{this is not json\n",
             b'{"id": "latin", "genres": ["Drama"], "plot": "caf\xe9 ol\xe9", "poster": null}\n',
             '{"genres": ["Drama"], "plot": "no id"}\n',
             "[1, 2, 3]\n"]
    write_raw_dataset(root, records, genres=VOCAB, name="broken", lines=lines)
    n = len(records)
    expected = {
        ("corrupt", "bad-poster"), ("garbage", "bad-poster"), ("zero", "bad-poster"), ("text", "bad-poster"),
        ("missing", "missing-poster"), ("escape", "unsafe-path"), ("absolute", "unsafe-path"),
        ("symlink", "unsafe-path"), ("dup", "duplicate-id"), ("emptyplot", "empty-plot"),
        ("ctrlplot", "bad-plot"), ("latin", "bad-plot"), ("unknown", "unknown-genre"),
        ("allunknown", "unknown-genre"), ("nogenre", "no-genre"), ("noinput", "no-input"),
        (f"line {n + 1}", "bad-line"), (f"line {n + 3}", "bad-line"), (f"line {n + 4}", "bad-line"),
    }
    return root, expected


def test_every_rule_reported_by_id(broken):
    root, expected = broken
    rep = validate_dataset(Dataset(root), workers=1)
    assert {(p.id, p.kind) for p in rep.problems} == expected
    assert len(rep.problems) == len(expected)  # one problem each, nothing reported twice
    msgs = {p.id: p.message for p in rep.problems}
    assert "empty file" in msgs["zero"] and "not an image" in msgs["text"]
    assert "corrupt or truncated" in msgs["corrupt"] and "not opened" in msgs["escape"]
    assert "not valid UTF-8" in msgs["latin"] and "U+0000" in msgs["ctrlplot"]
    assert "Polka" in msgs["unknown"]


def test_usable_and_field_verdicts(broken):
    root, _ = broken
    ds = Dataset(root)
    rep = validate_dataset(ds, workers=1)
    # zero: bad poster and no plot; latin/ctrlplot: bad plot and no poster
    skipped = {"dup", "allunknown", "nogenre", "noinput", "zero", "latin", "ctrlplot"}
    assert rep.skipped == skipped
    by_id = {t.id: t for t in ds.titles()}
    assert rep.usable(by_id["ok1"]) and rep.poster_ok(by_id["ok1"]) and rep.plot_ok(by_id["ok1"])
    assert rep.usable("corrupt") and not rep.poster_ok(by_id["corrupt"]) and rep.plot_ok(by_id["corrupt"])
    assert rep.usable("emptyplot") and rep.poster_ok(by_id["emptyplot"]) and not rep.plot_ok(by_id["emptyplot"])
    assert rep.usable("unknown")  # Drama is still a known label
    assert not rep.usable("dup")
    # counts are over the distinct records read; posters/plots count only when usable
    # 20 records (dup twice); skipped: 7 ids, 8 records
    assert rep.titles == 20 and rep.with_poster == 4 and rep.usable_titles == 12
    assert rep.per_genre["Action"] == 1 and "Polka" not in rep.per_genre


def test_no_decode_still_catches_header_problems(broken):
    root, expected = broken
    rep = validate_dataset(Dataset(root), decode=False)
    kinds = {(p.id, p.kind) for p in rep.problems}
    # without a full decode a broken JPEG body may pass; everything else is still found
    assert expected - {("corrupt", "bad-poster"), ("garbage", "bad-poster")} <= kinds <= expected
    assert not rep.decoded


def test_process_pool_gives_same_result(tmp_path, tiny_dataset, make_jpeg):
    root = tiny_dataset(n=150)
    (root / "posters" / "tiny-0007.jpg").write_bytes(b"GIF89a broken")
    (root / "posters" / "tiny-0100.jpg").write_bytes(b"")
    serial = validate_dataset(Dataset(root), workers=1)
    pooled = validate_dataset(Dataset(root), workers=2)
    assert [str(p) for p in serial.problems] == [str(p) for p in pooled.problems]
    assert {p.id for p in pooled.problems} == {"tiny-0007", "tiny-0100"}


def test_cli_exit_codes_and_one_line_per_problem(broken, tmp_path, capsys):
    root, expected = broken
    assert main(["validate", str(root)]) == 0
    cap = capsys.readouterr()
    err_lines = [ln for ln in cap.err.splitlines() if ln.strip()]
    assert len(err_lines) == len(expected) and "Traceback" not in cap.err
    for pid, kind in expected:
        assert sum(ln.startswith(f"{pid}: {kind}:") for ln in err_lines) == 1, (pid, kind)
    assert "titles: 20" in cap.out

    report = tmp_path / "rep.json"
    assert main(["validate", str(root), "--strict", "--json", str(report)]) == 1
    data = json.loads(report.read_text())
    assert len(data["problems"]) == len(expected) and data["counts"]["titles"] == 20
    assert sorted(data["skipped"]) == ["allunknown", "ctrlplot", "dup", "latin", "nogenre", "noinput", "zero"]


def test_cli_json_naming_a_folder_is_refused_before_validating(tiny_dataset, tmp_path, capsys):
    root = tiny_dataset(n=4)
    assert main(["validate", str(root), "--json", str(tmp_path)]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""  # the whole check ran (every poster decoded) before the write failed
    assert cap.err.strip().splitlines() == [f"error: --json {tmp_path}: is a folder; name a file "
                                            f"(e.g. {tmp_path / 'report.json'})"]


def test_cli_bad_line_names_its_line_once(tmp_path, capsys, write_raw_dataset):
    lines = ['{"genres": ["Drama"], "plot": "no id"}\n', '{"id": "x", "genres": 5, "plot": "p"}\n']
    root = write_raw_dataset(tmp_path / "d", [_rec("ok")], genres=VOCAB, lines=lines)
    assert main(["validate", str(root)]) == 0
    assert capsys.readouterr().err.splitlines() == [  # was "line 2: bad-line: line 2: missing field 'id'"
        "line 2: bad-line: missing field 'id'", "line 3: bad-line: id=x: field 'genres' must be a list of strings"]


def test_dataset_bad_line_names_its_line_once(tmp_path, write_raw_dataset):
    # Dataset.problems (what collect imdb-tsv reports) as validate shows them since d92df90
    root = write_raw_dataset(tmp_path / "d", [_rec("ok")], genres=VOCAB, lines=['{"genres": ["Drama"]}\n'])
    ds = Dataset(root)
    assert [t.id for t in ds.titles()] == ["ok"]
    # was "line 2: bad-line: titles.jsonl line 2: missing field 'id'"
    assert [str(p) for p in ds.problems] == ["line 2: bad-line: missing field 'id'"]


def test_cli_clean_dataset_strict_exit_0(tiny_dataset, capsys):
    root = tiny_dataset(n=12, posters=0.5)
    assert main(["validate", str(root), "--strict"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("setup", ["missing", "file", "no_titles", "bad_meta", "nothing_usable"])
def test_cli_unusable_folder_exit_2(tmp_path, capsys, setup, write_raw_dataset):
    root = tmp_path / "d"
    if setup == "file":
        root.write_text("x")
    elif setup == "no_titles":
        root.mkdir()
    elif setup == "bad_meta":
        write_raw_dataset(root, [_rec("a")])
        (root / "dataset.json").write_text("{nope")
    elif setup == "nothing_usable":
        write_raw_dataset(root, [_rec("a", genres=()), _rec("b", plot=None)], lines=["garbage\n"])
    assert main(["validate", str(root)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: ")
    if setup != "nothing_usable":
        assert len(err.strip().splitlines()) == 1


def test_validation_never_opens_escaping_paths(tmp_path, write_raw_dataset, monkeypatch):
    import genrefusion.data.validate as v

    opened = []
    real = v.load_image
    monkeypatch.setattr(v, "load_image", lambda p, **kw: opened.append(str(p)) or real(p, **kw))
    root = write_raw_dataset(tmp_path / "d", [_rec("a", poster="../../etc/passwd"), _rec("b", poster="/etc/hostname")])
    rep = validate_dataset(Dataset(root), workers=1)
    assert {p.kind for p in rep.problems} == {"unsafe-path"} and opened == []


# -- shipped datasets: counts match their README ----------------------------------------------
def _readme_counts(readme: str) -> dict:
    def num(label):
        return int(re.search(rf"^- {label}: (\d+)", readme, re.M).group(1))

    genres = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\| ([A-Z][\w-]+) \| (\d+) \|", readme, re.M)}
    return {"titles": num("titles"), "with_poster": num("with poster"), "with_plot": num("with plot"), "genres": genres}


def _check_shipped(root, decode):
    rep = validate_dataset(Dataset(root), decode=decode)
    want = _readme_counts((root / "README.md").read_text(encoding="utf-8"))
    assert (rep.titles, rep.with_poster, rep.with_plot) == (want["titles"], want["with_poster"], want["with_plot"])
    assert rep.problems == []
    assert {g: n for g, n in rep.per_genre.items() if n} == want["genres"]
    return rep


@pytest.mark.parametrize("name", ["cornell_tmdb", "imdb_top250"])
def test_shipped_counts_match_readme(shipped, name):
    _check_shipped(shipped / name, decode=True)


def test_shipped_poster_genres_av_counts_header_check(shipped):
    _check_shipped(shipped / "poster_genres_av", decode=False)


@pytest.mark.slow
def test_shipped_poster_genres_av_full_decode(shipped, capsys):
    assert main(["validate", str(shipped / "poster_genres_av"), "--strict"]) == 0
    out = capsys.readouterr().out
    assert "titles: 7189  with poster: 7189  with plot: 0" in out


def test_a_bom_from_an_editor_loses_no_title(tiny_dataset):
    # a titles.jsonl (and dataset.json) saved by an editor that writes a UTF-8 BOM: line 1 is still a title
    ds_root = tiny_dataset()
    for name in ("titles.jsonl", "dataset.json"):
        p = ds_root / name
        p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())
    ds = Dataset(ds_root)
    assert len(ds.titles()) == 24 and ds.problems == [] and ds.labelled_genres


def test_training_and_evaluation_data_say_what_validation_found(broken, caplog):
    # load_corpus (what train and evaluate read) skips and downgrades the same items `validate` lists: said in one
    # warning line, and counted per record (both copies of a duplicated id are skipped)
    import logging

    from genrefusion.data.corpus import load_corpus

    root, expected = broken
    ds = Dataset(root)
    with caplog.at_level(logging.WARNING, logger="genrefusion.data"):
        corpus = load_corpus([ds], genres=VOCAB)
    lines = [r.getMessage() for r in caplog.records if r.name == "genrefusion.data"]
    assert len(lines) == 1 and f"{len(expected)} problem(s)" in lines[0] and "genrefusion validate" in lines[0]
    info = corpus.data_info[0]
    assert info["titles"] == info["used"] + info["skipped"] and info["problems_by_kind"]["bad-poster"] == 4
    assert "dup" not in {t.id for t in corpus.titles}
