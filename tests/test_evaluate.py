"""`genrefusion evaluate RUN --data DIR --part P`: only part P of the dataset's own split.json."""
from __future__ import annotations

import json

import pytest

from genrefusion.cli import main as cli

from conftest import copy_shipped_titles


@pytest.fixture
def other(shipped, tmp_path):
    """12 shipped titles the run did not train on, with an MM-IMDb-style split.json (4 test, 3 dev, 5 train)."""
    ds = copy_shipped_titles(shipped / "imdb_top250", tmp_path / "imdb_top250", 12)
    ids = [json.loads(line)["id"] for line in (ds / "titles.jsonl").read_text(encoding="utf-8").splitlines()]
    (ds / "split.json").write_text(json.dumps({"train": ids[7:], "dev": ids[4:7], "test": ids[:4]}))
    return ds


def test_part_scores_only_that_part_of_the_datasets_own_split(tiny_run, tiny_run_cache, other, tmp_path,
                                                              monkeypatch, capsys):
    monkeypatch.setenv("GENREFUSION_CACHE", str(tiny_run_cache))
    out = tmp_path / "ev.json"
    # --split all: no title left out as seen by the run, so the counts are the split's
    assert cli(["evaluate", str(tiny_run), "--data", str(other), "--part", "test", "--split", "all", "--out",
                str(out), "--no-progress"]) == 0
    ev = json.loads(out.read_text())
    assert ev["part"] == "test"
    assert ev["evaluated_on"] == "imdb_top250 (test part of its split.json)" and ev["n_titles"] == 4
    assert f"evaluated on {ev['evaluated_on']}: 4 titles" in capsys.readouterr().out
    # default: every title, as before
    assert cli(["evaluate", str(tiny_run), "--data", str(other), "--split", "all", "--out", str(out),
                "--no-progress"]) == 0
    assert json.loads(out.read_text())["part"] == "all" and json.loads(out.read_text())["n_titles"] == 12


def _error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error")]
    assert len(lines) == 1, err
    return lines[0]


def test_part_errors_name_the_dataset(tiny_run, tiny_run_cache, other, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GENREFUSION_CACHE", str(tiny_run_cache))
    split = json.loads((other / "split.json").read_text())
    (other / "split.json").write_text(json.dumps({"train": split["train"], "test": split["test"]}))
    assert cli(["evaluate", str(tiny_run), "--data", str(other), "--part", "dev", "--no-progress"]) == 2
    assert "imdb_top250" in (e := _error(capsys)) and "no title in the dev part" in e
    (other / "split.json").unlink()
    assert cli(["evaluate", str(tiny_run), "--data", str(other), "--part", "test", "--no-progress"]) == 2
    assert "imdb_top250: no split.json" in _error(capsys)
    assert cli(["evaluate", str(tiny_run), "--part", "test", "--no-progress"]) == 2
    assert "--part goes with --data" in _error(capsys)


def test_genres_unknown_to_the_model_are_counted_on_the_evaluated_titles(tiny_run, tiny_run_cache, other, tmp_path,
                                                                         monkeypatch, capsys):
    """A label the model cannot predict (Game-Show, as an IMDb page lists it) is ignored in every figure; the output
    says how many evaluated titles carried it, not only that the dataset labels it."""
    monkeypatch.setenv("GENREFUSION_CACHE", str(tiny_run_cache))
    meta = json.loads((other / "dataset.json").read_text())
    meta["genres"] += ["Game-Show", "Talk-Show"]
    (other / "dataset.json").write_text(json.dumps(meta))
    lines = (other / "titles.jsonl").read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    first["genres"] = first["genres"] + ["Game-Show"]
    (other / "titles.jsonl").write_text("\n".join([json.dumps(first)] + lines[1:]) + "\n", encoding="utf-8")
    out = tmp_path / "ev.json"
    assert cli(["evaluate", str(tiny_run), "--data", str(other), "--split", "all", "--out", str(out),
                "--no-progress"]) == 0
    ev = json.loads(out.read_text())
    assert "Game-Show" not in ev["genres"] and "Talk-Show" not in ev["genres"]
    counted = ev["unknown_genre_titles"]["imdb_top250"]
    assert counted["Game-Show"] == 1 and not set(counted) & set(ev["genres"])
    printed = capsys.readouterr().out
    by = ", ".join(f"{c} {n}" for c, n in ev["n_by_combination"].items())
    assert f"titles by inputs: {by}; by kind: movie 12" in printed  # the counts the F1 <part> columns rest on
    said = [ln for ln in printed.splitlines() if "unknown to the model" in ln]
    assert len(said) == 1 and "Game-Show (1 title) among the evaluated titles" in said[0]
    assert "Talk-Show (on no evaluated title)" in said[0]


def test_a_dataset_the_run_trained_on_says_so_instead_of_no_usable_title(tiny_run, tiny_run_data, tiny_run_cache,
                                                                         tmp_path, monkeypatch, capsys):
    from genrefusion.data.split import Split

    monkeypatch.setenv("GENREFUSION_CACHE", str(tiny_run_cache))
    src = tiny_run_data[0]
    split = Split.load(tiny_run / "split.json")
    seen = [ln for ln in (src / "titles.jsonl").read_text(encoding="utf-8").splitlines()
            if split.part_of(src.name, json.loads(ln)["id"]) == "train"][:3]
    ds = tmp_path / "mine"
    ds.mkdir()
    (ds / "dataset.json").write_text((src / "dataset.json").read_text())
    (ds / "titles.jsonl").write_text("\n".join(json.dumps({**json.loads(ln), "poster": None}) for ln in seen) + "\n",
                                     encoding="utf-8")
    assert cli(["evaluate", str(tiny_run), "--data", str(ds), "--no-progress"]) == 2
    e = _error(capsys)
    assert "all 3 usable titles of cornell_tmdb were in the run's train/dev parts" in e and "--split all" in e
    assert "no usable title" not in e


def test_out_that_is_a_folder_is_refused_before_evaluating(tiny_run, tmp_path, monkeypatch, capsys):
    import genrefusion.evaluate as E

    def must_not_run(*a, **kw):
        raise AssertionError("evaluated before --out was checked")

    monkeypatch.setattr(E, "evaluate_run", must_not_run)
    assert cli(["evaluate", str(tiny_run), "--out", str(tmp_path), "--no-progress"]) == 2
    assert f"--out {tmp_path}: is a folder" in _error(capsys)


def test_unusable_titles_are_counted_in_evaluated_on(tiny_run, tiny_run_cache, other, tmp_path, monkeypatch, capsys):
    """A title with neither a usable poster nor a plot is in no figure; the line saying what was evaluated counts it
    (it was only in a log line, gone with -qq, and absent from --out)."""
    monkeypatch.setenv("GENREFUSION_CACHE", str(tiny_run_cache))
    with open(other / "titles.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "tt7700002", "imdb_id": "tt7700002", "title": "No input", "year": 1999,
                             "kind": "movie", "genres": ["Drama"], "plot": None, "poster": None}) + "\n")
    out = tmp_path / "ev.json"
    assert cli(["evaluate", str(tiny_run), "--data", str(other), "--split", "all", "--out", str(out),
                "--no-progress"]) == 0
    ev = json.loads(out.read_text())
    assert ev["n_titles"] == 12
    assert ev["evaluated_on"] == "imdb_top250 (minus 1 unusable title: `genrefusion validate` lists it)"
    assert f"evaluated on {ev['evaluated_on']}: 12 titles" in capsys.readouterr().out
