"""Explanations (``GenreClassifier.explain``, ``genrefusion explain``) on the session's ``tiny_run`` and a few
imdb_top250 titles (not in tiny_run's data): shapes, agreement with predict, exactness of the occlusions, the
deletion (faithfulness) direction, and bad input."""
from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genrefusion.errors import BadInput
from genrefusion.explain import plot_units, remove_spans, resolve_genres
from genrefusion.predict import GenreClassifier


@pytest.fixture(scope="module")
def clf(tiny_run):
    return GenreClassifier.load(tiny_run)


@pytest.fixture(scope="module")
def titles() -> list[tuple]:
    """(poster path, plot) of the first imdb_top250 titles: not in tiny_run's data."""
    from genrefusion.paths import shipped_data_dir

    ds = (shipped_data_dir(required=False) or Path("/nonexistent")) / "imdb_top250"
    if not (ds / "titles.jsonl").is_file():
        pytest.skip("shipped datasets not found")
    lines = (ds / "titles.jsonl").read_text(encoding="utf-8").splitlines()[:8]
    return [(ds / r["poster"], r["plot"]) for r in map(json.loads, lines) if r.get("poster") and r.get("plot")]


def logit(p):
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


# -- pure helpers -------------------------------------------------------------------------------------------
def test_words_and_removal():
    text = "A hit-man's last job, in 1999: don't   stop."
    u = plot_units(text)
    assert [text[s:e] for s, e in u.words] == ["A", "hit-man's", "last", "job", "in", "1999", "don't", "stop"]
    assert u.granularity == "word" and u.units == [(i, i + 1) for i in range(8)]
    assert remove_spans(text, [u.words[1], u.words[6]]) == "A last job, in 1999: stop."
    assert plot_units("?! ...").units == []  # a plot without words is still a plot: nothing to weigh


def test_long_plots_become_phrases_within_the_budget():
    text = " ".join(f"word{i}" + ("," if i % 7 == 6 else "") for i in range(300))
    u = plot_units(text, word_budget=2400)
    assert u.granularity == "phrase" and len(u.units) <= max(8, 2400 // 300)
    # contiguous, in order, covering every word once
    assert u.units[0][0] == 0 and u.units[-1][1] == 300
    assert all(a[1] == b[0] for a, b in zip(u.units, u.units[1:]))
    assert remove_spans(text, [u.span(0)]).startswith(f"word{u.units[0][1]}")


@pytest.mark.parametrize("n", [40, 300, 1000, 4000])
def test_explaining_a_plot_encodes_about_the_word_budget(clf, monkeypatch, n):
    from genrefusion.explain import WORD_BUDGET
    from genrefusion.explain.core import LOCK_WORDS
    from genrefusion.explain.units import MIN_UNITS

    enc, calls = clf.input_encoders().minilm, []

    def counting(texts, batch_size=32):  # a stub MiniLM: words encoded per call, and whether the lock was held
        calls.append((sum(len(t.split()) for t in texts), clf._lock.locked()))
        return np.zeros((len(texts), enc.dim), np.float32)

    monkeypatch.setattr(enc, "encode", counting)
    plot = " ".join(("cat", "dog", "sun")[i % 3] for i in range(n))  # 4,000 words within 20,000 characters
    e = clf.explain(plot=plot, genres=[clf.genres_[0]], overlays=False)
    assert len(e["plot"]["words"]) == n and len(e["plot"]["units"]) >= min(n, 8)  # a long plot: 8 phrases at least
    assert sum(w for w, _ in calls) <= max(WORD_BUDGET, MIN_UNITS * n)  # units x n: the budget, or 8 phrases
    assert all(held and w <= max(LOCK_WORDS, n) for w, held in calls)  # the lock is taken per chunk, not for all


@pytest.mark.parametrize("size", [(1, 5000), (2, 3000), (5000, 1), (3000, 7), (400, 600)])
def test_overlay_of_very_tall_or_wide_posters(size):
    from genrefusion.explain.render import overlay_image

    w, h = size
    side = min(w, h)
    crop = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)  # the centre square the model sees
    out = overlay_image(Image.new("RGB", size, (90, 90, 90)), np.array([[1.0, -1.0], [0.5, 0.0]]), crop)
    assert out.mode == "RGB" and max(out.size) <= 320


