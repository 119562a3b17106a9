"""REST API: /predict, /predict/batch, /explain, /health, /model; limits; 200 malformed requests through uvicorn;
non-UTF-8 text and repeated form fields; one log entry per bug; the Host check."""
from __future__ import annotations

import base64
import io
import json
import random
import struct
import zlib

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from fastapi.testclient import TestClient  # noqa: E402

PLOT = "A haunted spaceship drifts toward a cursed planet while the crew fight an alien demon."


def jpeg_bytes(size=(40, 60), color=(200, 40, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def png_bomb(w=10_000, h=10_000) -> bytes:
    """A valid PNG header announcing w x h pixels with almost no data: a decompression-bomb shape."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def app(tiny_run):
    from genrefusion.serve.app import create_app

    return create_app(tiny_run)


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app)


def test_health_and_model(client, app):
    h = client.get("/health")
    assert h.status_code == 200 and h.json()["status"] == "ok"
    m = client.get("/model").json()
    clf = app.state.classifier
    assert m["genres"] == list(clf.genres_)
    assert m["thresholds"] == {g: round(float(t), 4) for g, t in zip(clf.genres_, clf.thresholds_)}
    assert m["limits"]["poster_bytes"] == 10 * 1024 * 1024 and m["limits"]["plot_chars"] == 20_000
    assert m["limits"]["batch_titles"] == 64
    assert set(m["encoders"]) == {"image", "text"}
    if m["test_metrics"] is not None:  # the run's test metrics are shown beside the always-negative baseline
        assert "always_negative" in m["test_metrics"]


def test_predict_matches_python_api(client, app):
    poster = jpeg_bytes(color=(30, 200, 220))
    r = client.post("/predict", files={"poster": ("p.jpg", poster, "image/jpeg")}, data={"plot": PLOT})
    assert r.status_code == 200, r.text
    got = r.json()
    want = app.state.classifier.predict_one(poster=poster, plot=PLOT)
    assert got == want
    assert got["used"] == ["poster", "plot"]
    assert list(got["scores"]) == sorted(got["scores"], key=lambda g: -got["scores"][g])  # most probable first

    only_plot = client.post("/predict", data={"plot": PLOT, "top_k": "2"}).json()
    assert only_plot["used"] == ["plot"] and len(only_plot["genres"]) == 2
    assert only_plot == app.state.classifier.predict_one(plot=PLOT, top_k=2)
    only_poster = client.post("/predict", files={"poster": ("p.jpg", poster, "image/jpeg")},
                              data={"threshold": "0"}).json()
    assert only_poster["used"] == ["poster"] and len(only_poster["genres"]) == len(app.state.classifier.genres_)


def test_browser_form_without_file_counts_as_no_poster(client):
    r = client.post("/predict", files={"poster": ("", b"", "application/octet-stream")}, data={"plot": PLOT})
    assert r.status_code == 200 and r.json()["used"] == ["plot"]


def test_batch_matches_predict_proba(client, app):
    clf = app.state.classifier
    posters = [jpeg_bytes(color=c) for c in [(220, 40, 30), (250, 220, 40), (20, 20, 20)]]
    body = [{"plot": PLOT, "poster_base64": base64.b64encode(posters[0]).decode(), "id": "a"},
            {"plot": "Hilarious mishaps at an awkward wedding."},
            {"poster_base64": "data:image/jpeg;base64," + base64.b64encode(posters[2]).decode()}]
    r = client.post("/predict/batch", json=body)
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["index"] for x in res] == [0, 1, 2] and res[0]["id"] == "a" and res[1]["id"] == "1"
    assert [x["used"] for x in res] == [["poster", "plot"], ["plot"], ["poster"]]
    probs = clf.predict_proba([{"poster": posters[0], "plot": PLOT},
                               {"poster": None, "plot": "Hilarious mishaps at an awkward wedding."},
                               {"poster": posters[2], "plot": None}])
    for x, p in zip(res, probs):
        assert x["error"] is None
        np.testing.assert_allclose([x["scores"][g] for g in clf.genres_], p, atol=6e-5)
        assert x["genres"] == clf.decide(p, used=[x["used"]])[0]  # each title's inputs pick its threshold set
        assert x["threshold_set"] == clf.thresholds_for(x["used"])[1]


@pytest.mark.parametrize("query", ["", "?threshold=0.3&top_k=2"])
def test_a_batch_result_shows_what_predict_shows(client, app, query):
    """Each result's scores and thresholds are /predict's figures for that title: the thresholds its decision used
    (the override, when given), a score never printed equal to its threshold."""
    clf = app.state.classifier
    poster = jpeg_bytes(color=(90, 30, 160))
    body = [{"plot": PLOT, "poster_base64": base64.b64encode(poster).decode()}, {"plot": PLOT}]
    r = client.post("/predict/batch" + query, json=body)
    assert r.status_code == 200, r.text
    kw = {"threshold": 0.3, "top_k": 2} if query else {}
    for got, title in zip(r.json()["results"], [{"poster": poster, "plot": PLOT}, {"plot": PLOT}]):
        del got["index"], got["id"], got["error"]
        assert got == clf.predict_one(**title, **kw)


def test_batch_keeps_each_poster_as_the_backbones_small_input(client, app, monkeypatch):
    import torch
    from PIL import Image

    clf, seen = app.state.classifier, []
    real = clf.predict_proba

    def spy(titles, *a, **kw):
        titles = list(titles)
        seen.extend(t["poster"] for t in titles)
        return real(titles, *a, **kw)

    monkeypatch.setattr(clf, "predict_proba", spy)
    buf = io.BytesIO()
    Image.new("RGB", (2000, 3000), (20, 20, 20)).save(buf, format="PNG")  # 18 MB decoded, a few KB sent
    r = client.post("/predict/batch", json=[{"poster_base64": base64.b64encode(buf.getvalue()).decode()}] * 3)
    assert r.status_code == 200, r.text
    # the full-size image is not held until inference: each title keeps only its [3, S, S] tensor
    assert len(seen) == 3 and all(isinstance(x, torch.Tensor) and x.shape[0] == 3 and x.shape[1] == x.shape[2]
                                  and x.shape[1] <= 300 for x in seen)


def test_batch_bad_title_rejects_or_reports(client):
    body = [{"plot": PLOT}, {"poster_base64": base64.b64encode(b"not an image").decode()}]
    r = client.post("/predict/batch", json=body)
    assert r.status_code == 400 and "titles[1].poster_base64" in r.json()["error"]
    assert "?partial=true" in r.json()["error"]  # the refusal says how to keep the good titles
    r = client.post("/predict/batch?partial=true", json=body)
    assert r.status_code == 200
    a, b = r.json()["results"]
    assert a["error"] is None and a["genres"] is not None
    assert b["genres"] is None and "not an image" in b["error"]


def test_limits(client):
    big = b"\xff\xd8" + b"\0" * (10 * 1024 * 1024)  # 10 MB + 2 bytes
    r = client.post("/predict", files={"poster": ("big.jpg", big, "image/jpeg")})
    assert r.status_code == 413 and "too large" in r.json()["error"]
    r = client.post("/predict", files={"poster": ("bomb.png", png_bomb(), "image/png")})
    assert r.status_code == 400 and "bomb.png" in r.json()["error"] and "too large" in r.json()["error"]
    r = client.post("/predict", data={"plot": "x" * 20_001})
    assert r.status_code == 413 and "20,000" in r.json()["error"]
    r = client.post("/predict", data={"plot": "word " * 4000})  # exactly 20,000 characters is allowed
    assert r.status_code == 200
    r = client.post("/predict/batch", json=[{"plot": PLOT}] * 65)
    assert r.status_code == 413 and "64" in r.json()["error"]
    b64 = base64.b64encode(png_bomb(8000, 8000)).decode()
    r = client.post("/predict/batch", json=[{"poster_base64": b64}])
    assert r.status_code == 400 and "titles[0]" in r.json()["error"]


def test_a_json_object_on_the_batch_endpoint_is_told_to_send_a_list(client):
    r = client.post("/predict/batch", json={"titles": [{"plot": PLOT}]})  # a common guess at the shape
    assert r.status_code == 422
    assert "JSON list of titles" in r.json()["error"] and "\n" not in r.json()["error"]
    r = client.post("/predict/batch", json=[{"plot": PLOT}, {"id": "b"}])  # a title with nothing to read
    assert r.status_code == 400 and "titles[1]" in r.json()["error"] and "?partial=true" in r.json()["error"]


@pytest.mark.parametrize("body, ctype, needle", [
    (b'[{"plot": "x"}, {"plot": ]', "application/json", "body: invalid JSON at character 25 (Expecting value)"),
    (b'[{"plot": "a plot"}]', "text/plain", "sent as text/plain, so it was not read as JSON; send it with "
                                            "Content-Type: application/json"),
    (b'[{"plot": "a plot"}]', None, "sent as no content type"),
])
def test_batch_malformed_json_and_content_type_are_named(client, body, ctype, needle):
    r = client.post("/predict/batch", content=body, headers={"content-type": ctype} if ctype else {})
    assert r.status_code == 422 and needle in r.json()["error"] and "titles[" not in r.json()["error"], r.text


@pytest.mark.parametrize("path", ["/predict", "/explain"])
def test_a_json_body_on_a_form_endpoint_is_pointed_to_the_batch_endpoint(client, path):
    r = client.post(path, json={"plot": PLOT})  # a form endpoint sees no field at all in a JSON body
    body = r.json()
    assert r.status_code == 400 and "\n" not in body["error"], r.text
    assert f"{path} reads a form" in body["error"] and "/predict/batch" in body["error"]
    # the same endpoint still takes the form, and /predict/batch the JSON
    assert client.post(path, data={"plot": PLOT}).status_code == 200
    assert client.post("/predict/batch", json=[{"plot": PLOT}]).status_code == 200


def test_static_page_and_docs(client):
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"] and 'id="bars"' in r.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/predict/batch", "/health", "/model"} <= set(spec["paths"])


# -- 200 malformed requests through a real uvicorn server ---------------------------------------------------
def malformed_requests(rng: random.Random) -> list[tuple[str, str, dict]]:
    """(method, path, httpx kwargs) for 200 malformed requests of ~30 kinds."""
    good = jpeg_bytes()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    kinds = [
        lambda: ("POST", "/predict", {}),  # empty body
        lambda: ("POST", "/predict", {"data": {"plot": " " * rng.randint(0, 50)}}),  # blank plot only
        lambda: ("POST", "/predict", {"data": {"plot": "x" * rng.randint(20_001, 30_000)}}),
        lambda: ("POST", "/predict", {"files": {"poster": ("r.jpg", rng.randbytes(rng.randint(1, 5000)), "image/jpeg")}}),
        lambda: ("POST", "/predict", {"files": {"poster": ("t.jpg", good[: rng.randint(10, len(good) - 10)], "image/jpeg")},
                                      "data": {"plot": "ok"}}),
        lambda: ("POST", "/predict", {"files": {"poster": ("zero.jpg", b"", "image/jpeg")}}),
        lambda: ("POST", "/predict", {"files": {"poster": ("bomb.png", png_bomb(rng.randint(7000, 30000), 7000), "image/png")}}),
        lambda: ("POST", "/predict", {"files": {"poster": ("text.png", b"hello, I am text\n" * 10, "image/png")}}),
        lambda: ("POST", "/predict", {"data": {"plot": "ok", "top_k": rng.choice(["abc", "0", "-3", "1.5", ""])}}),
        lambda: ("POST", "/predict", {"data": {"plot": "ok", "threshold": rng.choice(["2", "-0.1", "nan", "high"])}}),
        lambda: ("POST", "/predict", {"data": {"poster": "I am a string, not a file"}}),
        lambda: ("POST", "/predict", {"content": rng.randbytes(200),
                                      "headers": {"content-type": "multipart/form-data; boundary=xyz"}}),
        lambda: ("POST", "/predict", {"content": b"--xyz\r\nContent-Disposition: form-data; name=\"plot\"\r\n\r\nunterminated",
                                      "headers": {"content-type": "multipart/form-data; boundary=xyz"}}),
        lambda: ("POST", "/predict", {"json": {"plot": PLOT}}),
        lambda: ("POST", "/predict", {"content": b"\x00" * (10 * 1024 * 1024 + rng.randint(1, 1000)),
                                      "headers": {"content-type": "application/octet-stream"}}),
        lambda: ("POST", "/predict/batch", {}),
        lambda: ("POST", "/predict/batch", {"content": b"[{\"plot\": ", "headers": {"content-type": "application/json"}}),
        lambda: ("POST", "/predict/batch", {"content": rng.randbytes(64), "headers": {"content-type": "application/json"}}),
        lambda: ("POST", "/predict/batch", {"json": rng.choice([{}, "x", 5, None, {"plot": "a"}, [1, 2], ["a"]])}),
        lambda: ("POST", "/predict/batch", {"json": []}),
        lambda: ("POST", "/predict/batch", {"json": [{"plot": "x"}] * rng.randint(65, 200)}),
        lambda: ("POST", "/predict/batch", {"json": [{"plot": rng.choice([1, 2.5, True, ["a"], {"a": 1}])}]}),
        lambda: ("POST", "/predict/batch", {"json": [{"plot": "ok", "poster": "p.jpg"}]}),  # unknown field
        lambda: ("POST", "/predict/batch", {"json": [{"poster_base64": rng.choice(["!!!", "abc", "%%%%", "a=b="])}]}),
        lambda: ("POST", "/predict/batch", {"json": [{"poster_base64": b64(rng.randbytes(300))}]}),
        lambda: ("POST", "/predict/batch", {"json": [{"poster_base64": b64(png_bomb())}]}),
        lambda: ("POST", "/predict/batch", {"json": [{"plot": "ok"}, {}]}),
        lambda: ("POST", "/predict/batch", {"json": [{"plot": "y" * 20_001}]}),
        lambda: ("POST", "/predict/batch", {"json": [{"poster_base64": "A" * (14 * 1024 * 1024)}]}),
        lambda: ("POST", f"/predict/batch?{rng.choice(['partial=maybe', 'top_k=0', 'threshold=7'])}", {"json": [{"plot": "ok"}]}),
        lambda: ("GET", "/predict", {}),
        lambda: ("DELETE", "/model", {}),
        lambda: ("GET", "/no/such/page", {}),
    ]
    reqs = [k() for k in kinds]  # every kind at least once
    reqs += [rng.choice(kinds)() for _ in range(200 - len(reqs))]
    return reqs


@pytest.mark.slow
def test_200_malformed_requests_get_4xx_and_server_survives(tiny_run):
    import httpx

    from genrefusion.serve.app import create_app
    from genrefusion.serve.server import BackgroundServer

    reqs = malformed_requests(random.Random(5))
    assert len(reqs) == 200
    with BackgroundServer(create_app(tiny_run)) as srv, httpx.Client(base_url=srv.url, timeout=60) as http:
        # one oversized batch body (> 64 MB) as well: refused before any JSON parsing
        huge = http.post("/predict/batch", content=b"[" + b" " * (65 * 1024 * 1024) + b"]",
                         headers={"content-type": "application/json"})
        assert huge.status_code == 413
        bad = []
        for method, path, kw in reqs:
            r = http.request(method, path, **kw)
            body = r.json()
            if not (400 <= r.status_code < 500 and isinstance(body.get("error"), str) and body["error"]):
                bad.append((method, path, r.status_code, r.text[:200]))
        assert not bad, bad
        assert http.get("/health").json()["status"] == "ok"
        ok = http.post("/predict", data={"plot": PLOT})  # and it still predicts
        assert ok.status_code == 200 and ok.json()["used"] == ["plot"]


def test_server_connections_disable_nagle():
    """Keep-alive clients (browsers, httpx) waited ~40 ms per request when the pre-bound socket had proto 0:
    asyncio then skips TCP_NODELAY on accepted connections. Checked on the server's own connection sockets."""
    import socket

    import httpx
    from fastapi import FastAPI

    from genrefusion.serve.server import BackgroundServer

    tiny = FastAPI()
    tiny.get("/ping")(lambda: {"ok": True})
    with BackgroundServer(tiny) as srv, httpx.Client(base_url=srv.url, timeout=30) as http:
        assert http.get("/ping").json() == {"ok": True}
        conns = list(srv.server.server_state.connections)
        assert conns, "no open keep-alive connection to inspect"
        for proto in conns:
            sock = proto.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


# -- API key and HTTP conformance --------------------------------------------------------------------------
API_KEY = "serve-test-key-0123456789"


@pytest.fixture(scope="module")
def keyed(app):
    from genrefusion.serve.app import create_app

    return TestClient(create_app(app.state.classifier, api_key=API_KEY))


def test_api_key_required_except_health_page_and_docs(keyed):
    for method, path, kw in [("POST", "/predict", {"data": {"plot": PLOT}}), ("GET", "/model", {}),
                             ("POST", "/predict/batch", {"json": [{"plot": PLOT}]}), ("GET", "/no/such", {})]:
        r = keyed.request(method, path, **kw)
        assert r.status_code == 401 and r.json() == {"error": "missing API key: send it in the X-API-Key header "
                                                              "(or Authorization: Bearer KEY)", "status": 401}
        assert r.headers["www-authenticate"].startswith("Bearer")
        wrong = keyed.request(method, path, headers={"X-API-Key": API_KEY[:-1] + "x"}, **kw)
        assert wrong.status_code == 401 and wrong.json()["error"].startswith("wrong API key")
    assert keyed.post("/predict", data={"plot": PLOT}, headers={"X-API-Key": API_KEY}).status_code == 200
    assert keyed.get("/model", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200
    for path in ("/health", "/", "/static/app.js", "/docs", "/openapi.json"):
        assert keyed.get(path).status_code == 200, path  # probes, the page (it asks for the key) and the docs


def test_api_key_too_short_is_refused_at_start(app):
    from genrefusion.errors import ConfigError
    from genrefusion.serve.app import create_app

    with pytest.raises(ConfigError, match="API key too short"):
        create_app(app.state.classifier, api_key="secret")


def test_a_request_without_the_key_is_refused_before_its_body_is_buffered(app):
    from genrefusion.serve.app import create_app

    keyed = TestClient(create_app(app.state.classifier, api_key=API_KEY, max_batch_body=1000))
    body = json.dumps([{"plot": "x" * 5000}])
    r = keyed.post("/predict/batch", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 401, r.text  # the key is checked first: no 413, so no body was held for the limit
    r = keyed.post("/predict/batch", content=body, headers={"Content-Type": "application/json", "X-API-Key": API_KEY})
    assert r.status_code == 413  # with the key, the body limit applies as before


def test_a_refused_body_is_read_but_not_stored():
    import asyncio

    from genrefusion.serve.auth import ApiKeyGuard

    async def inner(scope, receive, send):
        raise AssertionError("the guarded app must not run")

    chunks = [{"type": "http.request", "body": b"x" * 1000, "more_body": i < 9} for i in range(10)]
    sent = []

    async def receive():
        return chunks.pop(0)

    async def send(msg):
        sent.append(msg)

    guard = ApiKeyGuard(inner, API_KEY, drain=5000)
    asyncio.run(guard({"type": "http", "path": "/predict", "headers": []}, receive, send))
    assert sent[0]["status"] == 401 and (b"connection", b"close") in sent[0]["headers"]  # over the drain cap
    assert len(chunks) == 4  # reading stopped past the cap: the rest was never read


@pytest.mark.parametrize("headers", [[("X-API-Key", API_KEY), ("Authorization", "Bearer wrong-key-0123456789")],
                                     [("Authorization", "Bearer wrong-key-0123456789"), ("X-API-Key", API_KEY)],
                                     [("X-API-Key", API_KEY), ("X-API-Key", "wrong-key-0123456789")]])
def test_every_key_header_sent_must_hold_the_key(keyed, headers):
    r = keyed.get("/model", headers=headers)
    assert r.status_code == 401 and r.json()["error"].startswith("wrong API key")
    assert keyed.get("/model", headers=[("X-API-Key", API_KEY), ("Authorization", f"Bearer {API_KEY}")]).status_code == 200


@pytest.mark.parametrize("argv, env, needle", [
    ([], "", "error: $GENREFUSION_API_KEY is set but empty: set it to a key, or unset it to serve without one"),
    (["--api-key", ""], None, "error: API key too short (0 characters"),
])
def test_serve_refuses_an_empty_api_key(tmp_path, monkeypatch, capsys, argv, env, needle):
    from genrefusion.cli import main

    if env is None:
        monkeypatch.delenv("GENREFUSION_API_KEY", raising=False)
    else:
        monkeypatch.setenv("GENREFUSION_API_KEY", env)
    assert main(["serve", str(tmp_path / "no-such-run"), "--port", "0", *argv]) == 2  # before loading the model
    assert capsys.readouterr().err.startswith(needle)


def test_405_names_the_allowed_methods(client):
    # RFC 9110 15.5.6: a 405 carries Allow (the JSON error handler used to drop it)
    for method, path, allow in [("DELETE", "/health", "GET"), ("PUT", "/predict", "POST"), ("GET", "/predict/batch", "POST")]:
        r = client.request(method, path)
        assert r.status_code == 405 and r.headers["allow"] == allow and r.json()["status"] == 405


# -- POST /explain ---------------------------------------------------------------------------------------------
def test_explain_matches_the_python_api(client, app, shipped):
    from PIL import Image

    ds = shipped / "imdb_top250"
    rec = json.loads((ds / "titles.jsonl").read_text(encoding="utf-8").splitlines()[2])
    path, plot = ds / rec["poster"], rec["plot"]
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
    body = spec["components"]["schemas"][op["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
                                         .rsplit("/", 1)[-1]]
    assert [b["required"] for b in body["anyOf"]] == [["poster"], ["plot"]]  # at least one input, as for /predict
    assert body["properties"]["genre"]["items"]["enum"] == list(client.app.state.classifier.genres_)
    assert body["properties"]["top_k"]["minimum"] == 1


@pytest.mark.parametrize("kw, status, needle", [
    ({"data": {"plot": "A plot.", "genre": "Nope"}}, 400, "genre 'Nope': not a genre of this model"),
    ({"data": {"plot": "   "}}, 400, "give a poster"),
    ({"files": {"poster": ("x.jpg", b"not an image", "image/jpeg")}}, 400, "poster 'x.jpg': not an image"),
    ({"data": {"plot": "x" * 20_001}}, 413, "20,001 characters"),
    ({"data": {"plot": "A plot.", "top_k": "0"}}, 400, "top_k"),
    ({"data": {"plot": "A plot.", "threshold": "1.5"}}, 400, "threshold: must be a number between 0 and 1"),
    ({"data": {"plot": "A plot.", "threshold": "nan"}}, 400, "threshold"),
    ({"data": {"plot": "A plot.", "top_words": "-1"}}, 422, "top_words"),
])
def test_explain_bad_input_is_one_json_line(client, kw, status, needle):
    r = client.post("/explain", **kw)
    assert r.status_code == status, r.text
    body = r.json()
    assert needle in body["error"] and body["status"] == status and "\n" not in body["error"]


# -- what starlette's parsers would misread without a word: 422 naming the field ----------------------------
def multipart(*parts: tuple[str, bytes, str | None], boundary: str = "xyz") -> dict:
    """httpx kwargs for a hand-made multipart body: (name, bytes, filename or None for a text field) parts."""
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'.encode()
                    + (f'; filename="{fn}"'.encode() if fn is not None else b"") + b"\r\n\r\n" + data + b"\r\n"
                    for name, data, fn in parts) + f"--{boundary}--\r\n".encode()
    return {"content": body, "headers": {"content-type": f"multipart/form-data; boundary={boundary}"}}


@pytest.mark.parametrize("path", ["/predict", "/explain"])
def test_form_text_that_is_not_utf8_is_refused_not_read_as_latin1(client, path):
    r = client.post(path, **multipart(("plot", "Une comédie".encode("latin-1"), None)))
    assert r.status_code == 422 and r.json() == {"error": "plot: not UTF-8 text (byte 7); send form text as UTF-8",
                                                 "status": 422}
    r = client.post(path, content=b"plot=Une+com%E9die", headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 422 and r.json()["error"].startswith("plot: not UTF-8 text")
    assert client.post(path, **multipart(("plot", "Une comédie".encode(), None))).status_code == 200  # UTF-8 is fine


def test_raw_utf8_in_a_urlencoded_form_is_read_as_utf8(client):
    # curl -d 'plot=Une comédie' sends the bytes unescaped; starlette read them as latin-1 ("comÃ©die")
    r = client.post("/explain", content="plot=Une comédie&overlays=false".encode(),
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.json()["plot"]["text"] == "Une comédie"


def test_a_batch_that_is_not_utf8_names_the_title(client):
    body = '[{"plot": "ok"}, {"id": "b", "plot": "Une comédie"}]'.encode("latin-1")
    for query in ("", "?partial=true"):  # not JSON text at all (RFC 8259: UTF-8), so partial cannot keep the rest
        r = client.post("/predict/batch" + query, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["error"] == ("titles[1].plot: not UTF-8 text (byte 45 of the body); "
                                                              "send the JSON as UTF-8"), r.text
    r = client.post("/predict/batch", content=b'[{"plot": "ok"}]\xff', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "body: not UTF-8 text (byte 16); send the JSON as UTF-8"
    utf16 = '[{"plot": "Une comédie"}]'.encode("utf-16")  # a JSON encoding json.loads detects is still read
    assert client.post("/predict/batch", content=utf16, headers={"content-type": "application/json"}).status_code == 200


@pytest.mark.parametrize("path, kw, field", [
    ("/predict", multipart(("plot", b"one", None), ("plot", b"two", None)), "plot"),
    ("/predict", multipart(("poster", jpeg_bytes(), "a.jpg"), ("poster", jpeg_bytes(), "b.jpg")), "poster"),
    ("/explain", multipart(("plot", b"a plot", None), ("top_k", b"1", None), ("top_k", b"2", None)), "top_k"),
    ("/predict", {"data": {"plot": ["one", "two"]}}, "plot"),  # urlencoded
])
def test_a_repeated_form_field_is_refused_not_last_one_wins(client, path, kw, field):
    r = client.post(path, **kw)
    assert r.status_code == 422 and r.json() == {
        "error": f"{field}: sent 2 times; send it once (several titles: POST /predict/batch)", "status": 422}


def test_an_unknown_field_may_repeat_as_it_is_ignored(client):
    r = client.post("/predict", **multipart(("plot", b"a plot", None), ("note", b"x", None), ("note", b"\xff", None)))
    assert r.status_code == 200, r.text


def test_the_checked_form_fields_are_the_documented_ones(client):
    from genrefusion.serve.app import FORM_FIELDS, FORM_LISTS

    spec = client.get("/openapi.json").json()
    for path, fields in FORM_FIELDS.items():
        ref = spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
        props = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]["properties"]
        assert set(props) == fields, path
        assert {k for k, v in props.items() if v.get("type") == "array"} == FORM_LISTS & fields, path


def test_explain_still_takes_repeated_genres(client, app):
    g = list(app.state.classifier.genres_[:2])
    for kw in ({"data": {"plot": PLOT, "genre": g, "overlays": "false"}},
               multipart(("plot", PLOT.encode(), None), *[("genre", x.encode(), None) for x in g])):
        r = client.post("/explain", **kw)
        assert r.status_code == 200 and [e["genre"] for e in r.json()["genres"]] == g, r.text


# -- a bug: one JSON line to the client, one log entry ----------------------------------------------------------
def test_a_bug_is_logged_once_with_the_request_line(app, monkeypatch):
    import logging

    import httpx

    from genrefusion.serve.app import create_app
    from genrefusion.serve.server import BackgroundServer

    def boom(*a, **kw):
        raise RuntimeError("kaboom")

    class Records(logging.Handler):
        def __init__(self):
            super().__init__(logging.DEBUG)
            self.records = []

        def emit(self, record):
            self.records.append(record)

    monkeypatch.setattr(app.state.classifier, "predict_one", boom)
    seen = Records()
    srv = BackgroundServer(create_app(app.state.classifier))
    # uvicorn's error logger (where "Exception in ASGI application" went) and ours, once uvicorn has set them up
    loggers = [logging.getLogger(n) for n in ("uvicorn.error", "genrefusion.serve")]
    for lg in loggers:
        lg.addHandler(seen)
    try:
        with srv, httpx.Client(base_url=srv.url, timeout=60) as http:
            r = http.post("/predict", data={"plot": PLOT})
            assert r.status_code == 500
            assert r.json() == {"error": "internal error (RuntimeError); see the server log", "status": 500}
            assert http.get("/health").status_code == 200
    finally:
        for lg in loggers:
            lg.removeHandler(seen)
    errors = [x for x in seen.records if x.levelno >= logging.ERROR]
    assert [x.getMessage() for x in errors] == ["internal error on POST /predict: RuntimeError: kaboom"], \
        [x.getMessage() for x in errors]
    assert errors[0].exc_info is not None  # with its traceback


# -- the Host check (DNS rebinding) -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_only(app):
    from genrefusion.serve.app import create_app
    from genrefusion.serve.auth import default_hosts

    return create_app(app.state.classifier, allowed_hosts=default_hosts("127.0.0.1"))


@pytest.mark.parametrize("host", ["localhost:8000", "LOCALHOST", "127.0.0.1:8000", "[::1]:8000", "[::1]"])
def test_a_loopback_server_answers_its_own_names(local_only, host):
    c = TestClient(local_only)
    assert c.get("/health", headers={"host": host}).status_code == 200
    assert c.post("/predict", data={"plot": PLOT}, headers={"host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "localhost.evil.example", "127.0.0.2",
                                  "testserver"])
def test_another_host_gets_a_one_line_400(local_only, host):
    c = TestClient(local_only)
    for r in (c.get("/health", headers={"host": host}), c.post("/predict", data={"plot": PLOT}, headers={"host": host})):
        assert r.status_code == 400 and r.json() == {
            "error": f"Host {host!r} is not a name this server answers to (start it with --allowed-host NAME to "
                     "allow one)", "status": 400}


def test_the_host_check_runs_before_the_key(app):
    from genrefusion.serve.app import create_app

    c = TestClient(create_app(app.state.classifier, api_key=API_KEY, allowed_hosts=["genres.example"]),
                   base_url="http://genres.example")
    assert c.get("/model", headers={"X-API-Key": API_KEY}).status_code == 200
    assert c.get("/model", headers={"host": "evil.example"}).status_code == 400  # no key either: the Host speaks first
    assert c.get("/model").status_code == 401


def test_default_hosts():
    from genrefusion.errors import ConfigError
    from genrefusion.serve.auth import default_hosts, host_pattern

    assert default_hosts("127.0.0.1") == ["localhost", "127.0.0.1", "[::1]"]
    assert default_hosts("::1") == ["localhost", "127.0.0.1", "[::1]"]
    assert default_hosts("127.0.1.1", name="my-laptop") == ["localhost", "127.0.0.1", "[::1]", "127.0.1.1", "my-laptop"]
    assert default_hosts("0.0.0.0") is None and default_hosts("192.168.1.5") is None  # others reach it by any name
    assert default_hosts("0.0.0.0", ["Genres.Example", "::1", "*.example.org"]) == ["genres.example", "[::1]",
                                                                                  "*.example.org"]
    assert default_hosts("127.0.0.1", ["*"]) == ["*"]
    for bad in ("localhost:8000", "[::1]:8000", "", "example.com/x"):
        with pytest.raises(ConfigError, match="without a port"):
            host_pattern(bad)


def test_serve_cli_checks_the_host(tiny_run, monkeypatch):
    """The CLI wires the default (loopback: this machine's names) and --allowed-host into the app it runs."""
    import uvicorn

    from genrefusion.cli import main

    served = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: served.append((self.config.app, sockets)))
    monkeypatch.delenv("GENREFUSION_API_KEY", raising=False)
    for argv, ok, refused in [([], "localhost:1234", "evil.example"),
                              (["--allowed-host", "genres.example"], "genres.example", "localhost")]:
        assert main(["serve", str(tiny_run), "--port", "0", "--no-warmup", *argv]) == 0
        srv_app, sockets = served.pop()
        for s in sockets:
            s.close()
        c = TestClient(srv_app)
        assert c.get("/health", headers={"host": ok}).status_code == 200
        assert c.get("/health", headers={"host": refused}).status_code == 400
