"""The Python API, ``GenreClassifier``: load / predict_proba / predict / predict_one / save / info / fit,
on the session's ``tiny_run`` (read-only) and a few shipped titles."""
from __future__ import annotations

import io
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from genrefusion.data.records import Title
from genrefusion.errors import BadInput, BundleError, GenreFusionError
from genrefusion.predict import GenreClassifier


@pytest.fixture(scope="module")
def clf(tiny_run):
    return GenreClassifier.load(tiny_run)


@pytest.fixture(scope="module")
def titles():
    """Three imdb_top250 titles (poster path + plot): not in tiny_run's data, so unseen in training."""
    from genrefusion.paths import shipped_data_dir

    root = shipped_data_dir(required=False)
    if root is None or not (root / "imdb_top250" / "titles.jsonl").exists():
        pytest.skip("shipped datasets not found")
    ds = root / "imdb_top250"
    recs = [json.loads(line) for line in (ds / "titles.jsonl").read_text(encoding="utf-8").splitlines()[:3]]
    return [(ds / r["poster"], r["plot"]) for r in recs]


def test_learned_attributes(clf, tiny_run):
    m = json.loads((tiny_run / "metrics.json").read_text())
    assert clf.genres_ == m["genres"]
    assert clf.model_name_ == "fused"
    assert isinstance(clf.thresholds_, np.ndarray) and clf.thresholds_.shape == (len(clf.genres_),)
    np.testing.assert_allclose(clf.thresholds_, [m["thresholds"]["fused"][g] for g in clf.genres_], atol=1e-5)
    assert clf.metrics_["models"]["fused"]["micro_f1"] == m["models"]["fused"]["micro_f1"]
    assert clf.config_["text_encoder"] == m["text_route"]
    # the bundle folder itself loads the same model
    again = GenreClassifier.load(tiny_run / "model")
    assert again.genres_ == clf.genres_ and np.array_equal(again.thresholds_, clf.thresholds_)


def test_poster_forms_give_the_same_scores(clf, titles):
    path, plot = titles[0]
    data = path.read_bytes()
    pil = Image.open(io.BytesIO(data)).convert("RGB")
    forms = [{"poster": path, "plot": plot}, {"poster": str(path), "plot": plot}, {"poster": data, "plot": plot},
             {"poster": pil, "plot": plot}, (path, plot), SimpleNamespace(poster=path, plot=plot),
             Title(id="x", genres=[], plot=plot, poster=str(path))]
    P = clf.predict_proba(forms)
    assert P.shape == (len(forms), len(clf.genres_)) and P.dtype == np.float32
    assert ((P >= 0) & (P <= 1)).all()
    np.testing.assert_allclose(P, np.repeat(P[:1], len(forms), axis=0), atol=1e-5)


def test_each_modality_is_used(clf, titles):
    (p0, t0), (p1, t1), _ = titles
    both, poster_only, plot_only = clf.predict_proba([{"poster": p0, "plot": t0}, {"poster": p0}, {"plot": t0}])
    # the fused model changes its answer when a modality is taken away, and a different input changes it too
    assert not np.allclose(both, poster_only, atol=1e-4) and not np.allclose(both, plot_only, atol=1e-4)
    other_plot, other_poster = clf.predict_proba([{"plot": t1}, {"poster": p1}])
    assert not np.allclose(plot_only, other_plot, atol=1e-4)
    assert not np.allclose(poster_only, other_poster, atol=1e-4)
    # batch and one-by-one agree (BatchNorm in eval mode, no cross-row leakage)
    alone = clf.predict_proba([{"poster": p1, "plot": t1}])
    mixed = clf.predict_proba([{"plot": t0}, {"poster": p1, "plot": t1}])
    np.testing.assert_allclose(alone[0], mixed[1], atol=1e-5)


def test_single_modality_model_ignores_the_other_input(tiny_run, titles):
    poster = GenreClassifier.load(tiny_run, model="poster")
    assert poster.model_name_ == "poster"
    (p0, t0), (_, t1), _ = titles
    a, b = poster.predict_proba([{"poster": p0, "plot": t0}, {"poster": p0, "plot": t1}])
    np.testing.assert_allclose(a, b, atol=1e-6)
    # no poster: the genre priors, whatever the plot
    c, d = poster.predict_proba([{"plot": t0}, {"plot": t1}])
    np.testing.assert_allclose(c, d, atol=1e-6)
    with pytest.raises(BundleError, match="no 'nope' model"):
        GenreClassifier.load(tiny_run, model="nope")