def test_explain_a_one_pixel_wide_poster(clf):
    e = clf.explain(poster=Image.new("RGB", (1, 5000), (200, 30, 30)), genres=[clf.genres_[0]])
    assert e["poster"]["size"] == [1, 5000] and e["genres"][0]["overlay_png"]


def test_a_genre_never_predicted_from_these_inputs_is_said_so():
    from genrefusion.explain.render import genre_blocks

    e = {"genre": "Horror", "score": 0.4, "poster_only": None, "plot_only": 0.4, "predicted": False,
         "overlay_png": None, "word_weights": None}
    expl = {"plot": None, "genres": [dict(e, threshold=2.0), dict(e, genre="Drama", threshold=0.35)]}
    html = genre_blocks(expl)
    assert "(never predicted from these inputs)" in html and "threshold 2.00" not in html
    assert "(threshold 0.35)" in html


def test_genre_names_resolve_or_fail_naming_them():
    known = ["Action", "Drama", "Sci-Fi"]
    assert resolve_genres(["drama", "science fiction", "Drama"], known) == ["Drama", "Sci-Fi"]
    assert resolve_genres("ACTION", known) == ["Action"]
    with pytest.raises(BadInput, match=r"genre 'Dramma': not a genre of this model; did you mean 'Drama'"):
        resolve_genres(["Dramma"], known)
    with pytest.raises(BadInput, match="genre 'Musical'.*it knows Action, Drama, Sci-Fi"):
        resolve_genres(["Musical"], known)


# -- the explanation ----------------------------------------------------------------------------------------
def test_shapes_and_agreement_with_predict(clf, titles):
    path, plot = titles[0]
    e = clf.explain(poster=path, plot=plot)
    json.dumps(e)  # plain JSON
    assert e["used"] == ["poster", "plot"] and e["model"] == "fused" and e["weights"] == "log-odds"
    P = clf.predict_proba([{"poster": path, "plot": plot}, {"poster": path}, {"plot": plot}])
    predicted = clf.predict([{"poster": path, "plot": plot}])[0]
    assert e["predicted"] == predicted
    assert [g["genre"] for g in e["genres"]] == (predicted or [clf.genres_[i] for i in np.argsort(-P[0])[:3]])
    W = len(e["plot"]["words"])
    h, w = e["poster"]["grid_shape"]
    assert (h, w) == (7, 7) and e["poster"]["size"] == list(Image.open(path).size)
    left, top, right, bottom = e["poster"]["crop"]
    assert 0 <= left < right <= e["poster"]["size"][0] and 0 <= top < bottom <= e["poster"]["size"][1]
    for g in e["genres"]:
        j = clf.genres_.index(g["genre"])
        assert [g["score"], g["poster_only"], g["plot_only"]] == pytest.approx(P[:, j], abs=2e-4)
        # each input alone is cut where a prediction from it alone would be: the set tuned on such titles
        assert [g["poster_only_threshold"], g["plot_only_threshold"]] == pytest.approx(
            [clf.thresholds_for([k])[0][j] for k in ("poster", "plot")], abs=1e-4)
        assert len(g["word_weights"]) == W and np.isfinite(g["word_weights"]).all()
        assert np.asarray(g["poster_grid"]).shape == (h, w)
        png = Image.open(io.BytesIO(base64.b64decode(g["overlay_png"])))
        assert png.format == "PNG" and max(png.size) <= 320
        assert len(g["top_words"]) <= 5 and all(t["weight"] > 0 for t in g["top_words"])


def test_a_close_call_is_not_shown_equal_to_its_threshold(clf, titles, monkeypatch):
    """A score a hair under its threshold (not predicted) gets the digits that show it under, as predict's does."""
    _, plot = titles[0]
    s = clf.predict_proba([{"plot": plot}])[0]
    real = GenreClassifier.thresholds_for
    T = s + np.where(np.arange(len(s)) % 2, 1e-7, -1e-7)  # odd genres just missed, even ones just made
    monkeypatch.setattr(GenreClassifier, "thresholds_for", lambda self, used: (T, real(self, used)[1]))
    e = clf.explain(plot=plot, genres=list(clf.genres_[:4]), overlays=False)
    for g in e["genres"]:
        assert (g["score"] >= g["threshold"]) == g["predicted"] == (clf.genres_.index(g["genre"]) % 2 == 0), g


