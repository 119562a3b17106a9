"""End-to-end through the CLI on a few shipped titles: train with text.encoder=auto (the paper's LSTM
route and MiniLM, chosen on dev), evaluate on another dataset without retraining, report, resume."""
from __future__ import annotations

import json

import pytest

from genrefusion.cli import main as cli

from conftest import copy_shipped_titles

TINY = ["--set", "text.encoder=auto", "--set", "data.min_genre_count=2", "--set", "data.dev=0.2",
        "--set", "train.epochs=3", "--set", "train.fused_epochs=2", "--set", "train.hidden=[32,16]",
        "--set", "text.lstm.hidden=32", "--set", "text.lstm.max_len=40", "--set", "text.lstm.lm_epochs=1",
        "--set", "text.lstm.unfreeze_epochs=[1,1,1]", "--set", "image.num_workers=0"]


@pytest.mark.slow
def test_cli_train_evaluate_report(tiny_run_data, tiny_run_cache, shipped, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GENREFUSION_CACHE", str(tiny_run_cache))
    run = tmp_path / "run"
    # a stray file among the dataset folders (as `datasets/*` also matches README.md) is skipped
    stray = tmp_path / "README.md"
    stray.write_text("not a dataset")
    assert cli(["train", *map(str, tiny_run_data), str(stray), "--out", str(run), "--no-progress", *TINY]) == 0
    out = capsys.readouterr()
    assert "skipping" in out.err and "report: " in out.out
    for row in ("fused", "poster", "plot (MiniLM)", "plot (LSTM)", "TF-IDF + logreg", "always negative"):
        assert row in out.out, row
    m = json.loads((run / "metrics.json").read_text())
    assert set(m["plot_candidates"]) == {"minilm", "lstm"} and m["text_route"] in ("minilm", "lstm")
    assert m["text_route"] == max(m["plot_candidates"], key=m["plot_candidates"].get)  # chosen on dev
    assert {"lm", "plot_lstm_1", "plot_lstm_2", "plot_lstm_3"} <= set(m["training"])

    # re-running into the finished run: refused without --resume, just reports with it
    assert cli(["train", *map(str, tiny_run_data), "--out", str(run), "--no-progress", *TINY]) != 0
    assert "--resume" in capsys.readouterr().err
    assert cli(["train", *map(str, tiny_run_data), "--out", str(run), "--no-progress", "--resume", *TINY]) == 0
    assert "already finished" in capsys.readouterr().err

    # another canonical dataset, other genre vocabulary, no retraining
    other = copy_shipped_titles(shipped / "imdb_top250", tmp_path / "imdb_top250", 12)
    assert cli(["evaluate", str(run), "--data", str(other), "--out", str(tmp_path / "ev.json"),
                "--no-progress"]) == 0
    ev = json.loads((tmp_path / "ev.json").read_text())
    # titles of the other dataset that the run trained on (same imdb_id as a cornell_tmdb title) are left out
    import re

    minus = re.search(r"minus (\d+) titles seen", ev["evaluated_on"])
    assert ev["n_titles"] + (int(minus.group(1)) if minus else 0) == 12 and ev["n_titles"] > 0
    assert ev["models"]["fused"]["micro_f1"] is not None
    assert "imdb_top250" in ev["left_out"]
    assert cli(["evaluate", str(run), "--split", "dev", "--no-progress"]) == 0
    assert "dev split of the run" in capsys.readouterr().out
    assert cli(["report", str(run)]) == 0
    assert cli(["evaluate", str(tmp_path / "nope")]) != 0


@pytest.mark.parametrize("source,stage,fix", [("poster_genres_av", "plot_minilm", "--models poster"),
                                              ("netflix_tv", "poster", "--models plot")])
def test_data_with_one_input_only_is_told_which_models_it_can_train(source, stage, fix, tiny_run_data, shipped,
                                                                    tiny_run_cache, tmp_path, monkeypatch, capsys):
    # poster-only or plot-only data: the stage of the missing input cannot train; the error says what can
    monkeypatch.setenv("GENREFUSION_CACHE", str(tiny_run_cache))
    data = copy_shipped_titles(shipped / source, tmp_path / source, 40)
    args = ["train", str(data), "--out", str(tmp_path / "run"), "--no-progress", "--set", "train.crossfit=0",
            *TINY[2:]]  # TINY minus text.encoder=auto: one text route
    assert cli(args) != 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert len(err) == 1 and f"stage {stage}" in err[0] and fix in err[0], err
    args[3] = str(tmp_path / "run2")  # and the fix works (a run resumes only with its own --models)
    assert cli([*args, "--models", fix.split()[1]]) == 0


def test_train_uses_the_datasets_own_split(tiny_run_cache, shipped, tmp_path, monkeypatch, capsys):
    # an MM-IMDb-style split.json beside the titles (as `import mmimdb` keeps it) is the run's split, not a new one
    monkeypatch.setenv("GENREFUSION_CACHE", str(tiny_run_cache))
    data = copy_shipped_titles(shipped / "imdb_top250", tmp_path / "imdb_top250", 40)
    ids = [json.loads(ln)["id"] for ln in (data / "titles.jsonl").read_text().splitlines()]
    (data / "split.json").write_text(json.dumps({"train": ids[:28], "dev": ids[28:34], "test": ids[34:]}))
    args = ["train", str(data), "--no-progress", "--set", "train.crossfit=0", "--models", "plot", *TINY[2:]]
    assert cli([*args, "--out", str(tmp_path / "run")]) == 0
    run_split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert run_split["parts"]["test"] == ids[34:] and run_split["source"] == str(data / "split.json")
    assert run_split["dev"] is None and run_split["test"] is None  # were the id lists: no fractions
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["split"]["from"] == str(data / "split.json") and m["split"]["test"] == 6
    capsys.readouterr()
    # --split new: a fresh stratified split
    assert cli([*args, "--out", str(tmp_path / "run2"), "--split", "new"]) == 0
    assert json.loads((tmp_path / "run2" / "split.json").read_text())["parts"]["test"] != ids[34:]


@pytest.mark.parametrize("empty", ["dev", "test"])
def test_train_refuses_an_imported_split_with_an_empty_part(empty, shipped, tmp_path, capsys):
    # was: no dev titles -> "change data.dev" (no such choice for an imported split); no test titles -> a traceback
    data = copy_shipped_titles(shipped / "imdb_top250", tmp_path / "imdb_top250", 20)
    ids = [json.loads(ln)["id"] for ln in (data / "titles.jsonl").read_text().splitlines()]
    (data / "split.json").write_text(json.dumps({"train": ids[:16], "dev": ids[16:], "test": ids[16:]} | {empty: []}))
    assert cli(["train", str(data), "--out", str(tmp_path / "run"), "--no-progress", "--models", "plot"]) != 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert err == [f"error: {data / 'split.json'}: places no usable title of imdb_top250 in its {empty} part (a "
                   "usable title has a poster or a plot and a genre the model learns); train --split new makes a "
                   "stratified split"]


def test_train_names_a_prepared_split_in_the_run_folder_that_leaves_a_part_empty(shipped, tmp_path, capsys):
    # a leave-one-dataset-out run (benchmarks/generalisation.py) writes RUN/split.json before training; a held-out
    # set with no usable title was told to "change data.dev / data.test", which that split does not read
    from genrefusion.data.split import Split

    data = copy_shipped_titles(shipped / "imdb_top250", tmp_path / "imdb_top250", 20)
    ids = [json.loads(ln)["id"] for ln in (data / "titles.jsonl").read_text().splitlines()]
    run = tmp_path / "run"
    run.mkdir()
    Split(seed=0, dev=0.1, test=None, datasets=["imdb_top250"],
          parts={"train": ids[:16], "dev": ids[16:], "test": []}).save(run / "split.json")
    assert cli(["train", str(data), "--out", str(run), "--no-progress", "--models", "plot", "--resume"]) != 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert err == [f"error: {run / 'split.json'}: places no usable title of imdb_top250 in its test part (a usable "
                   "title has a poster or a plot and a genre the model learns); delete it to make a stratified split"]
