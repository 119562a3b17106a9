"""ONNX export: the written graph under onnxruntime matches the PyTorch predict path within 1e-4."""
from __future__ import annotations

import json

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    from genrefusion.cli import main

    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert main(["export", str(tiny_run), "--format", "onnx", "--out", str(out)]) == 0
    return out


def test_export_writes_graph_and_sidecar(exported, tiny_run):
    from genrefusion.predict import GenreClassifier

    clf = GenreClassifier.load(tiny_run)
    side = json.loads(exported.with_name("model.onnx.json").read_text())
    assert side["genres"] == list(clf.genres_)
    np.testing.assert_allclose(side["thresholds"], clf.thresholds_, atol=1e-6)
    for name, thr in clf.threshold_sets_.sets.items():  # per input combination, as the API picks them
        np.testing.assert_allclose(side["threshold_sets"][name], thr, atol=1e-6)
    assert side["model"] == clf.model_name_
    sess = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    assert names == list(side["inputs"])
    if "image" in side["inputs"]:
        assert side["inputs"]["image"]["shape"][1:] == [3, 224, 224]
        assert side["inputs"]["image"]["preprocess"]["center_crop"] == 224
    assert sess.get_outputs()[0].name == "probs"
    # nothing but the two outputs in the folder: the writes went through temp files + rename
    assert sorted(p.name for p in exported.parent.iterdir()) == ["model.onnx", "model.onnx.json"]


def test_onnxruntime_matches_torch_on_shipped_titles(exported, tiny_run, shipped_subset):
    from genrefusion.export import onnx_inputs
    from genrefusion.predict import GenreClassifier

    ds = shipped_subset("imdb_top250", n=6)
    recs = [json.loads(line) for line in (ds / "titles.jsonl").read_text(encoding="utf-8").splitlines()]
    titles = [{"poster": ds / r["poster"], "plot": r["plot"]} for r in recs]
    titles[1]["plot"] = None     # poster only
    titles[2]["poster"] = None   # plot only
    clf = GenreClassifier.load(tiny_run)
    want = clf.predict_proba(titles)
    sess = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    got = sess.run(["probs"], onnx_inputs(clf, titles))[0]
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-4
    # the decision rule in the sidecar reproduces predict's genres
    side = json.loads(exported.with_name("model.onnx.json").read_text())
    for title, row_onnx, genres in zip(titles, got, clf.predict(titles)):
        has = "both" if title["poster"] and title["plot"] else "poster" if title["poster"] else "plot"
        thr = side["threshold_sets"].get(has, side["thresholds"])  # the set of the title's inputs, else pooled
        assert {g for g, p, t in zip(side["genres"], row_onnx, thr) if p >= t} == set(genres)


def test_export_errors(tiny_run, tmp_path, capsys):
    from genrefusion.cli import main

    assert main(["export", str(tiny_run), "--out", str(tmp_path / "model.bin")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "nope" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