def test_word_weights_are_the_occlusion_effect(clf, titles):
    """A word's weight is exactly the log-odds fall predict gives when that word is deleted."""
    path, plot = titles[1]
    e = clf.explain(poster=path, plot=plot, genres=[clf.genres_[0], clf.genres_[-1]], overlays=False)
    words = e["plot"]["words"]
    variants = [{"poster": path, "plot": plot}] + [{"poster": path, "plot": remove_spans(plot, [words[i]])}
                                                   for i in range(len(words))]
    L = logit(clf.predict_proba(variants))
    for g in e["genres"]:
        j = clf.genres_.index(g["genre"])
        np.testing.assert_allclose(g["word_weights"], L[0, j] - L[1:, j], atol=2e-4)
    assert e["genres"][0]["overlay_png"] is None  # overlays=False


def test_poster_only_plot_only_and_single_models(clf, tiny_run, titles):
    path, plot = titles[2]
    e = clf.explain(poster=path)
    assert e["used"] == ["poster"] and e["plot"] is None
    g = e["genres"][0]
    assert g["plot_only"] is None and g["word_weights"] is None and g["poster_only"] == g["score"]
    assert g["plot_only_threshold"] is None and g["poster_only_threshold"] == g["threshold"]
    e = clf.explain(plot=plot, overlays=False)
    assert e["used"] == ["plot"] and e["poster"] is None and e["genres"][0]["poster_grid"] is None
    e = clf.explain(plot="?!", overlays=False)  # no words: scores, and nothing to weigh
    assert e["plot"]["words"] == [] and e["genres"][0]["word_weights"] == [] and e["genres"][0]["top_words"] == []
    g = e["genres"][0]
    assert g["score"] == pytest.approx(clf.predict_proba([{"plot": "?!"}])[0][clf.genres_.index(g["genre"])], abs=2e-4)
    # the poster model ignores the plot: nothing to attribute there
    e = GenreClassifier.load(tiny_run, model="poster").explain(poster=path, plot=plot)
    assert e["model"] == "poster" and e["used"] == ["poster"] and e["plot"] is None
    # ... and given only the plot it has nothing to read: refused as predict_one refuses it, not the prior
    with pytest.raises(BadInput, match="the poster model reads only the poster; this title gave only its plot"):
        GenreClassifier.load(tiny_run, model="poster").explain(plot=plot)


def test_threshold_override_as_in_predict_one(clf, titles):
    e = clf.explain(plot=titles[0][1], threshold=0.0, overlays=False)
    assert e["predicted"] == clf.predict_one(plot=titles[0][1], threshold=0.0)["genres"]
    assert len(e["predicted"]) == len(clf.genres_) and {g["threshold"] for g in e["genres"]} == {0.0}
    # with top_k as well: at most k of the genres above the threshold, as predict_one (not the k best whatever)
    P = np.sort(clf.predict_proba([{"plot": titles[0][1]}])[0])[::-1]
    cut = float((P[0] + P[1]) / 2)
    e = clf.explain(plot=titles[0][1], threshold=cut, top_k=3, overlays=False)
    assert [g["genre"] for g in e["genres"]] == clf.predict_one(plot=titles[0][1], threshold=cut, top_k=3)["genres"]
    assert len(e["genres"]) == 1


def test_genre_choice(clf, titles):
    path, plot = titles[3]
    e = clf.explain(poster=path, plot=plot, genres=[clf.genres_[1].lower()], overlays=False)
    assert [g["genre"] for g in e["genres"]] == [clf.genres_[1]]
    e = clf.explain(plot=plot, top_k=2, overlays=False)  # as predict_one: the 2 most probable, thresholds or not
    P = clf.predict_proba([{"plot": plot}])[0]
    assert [g["genre"] for g in e["genres"]] == [clf.genres_[i] for i in np.argsort(-P, kind="stable")[:2]]


@pytest.mark.parametrize("kw, needle", [
    ({"plot": "   "}, "give a poster, a plot, or both"),
    ({"plot": "A plot.", "genres": ["Nope"]}, "genre 'Nope': not a genre of this model"),
    ({"poster": b"not an image", "plot": "A plot."}, "poster: not an image"),
    ({"plot": 42}, "plot must be text"),
    ({"plot": "A plot.", "top_k": 0}, "top_k"),
    ({"plot": "A plot.", "threshold": 1.5}, "threshold: must be a number between 0 and 1"),
])
def test_bad_input_is_one_line(clf, kw, needle):
    with pytest.raises(BadInput) as err:
        clf.explain(**kw)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_explain_tensor_poster_refused(clf, titles):
    x = clf.preprocess_poster(titles[0][0])
    with pytest.raises(BadInput, match="not a tensor"):
        clf.explain(poster=x)


