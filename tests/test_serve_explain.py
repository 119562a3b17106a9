"""POST /explain: the same answer as GenreClassifier.explain, in the OpenAPI docs, and one-line 4xx errors."""
from __future__ import annotations

import base64
import io
import json

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402


@pytest.fixture(scope="module")
def app(tiny_run):
    from genrefusion.serve.app import create_app

    return create_app(tiny_run)


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app)


@pytest.fixture(scope="module")
def title(shipped):
    ds = shipped / "imdb_top250"
    rec = json.loads((ds / "titles.jsonl").read_text(encoding="utf-8").splitlines()[2])
    return ds / rec["poster"], rec["plot"]


def test_explain_matches_the_python_api(client, app, title):
    from PIL import Image

    path, plot = title
    clf = app.state.classifier
    g = [clf.genres_[0], clf.genres_[3]]
    r = client.post("/explain", files={"poster": (path.name, path.read_bytes(), "image/jpeg")},
                    data={"plot": plot, "genre": g, "top_words": "3"})
    assert r.status_code == 200, r.text
    got = r.json()
    want = clf.explain(poster=Image.open(path), plot=plot, genres=g, top_words=3)
    assert [e["genre"] for e in got["genres"]] == g and got["used"] == ["poster", "plot"]
    for a, b in zip(got["genres"], want["genres"]):
        assert {k: a[k] for k in ("score", "poster_only", "plot_only", "top_words", "word_weights", "poster_grid")} \
            == {k: b[k] for k in ("score", "poster_only", "plot_only", "top_words", "word_weights", "poster_grid")}
        assert len(a["top_words"]) <= 3
        assert Image.open(io.BytesIO(base64.b64decode(a["overlay_png"]))).format == "PNG"
    assert got["plot"] == want["plot"] and got["poster"] == want["poster"]
    # plot only, no overlays asked: the predicted genres (else the top 3)
    r = client.post("/explain", data={"plot": plot, "overlays": "false"})
    assert r.status_code == 200 and r.json()["poster"] is None
    assert all(e["overlay_png"] is None and e["poster_only"] is None for e in r.json()["genres"])


def test_explain_is_documented(client):
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/explain"]["post"]
    assert "200" in op["responses"] and "400" in op["responses"]
    assert "ExplainOut" in json.dumps(op["responses"]["200"])
    assert "ExplainGenre" in spec["components"]["schemas"]


@pytest.mark.parametrize("kw, status, needle", [
    ({"data": {"plot": "A plot.", "genre": "Nope"}}, 400, "genre 'Nope': not a genre of this model"),
    ({"data": {"plot": "   "}}, 400, "give a poster"),
    ({"files": {"poster": ("x.jpg", b"not an image", "image/jpeg")}}, 400, "poster 'x.jpg': not an image"),
    ({"data": {"plot": "..."}}, 400, "plot: no words to explain"),
    ({"data": {"plot": "x" * 20_001}}, 413, "20,001 characters"),
    ({"data": {"plot": "A plot.", "top_k": "0"}}, 400, "top_k"),
    ({"data": {"plot": "A plot.", "top_words": "-1"}}, 422, "top_words"),
])
def test_explain_bad_input_is_one_json_line(client, kw, status, needle):
    r = client.post("/explain", **kw)
    assert r.status_code == status, r.text
    body = r.json()
    assert needle in body["error"] and body["status"] == status and "\n" not in body["error"]