def test_predict_uses_the_saved_thresholds(clf, titles):
    inputs = [{"poster": p, "plot": t} for p, t in titles]
    P = clf.predict_proba(inputs)
    got = clf.predict(inputs)
    thresholds, _ = clf.thresholds_for(["poster", "plot"])  # the set tuned on dev titles with both inputs
    for row, genres in zip(P, got):
        want = {g for g, s, thr in zip(clf.genres_, row, thresholds) if s >= thr}
        assert set(genres) == want
        assert [row[clf.genres_.index(g)] for g in genres] == sorted((row[clf.genres_.index(g)] for g in genres),
                                                                     reverse=True)


def test_predict_one(clf, titles):
    path, plot = titles[1]
    out = clf.predict_one(poster=path, plot=plot)
    assert set(out) == {"genres", "scores", "thresholds", "used", "threshold_set"} and out["used"] == ["poster", "plot"]
    P = clf.predict_proba([{"poster": path, "plot": plot}])[0]
    want = dict(sorted(zip(clf.genres_, P.tolist()), key=lambda x: -x[1]))
    assert list(out["scores"]) == list(want) and out["scores"] == pytest.approx(want, abs=5e-5)  # 4 places or more
    assert list(out["scores"].values()) == sorted(out["scores"].values(), reverse=True)
    assert out["genres"] == clf.predict([{"poster": path, "plot": plot}])[0]
    top = clf.predict_one(poster=path, plot=plot, top_k=3)["genres"]
    assert top == list(out["scores"])[:3]  # the 3 most probable, thresholds or not
    assert clf.predict_one(plot=plot, threshold=0.0)["genres"] == list(clf.predict_one(plot=plot)["scores"])
    assert clf.predict_one(plot=plot, threshold=1.0)["genres"] == []
    assert clf.predict_one(poster=path.read_bytes())["used"] == ["poster"]
    assert clf.predict_one(plot=plot)["used"] == ["plot"]


@pytest.mark.parametrize("call, needle", [
    (lambda c: c.predict_one(plot="   \n"), "give a poster, a plot, or both"),
    (lambda c: c.predict_proba([{"plot": "A plot."}, {"poster": None, "plot": " "}]), "title 1: neither"),
    (lambda c: c.predict_proba([{"plot": 42}]), "title 0: plot must be text"),
    (lambda c: c.predict_proba([42]), "title 0: expected"),
    (lambda c: c.predict_proba([{"poster": b"not an image", "plot": "x"}]), "poster #0"),
    (lambda c: c.predict_one(plot="x", top_k=0), "top_k"),
    (lambda c: c.predict_one(plot="x", threshold=1.5), "threshold"),
    (lambda c: c.predict_one(plot="x", threshold=float("nan")), "threshold"),
    (lambda c: c.predict_one(plot="x", threshold=True), "threshold"),
    (lambda c: c.predict_one(plot="x", top_k=np.int64(0)), "top_k"),
])
def test_bad_input_is_one_line_bad_input(clf, call, needle):
    with pytest.raises(BadInput) as err:
        call(clf)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_numpy_numbers_are_accepted_as_overrides(clf):
    want = clf.predict_one(plot="A plot.", top_k=2, threshold=0.25)
    assert clf.predict_one(plot="A plot.", top_k=np.int64(2), threshold=np.float32(0.25)) == want


def test_missing_poster_file_names_it(clf, tmp_path):
    with pytest.raises(BadInput, match="nothere.jpg"):
        clf.predict_proba([{"poster": tmp_path / "nothere.jpg", "plot": "A plot."}])


def test_prediction_writes_nothing(tiny_run, titles, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("GENREFUSION_CACHE", str(cache))
    before = sorted(p.name for p in tiny_run.rglob("*"))
    c = GenreClassifier.load(tiny_run)
    c.predict_proba([{"poster": p, "plot": t} for p, t in titles])
    assert not cache.exists() or not any(cache.rglob("*.npy")) and not any(cache.rglob("*.json"))
    assert sorted(p.name for p in tiny_run.rglob("*")) == before
    assert set(c.encoders_) and c.encoders_ is c.encoders_  # built once, kept on the instance
    enc = dict(c.encoders_)
    c.predict_proba([{"plot": titles[0][1]}])
    assert all(c.encoders_[k] is v for k, v in enc.items())


def test_save_and_load_round_trip(clf, titles, tmp_path):
    inputs = [{"poster": p, "plot": t} for p, t in titles]
    dest = clf.save(tmp_path / "saved")
    assert (dest / "metrics.json").is_file() and (dest / "weights.safetensors").is_file()
    back = GenreClassifier.load(dest)
    np.testing.assert_allclose(back.predict_proba(inputs), clf.predict_proba(inputs), atol=1e-6)
    assert back.metrics_ is not None and back.genres_ == clf.genres_
    with pytest.raises(GenreFusionError, match="already exists"):
        clf.save(dest)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".saved")]  # no temp folder left