# -- the report's showcase -----------------------------------------------------------------------------------
def test_showcase_rule_and_mistakes():
    from genrefusion.explain.showcase import mistakes, pick

    genres = ["Action", "Drama", "Horror"]
    # labelled Action; its dataset does not label Horror: predicting Horror is not a mistake, Drama is
    assert mistakes([1, 0, 0], [1, 1, 0], {"Action", "Horror"}, genres) == []
    assert mistakes([1, 0, 0], [1, 1, 0], {"Drama"}, genres) == ["predicted Drama (not labelled)", "missed Action"]
    keys = [f"ds/t{i}" for i in range(40)]
    wrong = {k: ["x"] for k in keys[::3]}
    got = pick(keys, set(keys[:30]), wrong)
    assert len(got) == 6 and len(set(got)) == 6 and all(k in keys[:30] for k in got)
    assert all(wrong.get(k) for k in got[4:])  # the last two are wrong predictions
    assert got == pick(list(reversed(keys)), set(keys[:30]), wrong)  # a fixed rule, whatever the input order


def test_report_explains_test_titles(tiny_run):
    html = (tiny_run / "report.html").read_text(encoding="utf-8")
    section = html.split("<h2>Why? Explanations of a few test titles</h2>", 1)[1].split("<h2>", 1)[0]
    cached = json.loads((tiny_run / "report" / "explanations.json").read_text())
    assert cached["model"] == "fused" and 1 <= len(cached["titles"]) <= 6
    for t in cached["titles"]:
        assert t["key"] in section and t["explanation"]["used"] == ["poster", "plot"]
    assert section.count("data:image/png;base64,") == sum(len(t["explanation"]["genres"]) for t in cached["titles"])


def test_showcase_verdicts_use_the_thresholds_of_titles_with_both_inputs(tiny_run, tmp_path, monkeypatch):
    """The verdict beside each showcased title ("wrong: predicted Drama") is the served decision's: the threshold set
    tuned for titles with a poster and a plot, as the explanation under it uses, not the pooled thresholds."""
    import shutil

    import genrefusion.explain.core as core
    from genrefusion.explain.showcase import mistakes, showcase

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    monkeypatch.setattr(core, "explain", lambda *a, **kw: {"genres": []})
    asked = []

    def every_genre(self, used):  # a both-inputs set that predicts every genre
        asked.append(list(used))
        return np.zeros(len(self.genres_)), "both"

    monkeypatch.setattr(core.BundleView, "thresholds_for", every_genre)
    with np.load(run / "test_scores.npz", allow_pickle=False) as z:
        scores = {k: z[k] for k in z.files}
    out = showcase(run, scores, "fused")
    keys, genres = [str(k) for k in scores["keys"]], [str(g) for g in scores["genres"]]
    assert out and asked and all(u == ["poster", "plot"] for u in asked)
    for t in out:
        i = keys.index(t["key"])
        assert t["wrong"] == mistakes(scores["Y"][i], scores["M"][i], set(genres), genres)


