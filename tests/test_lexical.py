"""The lexical blend (models/lexical.py): the weight is chosen on dev, only rows with a plot change, and every
path that serves the model (predict, evaluate, explain, export) answers with the same blended probabilities."""
from __future__ import annotations

import json

import numpy as np
import pytest

from genrefusion.models.lexical import WEIGHTS, blend, choose_weight


def test_blend_changes_only_rows_with_a_plot():
    S = np.array([[0.2, 0.8], [0.4, 0.6]], np.float32)
    Q = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
    out = blend(S, Q, [True, False], 0.25)
    np.testing.assert_allclose(out[0], [0.4, 0.6])
    np.testing.assert_array_equal(out[1], S[1])
    assert blend(S, Q, [True, True], 0.0) is not None and np.array_equal(blend(S, Q, [True, True], 0.0), S)
    assert blend(S.astype(np.float64), Q, [True, True], 0.5).dtype == np.float64  # explain's precision kept


def test_weight_is_chosen_by_the_dev_score():
    rng = np.random.default_rng(0)
    Y = (rng.random((300, 4)) < 0.3).astype(np.int64)
    M = np.ones_like(Y)
    noisy = np.clip(0.5 * Y + rng.random(Y.shape) * 0.9, 0, 1)          # a weak network
    oracle = np.clip(Y * 0.6 + rng.random(Y.shape) * 0.3, 0, 1)        # a strong lexical model
    w, by_w = choose_weight(Y, noisy, M, oracle, np.ones(300, bool))
    assert w >= 0.5 and by_w[f"{w:g}"] > by_w["0"] and set(by_w) == {f"{x:g}" for x in WEIGHTS}
    # a useless lexical model is not blended in (ties and losses keep the network alone)
    w, _ = choose_weight(Y, oracle, M, rng.random(Y.shape), np.ones(300, bool))
    assert w == 0.0
    # no dev title with a plot: nothing to choose on
    assert choose_weight(Y, noisy, M, oracle, np.zeros(300, bool)) == (0.0, {})


def test_run_records_and_bundles_the_blend(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    cfg = json.loads((tiny_run / "model" / "config.json").read_text())
    lex = metrics["lexical_blend"]
    assert set(lex) >= {"plot", "fused"} and "poster" not in lex
    for name in ("plot", "fused"):
        rec = lex[name]
        by_w = rec["dev_mAP_with_a_plot_by_weight"]
        assert by_w[f"{rec['weight']:g}"] == max(by_w.values())  # the dev-best weight
        assert rec["test_mAP_with_a_plot_network_alone"] is not None
        assert cfg["lexical"]["weights"].get(name, 0.0) == rec["weight"]
    assert (tiny_run / "model" / "lexical.safetensors").is_file()


def test_predict_serves_the_blend(tiny_run, shipped):
    """predict_proba = (1 - w) * network + w * tf-idf for a title with a plot; a poster-only title is untouched."""
    from genrefusion.predict import GenreClassifier

    clf = GenreClassifier.load(tiny_run)
    model = clf.bundle_.models[clf.model_name_]
    w = getattr(model, "lexical_weight", 0.0)
    if not w:
        pytest.skip("dev chose the network alone for this run")
    ds = shipped / "imdb_top250"  # not in tiny_run's data
    rows = [json.loads(x) for x in (ds / "titles.jsonl").read_text(encoding="utf-8").splitlines()[:12]]
    titles = [r for r in rows if r.get("plot") and r.get("poster")][:3]
    assert titles
    plot_only = [{"plot": t["plot"]} for t in titles]
    poster_only = [{"poster": str(ds / t["poster"])} for t in titles]
    blended, poster_blended = clf.predict_proba(plot_only), clf.predict_proba(poster_only)
    model.lexical_weight = 0.0
    try:
        alone, poster_alone = clf.predict_proba(plot_only), clf.predict_proba(poster_only)
    finally:
        model.lexical_weight = w
    Q = clf.bundle_.lexical.predict_proba([t["plot"] for t in titles])
    np.testing.assert_allclose(blended, (1 - w) * alone + w * Q, atol=1e-6)
    np.testing.assert_array_equal(poster_blended, poster_alone)


def test_off_trains_no_blend(monkeypatch):
    """``text.lexical = "off"``: no model is blended (the networks alone are scored and bundled)."""
    from types import SimpleNamespace

    from genrefusion.config import load_config
    from genrefusion.train import blend_lexical

    job = SimpleNamespace(cfg=load_config(overrides={"text.lexical": "off"}))
    scores = {"plot": np.zeros((2, 3)), "tfidf_logreg": np.ones((2, 3))}
    assert blend_lexical(job, {"plot": None}, scores, dict(scores)) == {}
    assert np.array_equal(scores["plot"], np.zeros((2, 3)))


def test_weight_is_the_dev_choice(tiny_run, monkeypatch):
    """The recorded weight and dev scores are reproduced from the run's *dev* titles: the networks' own scores
    (blend switched off) and the tf-idf baseline's, through ``choose_weight``. Choosing on test fails this."""
    import genrefusion.evaluate as E
    import genrefusion.models.lexical as L

    seen = {}
    real_score_models = E.score_models

    def capture(Y, M, scores, thresholds, image_ok, text_ok, kinds, genres):
        seen.update(Y=Y, M=M, scores=scores, text_ok=np.asarray(text_ok))
        return real_score_models(Y, M, scores, thresholds, image_ok, text_ok, kinds, genres)

    monkeypatch.setattr(E, "score_models", capture)
    monkeypatch.setattr(L, "blend", lambda S, Q, text_ok, w: np.asarray(S))  # the networks alone
    E.evaluate_run(tiny_run, split="dev", progress=False)
    monkeypatch.undo()
    lex = json.loads((tiny_run / "metrics.json").read_text())["lexical_blend"]
    for name in ("plot", "fused"):
        w, by_w = choose_weight(seen["Y"], seen["scores"][name], seen["M"], seen["scores"]["tfidf_logreg"],
                                seen["text_ok"])
        assert w == lex[name]["weight"]
        assert by_w == pytest.approx(lex[name]["dev_mAP_with_a_plot_by_weight"], abs=2e-5)
