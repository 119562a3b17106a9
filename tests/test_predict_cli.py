"""`genrefusion predict`: one title (JSON on stdout) and batches (streaming, per-title errors, shards + merge)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from genrefusion.cli import main


@pytest.fixture(scope="module")
def clf(tiny_run):
    from genrefusion.predict import GenreClassifier

    return GenreClassifier.load(tiny_run)


def _shipped_title(shipped, k=0):
    ds = shipped / "imdb_top250"
    rec = json.loads((ds / "titles.jsonl").read_text(encoding="utf-8").splitlines()[k])
    return ds / rec["poster"], rec["plot"]


def test_single_title_json(tiny_run, shipped, clf, capsys):
    poster, plot = _shipped_title(shipped)
    assert main(["predict", str(tiny_run), "--poster", str(poster), "--plot", plot]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"genres", "scores", "thresholds", "used", "threshold_set"}
    assert out["used"] == ["poster", "plot"]
    assert out == clf.predict_one(poster=poster, plot=plot)
    assert set(out["scores"]) == set(clf.genres_)
    order = [out["scores"][g] for g in out["genres"]]
    assert order == sorted(order, reverse=True)  # most probable first
    assert all(out["scores"][g] >= out["thresholds"][g] for g in out["genres"])


def test_single_title_overrides_and_plot_file(tiny_run, shipped, clf, tmp_path, capsys):
    _, plot = _shipped_title(shipped, 3)
    f = tmp_path / "plot.txt"
    f.write_text(plot, encoding="utf-8")
    assert main(["predict", str(tiny_run), "--plot-file", str(f), "--top-k", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["used"] == ["plot"] and len(out["genres"]) == 3
    assert out["genres"] == sorted(out["scores"], key=lambda g: -out["scores"][g])[:3]
    assert main(["predict", str(tiny_run), "--plot", plot, "--threshold", "0"]) == 0
    assert len(json.loads(capsys.readouterr().out)["genres"]) == len(clf.genres_)


def test_printed_scores_never_contradict_the_decision(tiny_run, monkeypatch, capsys):
    """Scores and thresholds that round alike at 4 places get the digits that tell them apart: 0.49699999 is not
    picked at 0.497, so it must not print as 0.497 beside a threshold of 0.497; nor 0.49996 as 0.5 beside --threshold
    0.5. (The old output printed both equal.)"""
    from genrefusion.predict import GenreClassifier

    real = GenreClassifier.thresholds_for
    G = len(GenreClassifier.load(tiny_run).genres_)
    S, T = np.linspace(0.1, 0.9, G), np.full(G, 0.6)
    S[:3], T[:3] = [0.49699999, 0.4970001, 0.49996], [0.497, 0.49700004, 0.497]
    monkeypatch.setattr(GenreClassifier, "predict_proba", lambda self, titles, **kw: S[None, :].copy())
    monkeypatch.setattr(GenreClassifier, "thresholds_for", lambda self, used: (T, real(self, used)[1]))
    for extra, want in (([], T), (["--threshold", "0.5"], np.full(G, 0.5))):
        assert main(["predict", str(tiny_run), "--plot", "a plot", *extra]) == 0
        out = json.loads(capsys.readouterr().out)
        assert list(out["thresholds"].values()) == pytest.approx(want, abs=1e-4)  # the ones the decision used
        assert {g for g in out["scores"] if out["scores"][g] >= out["thresholds"][g]} == set(out["genres"])
        assert max(len(repr(v).split(".")[1]) for v in out["scores"].values()) > 4  # only the close calls
        assert sum(len(repr(v).split(".")[1]) > 4 for v in out["scores"].values()) <= 3


@pytest.mark.parametrize("argv, msg", [
    ([], "nothing to predict"),
    (["--poster", "/no/such/poster.jpg"], "poster.jpg: file not found"),
    (["--plot", "   "], "plot: empty text"),
    (["--plot", "x", "--plot-file", "y"], "not both"),
    (["--batch", "in.csv"], "needs --out"),
    (["--plot", "x", "--out", "o.jsonl"], "go with --batch"),
])
def test_single_title_errors(tiny_run, argv, msg, capsys):
    assert main(["predict", str(tiny_run), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and msg in err and err.count("\n") == 1


def test_corrupt_poster_named(tiny_run, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert main(["predict", str(tiny_run), "--poster", str(bad)]) == 2
    assert "broken.jpg" in capsys.readouterr().err


@pytest.fixture
def batch_input(shipped_subset):
    """10 shipped titles; title 2's poster is corrupt and title 5's poster file is missing."""
    ds = shipped_subset("imdb_top250", n=10)
    recs = [json.loads(line) for line in (ds / "titles.jsonl").read_text(encoding="utf-8").splitlines()]
    p2 = ds / recs[2]["poster"]
    data = p2.read_bytes()
    p2.write_bytes(data[: len(data) // 2])  # truncated JPEG
    (ds / recs[5]["poster"]).unlink()
    return ds, recs


def _jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_batch_survives_corrupt_and_missing_posters(tiny_run, batch_input, clf, tmp_path, capsys):
    ds, recs = batch_input
    out = tmp_path / "pred.jsonl"
    assert main(["predict", str(tiny_run), "--batch", str(ds), "--out", str(out), "--batch-size", "4",
                 "--no-progress"]) == 0
    o = capsys.readouterr()
    # the missing poster file is read as missing, as evaluate and CSV/JSONL input read it: predicted from the plot
    assert "10 rows" in o.out and "9 predicted (1 without their poster: see the warning column), 1 failed" in o.out
    assert recs[2]["id"] in o.err and recs[5]["id"] not in o.err
    rows = _jsonl(out)
    assert [r["index"] for r in rows] == list(range(10)) and [r["id"] for r in rows] == [r["id"] for r in recs]
    assert "corrupt or truncated" in rows[2]["error"] and recs[2]["poster"].split("/")[-1] in rows[2]["error"]
    assert rows[2]["genres"] is None and rows[2]["scores"] is None
    assert rows[5]["error"] is None and "not found" in rows[5]["warning"] and rows[5]["used"] == ["plot"]
    np.testing.assert_allclose([rows[5]["scores"][g] for g in clf.genres_],
                               clf.predict_proba([{"plot": recs[5]["plot"]}])[0], atol=2e-6)
    good = [i for i in range(10) if i not in (2, 5)]
    assert all(rows[i]["error"] is None for i in good)
    # the batch path gives the Python API's scores and decisions
    probs = clf.predict_proba([{"poster": ds / recs[i]["poster"], "plot": recs[i]["plot"]} for i in good])
    for i, p in zip(good, probs):
        np.testing.assert_allclose([rows[i]["scores"][g] for g in clf.genres_], p, atol=2e-6)
        assert rows[i]["genres"] == clf.decide(p, used=[["poster", "plot"]])[0]
        assert rows[i]["threshold_set"] == clf.thresholds_for(["poster", "plot"])[1]
        assert rows[i]["used"] == ["poster", "plot"]


def test_batch_csv_input_and_output(tiny_run, batch_input, tmp_path, capsys):
    ds, recs = batch_input
    src = tmp_path / "titles.csv"
    with open(src, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "plot", "poster"])
        for r in recs[:4]:
            w.writerow([r["id"], r["plot"], r["poster"]])  # relative to --images
        w.writerow(["nofile", "A plot.", "posters/missing.jpg"])
        w.writerow(["plotonly", recs[6]["plot"], ""])
        w.writerow(["url", recs[7]["plot"], "https://m.media-amazon.com/images/M/x.jpg"])
        w.writerow(["urlonly", "N/A", "https://m.media-amazon.com/images/M/x.jpg"])
    out = tmp_path / "pred.csv"
    assert main(["predict", str(tiny_run), "--batch", str(src), "--out", str(out), "--images", str(ds),
                 "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "8 rows" in said and "6 predicted (2 without their poster: see the warning column), 2 failed" in said
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == [r["id"] for r in recs[:4]] + ["nofile", "plotonly", "url", "urlonly"]
    assert rows[2]["error"] and not rows[2]["genres"]  # the corrupt poster
    # a poster cell that cannot be used: predicted from the plot, the problem in the warning column
    assert rows[4]["used"] == "plot" and not rows[4]["error"] and "missing.jpg" in rows[4]["warning"]
    assert rows[6]["used"] == "plot" and rows[6]["genres"] and "URL" in rows[6]["warning"]
    assert "URL" in rows[7]["error"] and not rows[7]["genres"]  # no plot either: an error
    assert rows[5]["used"] == "plot" and not rows[5]["error"] and not rows[5]["warning"]
    assert all(float(rows[0][k]) >= 0 for k in rows[0] if k.startswith("score_"))


def test_shards_merge_to_the_unsharded_output(tiny_run, batch_input, tmp_path, capsys):
    ds, _ = batch_input
    for ext in ("jsonl", "csv"):
        full = tmp_path / f"full.{ext}"
        common = ["predict", str(tiny_run), "--batch", str(ds), "--batch-size", "3", "--no-progress"]
        assert main([*common, "--out", str(full)]) == 0
        parts = []
        for k in (1, 2, 3):
            part = tmp_path / f"part{k}.{ext}"
            assert main([*common, "--out", str(part), "--shard", f"{k}/3"]) == 0
            parts.append(part)
        merged = tmp_path / f"merged.{ext}"
        assert main(["merge", *map(str, parts), "--out", str(merged)]) == 0
        assert merged.read_bytes() == full.read_bytes()
        # an incomplete set of shards is refused, naming the missing one
        assert main(["merge", str(parts[0]), str(parts[2]), "--out", str(tmp_path / f"bad.{ext}")]) == 2
        assert "2/3" in capsys.readouterr().err


PAGES = __import__("pathlib").Path(__file__).resolve().parent / "fixtures" / "collect" / "imdb"


def test_a_saved_imdb_page_is_predicted_with_its_plot_and_the_poster_beside_it(tiny_run, shipped, clf, tmp_path,
                                                                                capsys):
    import shutil

    from genrefusion.collect.imdb_pages import parse_title_page

    page = tmp_path / "tt0111161.html"
    shutil.copy(PAGES / page.name, page)
    info = parse_title_page(page.read_text(encoding="utf-8"))
    poster, _ = _shipped_title(shipped, 2)
    shutil.copy(poster, tmp_path / "tt0111161.jpg")  # <tt-id>.jpg beside the page, as collect imdb-pages reads it
    assert main(["predict", str(tiny_run), "--page", str(page)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["page"] == {"file": str(page), "imdb_id": "tt0111161", "title": info.title, "year": info.year,
                           "kind": "movie", "genres": info.genres, "plot_from_page": True,
                           "poster": str(tmp_path / "tt0111161.jpg"), "genres_unknown_to_model": []}
    assert {k: v for k, v in out.items() if k != "page"} == clf.predict_one(poster=tmp_path / "tt0111161.jpg",
                                                                            plot=info.plot)
    # --plot overrides the page's plot; a poster beside the page that is no image is dropped, said, not fatal
    (tmp_path / "tt0111161.jpg").write_bytes(b"<html>not a poster</html>")
    assert main(["predict", str(tiny_run), "--page", str(page), "--plot", "A heist in Rome."]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["used"] == ["plot"] and out["page"]["plot_from_page"] is False and out["page"]["poster"] is None
    assert "not an image" in out["page"]["poster_problem"]
    assert captured.err.startswith("warning: ") and "predicting from the page's plot" in captured.err
    assert out["scores"] == clf.predict_one(plot="A heist in Rome.")["scores"]


@pytest.mark.parametrize("what, says", [
    ("folder", "is a folder; for many pages run `genrefusion collect imdb-pages`"),
    ("missing", "page file not found"),
    ("person", "nm0000151.html: "),
    ("batch", "--batch cannot be combined with --poster/--plot/--plot-file/--page"),
])
def test_a_page_that_cannot_be_predicted_is_one_line(tiny_run, tmp_path, capsys, what, says):
    page = {"folder": tmp_path, "missing": tmp_path / "nope.html", "person": PAGES / "nm0000151.html",
            "batch": PAGES / "tt0111161.html"}[what]
    extra = ["--batch", str(tmp_path), "--out", str(tmp_path / "o.jsonl")] if what == "batch" else []
    assert main(["predict", str(tiny_run), "--page", str(page), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], err


def test_a_page_says_which_of_its_genres_the_model_cannot_predict_and_that_no_poster_was_found(tiny_run, clf,
                                                                                              tmp_path, capsys):
    """A page genre outside the model's vocabulary (Game-Show) is named, not left to look like a miss; a page whose
    poster is not saved beside it is predicted from the plot with a warning, not silently."""
    page = tmp_path / "tt0133093.html"
    page.write_text((PAGES / page.name).read_text(encoding="utf-8").replace(
        '"text":"Sci-Fi","id":"Sci-Fi"', '"text":"Game-Show","id":"Game-Show"'), encoding="utf-8")
    assert "Game-Show" not in clf.genres_ and "Action" in clf.genres_
    assert main(["predict", str(tiny_run), "--page", str(page)]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["page"]["genres"] == ["Action", "Game-Show"]
    assert out["page"]["genres_unknown_to_model"] == ["Game-Show"]
    assert out["used"] == ["plot"] and "no poster saved beside" in captured.err


def test_top_k_help_says_what_top_k_alone_does(tiny_run, shipped, capsys):
    """--top-k alone gives the K most probable genres whatever the thresholds (decision.decide); the help must not
    promise 'at most K of the predicted genres'."""
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "whatever the thresholds" in text and "of the predicted genres" not in text
    _, plot = _shipped_title(shipped, 3)
    assert main(["predict", str(tiny_run), "--plot", plot, "--top-k", "2", "--threshold", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["genres"] == []  # with --threshold: at most K of those above it


def test_batch_out_that_is_a_folder_is_refused_before_the_model_loads(tiny_run, tmp_path, monkeypatch, capsys):
    import genrefusion.commands.predict as P

    monkeypatch.setattr(P, "_load", lambda *a, **kw: (_ for _ in ()).throw(AssertionError("model loaded")))
    (tmp_path / "preds.csv").mkdir()
    (tmp_path / "in.csv").write_text("id,plot\na,A heist in Rome.\n", encoding="utf-8")
    assert main(["predict", str(tiny_run), "--batch", str(tmp_path / "in.csv"), "--out",
                 str(tmp_path / "preds.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "preds.csv: is a folder" in err[0]


def test_batch_where_every_title_fails_exits_1_with_the_file_written(tiny_run, tmp_path, capsys):
    """Per-title errors never stop a batch, but a run that predicted nothing must not look like success to a script."""
    (tmp_path / "in.csv").write_text("id,plot,poster\na,,missing.jpg\nb,,nothere.jpg\n", encoding="utf-8")
    out = tmp_path / "preds.csv"
    assert main(["predict", str(tiny_run), "--batch", str(tmp_path / "in.csv"), "--out", str(out),
                 "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "0 predicted, 2 failed" in captured.out and "error: no title could be predicted" in captured.err
    assert len(list(csv.DictReader(out.open(encoding="utf-8")))) == 2  # the errors are still in the file
    (tmp_path / "in.csv").write_text("id,plot,poster\na,A heist in Rome.,\nb,,nothere.jpg\n", encoding="utf-8")
    assert main(["predict", str(tiny_run), "--batch", str(tmp_path / "in.csv"), "--out", str(out),
                 "--no-progress"]) == 0  # some predicted: the failures are rows, not the exit status