def test_pickle_and_deepcopy_round_trip(clf, titles):
    import copy
    import pickle

    inputs = [{"poster": p, "plot": t} for p, t in titles]
    want = clf.predict_proba(inputs)  # encoders built, lock in use: neither travels in the pickle
    back = pickle.loads(pickle.dumps(clf))
    assert back.encoders_ == {} and back.genres_ == clf.genres_ and back.model_name_ == clf.model_name_
    np.testing.assert_allclose(back.predict_proba(inputs), want, atol=1e-6)
    assert back._lock is not clf._lock
    np.testing.assert_allclose(copy.deepcopy(clf).predict_proba(inputs[:1]), want[:1], atol=1e-6)
    assert clf.encoders_  # the original keeps its encoders
    assert pickle.loads(pickle.dumps(GenreClassifier(model="plot"))).get_params()["model"] == "plot"


def test_estimator_params_and_classes(clf):
    from sklearn.base import clone

    assert clf.classes_ == clf.genres_
    assert clf.get_params() == {"config": None, "model": None, "text_runtime": None, "image_weights": None}
    fresh = clone(GenreClassifier(model="poster", text_runtime="torch"))
    assert fresh.get_params() == {"config": None, "model": "poster", "text_runtime": "torch", "image_weights": None}
    assert not hasattr(fresh, "bundle_") and repr(fresh) == "GenreClassifier(unfitted)"
    assert fresh.set_params(model="plot") is fresh and fresh.model == "plot"
    with pytest.raises(ValueError, match="no parameter 'colour'"):
        fresh.set_params(colour="red")


def test_damaged_bundle_and_unfitted(tiny_run, tmp_path):
    with pytest.raises(GenreFusionError, match="not trained"):
        GenreClassifier().predict_proba([{"plot": "x"}])
    with pytest.raises(BundleError, match="no such run"):
        GenreClassifier.load(tmp_path / "absent")
    bad = tmp_path / "bad"
    shutil.copytree(tiny_run / "model", bad)
    w = bad / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(BundleError):
        GenreClassifier.load(bad)


def test_info_for_the_model_endpoint(clf):
    info = clf.info()
    assert info["model"] == "fused" and info["genres"] == clf.genres_
    assert set(info["thresholds"]) == set(clf.genres_)
    assert info["encoders"]["image"] and info["encoders"]["text"] in ("minilm", "lstm")
    tm = info["test_metrics"]
    assert {"fused", "poster", "plot", "always_negative", "tfidf_logreg"} <= set(tm)
    assert tm["always_negative"]["micro_f1"] == 0.0 and 0 <= tm["fused"]["mAP"] <= 1
    assert info["thresholds_tuned_on"].endswith("dev titles")  # the web page says what the thresholds rest on
    json.dumps(info)  # served as JSON as is


def test_fit_trains_and_loads(tiny_run_data, tiny_run_cache, tiny_run, tmp_path, monkeypatch):
    """fit() runs the training (a poster-only model on the warm tiny_run cache: seconds) and loads it."""
    from genrefusion.config import load_config

    from conftest import TINY_RUN_OVERRIDES

    monkeypatch.setenv("GENREFUSION_CACHE", str(tiny_run_cache))
    cfg = load_config(overrides={**TINY_RUN_OVERRIDES, "train.epochs": 2})
    c = GenreClassifier(cfg).fit(tiny_run_data, out=tmp_path / "run", progress=False, models=["poster"])
    assert c.model_name_ == "poster" and c.genres_ == GenreClassifier.load(tiny_run).genres_
    assert (tmp_path / "run" / "metrics.json").is_file()
    P = c.predict_proba([{"poster": next((tiny_run_data[0] / "posters").iterdir())}])
    assert P.shape == (1, len(c.genres_))