def test_showcase_cache_is_keyed_on_content(tiny_run, tiny_run_data, tmp_path, monkeypatch):
    """A copied run and data (new paths, new modification times) reuse the report's cached explanations; an edited
    title or a changed model explains again. (Keyed on the weights' modification time, the copy explained all.)"""
    import shutil

    import genrefusion.explain.core as core
    from genrefusion.explain.showcase import showcase
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, copy_function=shutil.copy)  # as `cp -r`: the copies are new files
    data = [shutil.copytree(d, tmp_path / "data" / d.name, copy_function=shutil.copy) for d in tiny_run_data]
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "data": [str(d) for d in data]}))
    calls = []
    monkeypatch.setattr(core, "explain", lambda *a, **kw: calls.append(kw["plot"]) or {"genres": []})
    with np.load(run / "test_scores.npz", allow_pickle=False) as z:
        scores = {k: z[k] for k in z.files}
    cached = json.loads((run / "report" / "explanations.json").read_text())["titles"]
    assert showcase(run, scores, "fused") == cached and calls == []

    # an edited plot of a showcased title: that input changed
    ds = data[0] if cached[0]["key"].startswith(data[0].name + "/") else data[1]
    lines = (ds / "titles.jsonl").read_text(encoding="utf-8").splitlines()
    tid = cached[0]["key"].split("/", 1)[1]
    lines = [json.dumps({**r, "plot": r["plot"] + " Edited."}) if r["id"] == tid else json.dumps(r)
             for r in map(json.loads, lines)]
    (ds / "titles.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    showcase(run, scores, "fused")
    assert len(calls) == len(cached) and any(p.endswith(" Edited.") for p in calls)
    showcase(run, scores, "fused")
    assert len(calls) == len(cached)  # cached again

    # a changed model (one weight nudged)
    weights = run / "model" / "weights.safetensors"
    with safe_open(weights, "pt") as fh:
        meta = fh.metadata()
    tensors = load_file(weights)
    name = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[name] = tensors[name] + 0.01
    save_file(tensors, weights, metadata=meta)
    showcase(run, scores, "fused")
    assert len(calls) == 2 * len(cached)


# -- faithfulness ---------------------------------------------------------------------------------------------
def test_deletion_direction(clf, titles):
    """Deleting the top-attributed words / masking the top poster cells (in image space) lowers the genre's
    score more than deleting as many at random; with the attributions shuffled that advantage goes. (Checked
    once: with ``ranking="shuffled"`` for ``r`` the word assertions fail.)"""
    from genrefusion.explain.faithfulness import deletion_case, summarise

    rng = np.random.default_rng(0)
    cases = [deletion_case(clf, path, plot, clf.explain(poster=path, plot=plot, overlays=False), rng, n_random=2,
                           word_ks=(1, 2, 3), cell_ks=(1, 2, 4)) for path, plot in titles]
    kinds = {"words": [1, 2, 3], "cells": [1, 2, 4]}
    r, s = summarise(cases, kinds), summarise(cases, kinds, ranking="shuffled")
    assert r["words"]["pairs"] >= 8
    assert r["words"]["mean_gap"] > 0 and r["words"]["top_beats_random"] >= 0.75, r["words"]
    assert r["cells"]["mean_gap"] > 0, r["cells"]
    assert r["words"]["mean_gap"] > s["words"]["mean_gap"] and r["cells"]["mean_gap"] > s["cells"]["mean_gap"]
    assert s["words"]["top_beats_random"] < 0.75


# -- CLI ------------------------------------------------------------------------------------------------------
def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "genrefusion", "explain", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


def test_cli_writes_json_overlays_and_html(tiny_run, titles, tmp_path):
    path, plot = titles[0]
    out = tmp_path / "why"
    (tmp_path / "plot.txt").write_text(plot, encoding="utf-8")
    r = _cli(tiny_run, "--poster", path, "--plot-file", tmp_path / "plot.txt", "--out", out)
    assert r.returncode == 0, r.stderr
    assert "poster" in r.stdout.splitlines()[0] and "top words" in r.stdout.splitlines()[0]
    doc = json.loads((out / "explain.json").read_text())
    assert doc["plot"]["text"] == plot and all("overlay_png" not in g for g in doc["genres"])
    for g in doc["genres"]:
        assert g["genre"] in r.stdout
        assert Image.open(out / g["overlay_file"]).format == "PNG"
    html = (out / "explain.html").read_text()
    assert html.count("data:image/png;base64,") == len(doc["genres"]) and "<span title=" in html


@pytest.mark.parametrize("args, needle", [
    (["--plot", "A plot.", "--genre", "Nope"], "error: genre 'Nope': not a genre of this model"),
    (["--plot", "  "], "error: plot: empty text"),
    ([], "error: nothing to explain"),
    (["--poster", "missing.jpg"], "error: missing.jpg: file not found"),
])
def test_cli_bad_input_one_line(tiny_run, tmp_path, args, needle):
    r = _cli(tiny_run, *args, "--out", tmp_path / "o", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith(needle), r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("out, needle", [("afile", "error: --out afile: it is a file, not a folder"),
                                         ("afile/sub", "error: --out afile/sub: afile is a file, not a folder")])
def test_cli_out_that_cannot_be_a_folder_fails_before_the_model_loads(tmp_path, out, needle):
    (tmp_path / "afile").write_text("x")
    r = _cli(tmp_path / "no-such-run", "--plot", "A plot.", "--out", out, cwd=tmp_path)  # the --out error comes first
    assert r.returncode == 2 and r.stderr.startswith(needle), r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def _expl(*genres):
    png = base64.b64encode(b"\x89PNG not checked").decode()
    return {"predicted": [], "plot": None, "genres": [
        {"genre": g, "score": 0.5, "poster_only": 0.5, "plot_only": None, "threshold": 0.4, "predicted": False,
         "word_weights": None, "overlay_png": png} for g in genres]}


def test_explain_outputs_replace_the_previous_runs(tmp_path):
    from genrefusion.commands.explain import write_outputs

    (tmp_path / "poster-Mine.png").write_bytes(b"a user's file")
    write_outputs(_expl("Horror", "Sci-Fi"), tmp_path)
    assert {p.name for p in tmp_path.glob("poster-*.png")} == {"poster-Mine.png", "poster-Horror.png",
                                                                "poster-Sci-Fi.png"}
    write_outputs(_expl("Drama"), tmp_path)  # the last run's overlays go; files explain did not write stay
    assert {p.name for p in tmp_path.glob("poster-*.png")} == {"poster-Mine.png", "poster-Drama.png"}
    assert [g["overlay_file"] for g in json.loads((tmp_path / "explain.json").read_text())["genres"]] \
        == ["poster-Drama.png"]


def test_explain_outputs_that_cannot_be_written_are_one_line(tmp_path, monkeypatch):
    from genrefusion.commands.explain import write_outputs
    from genrefusion.errors import GenreFusionError

    def refuse(*a, **kw):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(GenreFusionError, match="cannot write the explanation \\(Permission denied\\)"):
        write_outputs(_expl("Drama"), tmp_path / "new")


@pytest.mark.slow
def test_lstm_route(tiny_run_data, tiny_run_cache, tmp_path, monkeypatch, titles):
    """The AWD-LSTM text route: word weights are again exactly the log-odds fall predict gives."""
    from genrefusion.config import load_config
    from genrefusion.train import main

    from conftest import TINY_RUN_OVERRIDES

    monkeypatch.setenv("GENREFUSION_CACHE", str(tiny_run_cache))
    over = {**TINY_RUN_OVERRIDES, "text.encoder": "lstm", "text.lstm.emb_dim": 16, "text.lstm.hidden": 24,
            "text.lstm.max_len": 40, "text.lstm.unfreeze_epochs": [1, 0, 0], "train.epochs": 1,
            "train.fused_epochs": 1}
    main(tiny_run_data, tmp_path / "run", load_config(overrides=over), progress=False, write_report=False,
         device="cpu")
    clf = GenreClassifier.load(tmp_path / "run")
    assert clf.bundle_.spec["text_route"] == "lstm"
    path, plot = titles[0]
    e = clf.explain(poster=path, plot=plot, overlays=False)
    words = e["plot"]["words"]
    L = logit(clf.predict_proba([{"poster": path, "plot": plot}] +
                                [{"poster": path, "plot": remove_spans(plot, [w])} for w in words]))
    for g in e["genres"]:
        j = clf.genres_.index(g["genre"])
        np.testing.assert_allclose(g["word_weights"], L[0, j] - L[1:, j], atol=2e-4)
        assert g["score"] == pytest.approx(1 / (1 + np.exp(-L[0, j])), abs=2e-4)


def test_a_chinese_plot_is_weighed_by_character_and_cut_at_its_full_stops():
    # was: runs of \w, so a Chinese plot of 31 characters had 3 "words", one per clause
    from genrefusion.explain.units import plot_units

    text = "东京的一名侦探追查连环杀手。他的搭档被绑架了，他必须在黎明前找到她。"
    u = plot_units(text)
    assert u.granularity == "word" and [u.unit_text(i) for i in range(3)] == ["东", "京", "的"]
    assert remove_spans(text, [u.span(1)]).startswith("东的")
    long = plot_units(text * 20, word_budget=620 * 4)  # 620 characters, 4 units: phrases end at 。 or ，
    assert long.granularity == "phrase" and all(long.unit_text(i)[-1] in "手了她" for i in range(len(long.units) - 1))
    en = "A cop's ex-wife returns."
    assert [en[a:b] for a, b in plot_units(en).words] == ["A", "cop's", "ex-wife", "returns"]
