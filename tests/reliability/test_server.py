"""The REST API under load and fuzzing: 1,000 mixed valid/malformed requests from 8 concurrent clients against
uvicorn on 127.0.0.1 (zero 5xx, /health answering throughout, RSS printed before/after), /health answered while
every worker is stuck in inference, and schemathesis against the app's own /openapi.json (positive and negative
generation, no 5xx). No wall-clock limits here: the time figures are in benchmarks/bench_robustness.py."""
from __future__ import annotations

import base64
import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from .helpers import encode, gradient, jpeg_bomb, png_bomb

N_REQUESTS = 1000
WORKERS = 8
WARMUP = 400
HEALTH_EVERY = 25  # one /health probe among every 25 planned requests: 40 probes spread over the load
VALID_PREDICT = {"plot", "poster", "poster+plot", "batch"}


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _request_kinds():
    """name -> (weight, callable(session, url) -> Response, expected status class or set)."""
    jpeg = encode(gradient((24, 36)), "JPEG")
    png = encode(gradient((24, 36)), "PNG")
    b64 = base64.b64encode(jpeg).decode()
    big_plot = "word " * 5000  # 25,000 characters > 20,000
    too_big_poster = b"\xff\xd8" + b"\0" * (10 * 1024 * 1024 + 10)
    J = {"content-type": "application/json"}

    def post(path, **kw):
        return lambda s, u: s.post(u + path, timeout=60, **kw)

    kinds = {
        # valid
        "plot": (20, post("/predict", data={"plot": "A haunted house and a family who moves in."}), {200}),
        "poster": (5, post("/predict", files={"poster": ("p.jpg", jpeg, "image/jpeg")}), {200}),
        "poster+plot": (6, post("/predict", files={"poster": ("p.png", png, "image/png")},
                                data={"plot": "Two cops chase a smuggler.", "top_k": "2"}), {200}),
        "batch": (5, post("/predict/batch", json=[{"plot": "Space war."}, {"poster_base64": b64, "id": "x"}]), {200}),
        "batch-partial": (3, post("/predict/batch?partial=true",
                                  json=[{"plot": "Love."}, {"poster_base64": "!!notbase64"}]), {200}),
        "model": (3, lambda s, u: s.get(u + "/model", timeout=60), {200}),
        "index": (1, lambda s, u: s.get(u + "/", timeout=60), {200}),
        # malformed
        "nothing": (4, post("/predict", data={}), {400}),
        "empty-plot": (3, post("/predict", data={"plot": "   "}), {400}),
        "long-plot": (3, post("/predict", data={"plot": big_plot}), {413}),
        "nul-plot": (2, post("/predict", data={"plot": "a\x00b"}), {400}),
        "text-as-jpg": (4, post("/predict", files={"poster": ("t.jpg", b"not an image", "image/jpeg")}), {400}),
        "truncated": (4, post("/predict", files={"poster": ("t.jpg", jpeg[: len(jpeg) // 2], "image/jpeg")}), {400}),
        "empty-file": (2, post("/predict", files={"poster": ("e.jpg", b"", "image/jpeg")}), {400}),
        "bomb-png": (3, post("/predict", files={"poster": ("b.png", png_bomb(), "image/png")}), {400}),
        "bomb-jpeg": (2, post("/predict", files={"poster": ("b.jpg", jpeg_bomb(), "image/jpeg")}), {400}),
        "huge-poster": (1, post("/predict", files={"poster": ("h.jpg", too_big_poster, "image/jpeg")}), {413}),
        "bad-top-k": (2, post("/predict", data={"plot": "x", "top_k": "0"}), {400, 422}),
        "top-k-text": (2, post("/predict", data={"plot": "x", "top_k": "many"}), {422}),
        "bad-threshold": (2, post("/predict", data={"plot": "x", "threshold": "1.5"}), {400, 422}),
        "json-to-form": (2, post("/predict", data=json.dumps({"plot": "x"}), headers=J), {400, 422}),
        "broken-json": (3, post("/predict/batch", data="[{\"plot\": ", headers=J), {400, 422}),
        "not-a-list": (2, post("/predict/batch", json={"plot": "x"}), {422}),
        "wrong-type": (2, post("/predict/batch", json=[{"plot": 5}]), {422}),
        "extra-field": (2, post("/predict/batch", json=[{"plot": "x", "evil": 1}]), {422}),
        "empty-batch": (2, post("/predict/batch", json=[]), {400}),
        "batch-65": (1, post("/predict/batch", json=[{"plot": "x"}] * 65), {413}),
        "bad-base64": (2, post("/predict/batch", json=[{"poster_base64": "%%%"}]), {400}),
        "b64-not-image": (2, post("/predict/batch", json=[{"poster_base64": base64.b64encode(b"hi").decode()}]), {400}),
        "surrogate": (2, post("/predict/batch", data='[{"plot": "\\ud800"}]', headers=J), {400}),
        "bad-utf8-json": (1, post("/predict/batch", data=b'[{"plot": "\xff"}]', headers=J), {400, 422}),
        "404": (2, lambda s, u: s.get(u + "/nope", timeout=60), {404}),
        "405": (2, lambda s, u: s.get(u + "/predict", timeout=60), {405}),
        "bad-content-length": (1, lambda s, u: _raw(u, b"POST /predict HTTP/1.1\r\nHost: x\r\n"
                                                   b"Content-Length: abc\r\n\r\n"), {400}),
    }
    return kinds


class _Raw:
    def __init__(self, status):
        self.status_code = status


def _raw(url: str, payload: bytes):
    """A hand-written HTTP request (for headers a client library refuses to send)."""
    import socket

    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(payload)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return _Raw(int(data.split(b" ")[1]) if data.startswith(b"HTTP/") else 0)


@pytest.fixture(scope="module")
def server(tiny_run):
    from genrefusion.serve.app import create_app
    from genrefusion.serve.server import BackgroundServer

    with BackgroundServer(create_app(tiny_run, warmup=True)) as srv:
        yield srv


@pytest.mark.slow
def test_1000_mixed_requests_no_5xx_health_throughout(server, inputs):
    kinds = _request_kinds()
    rng = random.Random(0)
    names = list(kinds)
    plan = rng.choices(names, weights=[kinds[n][0] for n in names], k=N_REQUESTS)
    kinds["health"] = (0, lambda s, u: s.get(u + "/health", timeout=60), {200})
    for k in range(N_REQUESTS // HEALTH_EVERY):  # probes interleaved with the load, sent by the same workers
        plan.insert(k * (HEALTH_EVERY + 1) + HEALTH_EVERY // 2, "health")
    local = threading.local()

    def session():
        if not hasattr(local, "s"):
            local.s = requests.Session()
        return local.s

    reference: dict[str, dict] = {}  # valid kind -> its scores when sent alone
    mismatched: list[str] = []

    def scores_of(body):
        return [body["scores"]] if "scores" in body else [r["scores"] for r in body["results"]]

    def one(name):
        try:
            r = kinds[name][1](session(), server.url)
        except requests.RequestException as err:
            return name, f"{type(err).__name__}: {err}"
        if r.status_code == 200 and name in VALID_PREDICT:
            got = scores_of(r.json())
            if name not in reference:
                reference[name] = got
            elif any(abs(a[g] - b[g]) > 2e-4 for a, b in zip(got, reference[name]) for g in a):
                mismatched.append(name)  # concurrent requests must not disturb each other's results
        return name, r.status_code

    # warm up: every kind once, then a concurrent burst. RSS grows during the first few hundred concurrent
    # requests (malloc arenas of the threadpool's threads, torch buffers) and then levels off; measured after
    # that, a real per-request leak shows as steady growth
    for n in names:
        one(n)
    with ThreadPoolExecutor(WORKERS) as ex:
        list(ex.map(one, rng.choices(names, weights=[kinds[n][0] for n in names], k=WARMUP)))
    rss_before = rss_mb()

    with ThreadPoolExecutor(WORKERS) as ex:
        results = list(ex.map(one, plan))
    rss_after = rss_mb()
    health = [st for n, st in results if n == "health"]
    inputs(len(results) - len(health), "load-test requests")
    inputs(len(health), "/health probes during the load")

    by_status: dict = {}
    for _, st in results:
        by_status[st] = by_status.get(st, 0) + 1
    print(f"\n{len(results)} requests with {WORKERS} workers; statuses {by_status}; "
          f"RSS before {rss_before:.0f} MB, after {rss_after:.0f} MB ({rss_after - rss_before:+.0f} MB)")
    errors = [(n, st) for n, st in results if not isinstance(st, int) or st >= 500]
    assert not errors, errors[:10]
    unexpected = [(n, st) for n, st in results if st not in kinds[n][2]]
    assert not unexpected, unexpected[:10]
    assert set(reference) == VALID_PREDICT and not mismatched, mismatched[:10]
    assert len(health) == N_REQUESTS // HEALTH_EVERY and set(health) == {200}, health
    # memory stable: nothing per request is kept (keeping each request's preprocessed poster, a 224x224x3
    # float tensor of 0.6 MB, for the ~250 poster requests would alone add ~150 MB)
    assert rss_after - rss_before < 120, (rss_before, rss_after)


def test_health_answers_while_every_worker_is_inside_inference(clf, monkeypatch, inputs):
    """Inference runs in the threadpool, never on the event loop: with WORKERS predictions held *inside*
    ``predict_one`` (released only after /health has answered), /health still answers. Were inference on the
    loop, the first held prediction would block it and /health could never answer (the timeouts below are
    hang guards for that deadlock, not speed limits)."""
    from genrefusion.serve.app import create_app
    from genrefusion.serve.server import BackgroundServer

    real, gate, inside = clf.predict_one, threading.Event(), threading.Semaphore(0)

    def held(*args, **kw):
        inside.release()
        gate.wait(120)
        return real(*args, **kw)

    monkeypatch.setattr(clf, "predict_one", held)
    statuses: list = []
    with BackgroundServer(create_app(clf)) as srv:
        def predict():
            statuses.append(requests.post(srv.url + "/predict", data={"plot": "A haunted house."}, timeout=180)
                            .status_code)

        threads = [threading.Thread(target=predict) for _ in range(WORKERS)]
        for t in threads:
            t.start()
        try:
            # on a blocked event loop the first held prediction stops the others from even starting
            assert all(inside.acquire(timeout=120) for _ in threads), \
                f"not all {WORKERS} predictions got inside predict_one at once: inference blocks the event loop"
            health = requests.get(srv.url + "/health", timeout=60)
            still_held = sum(t.is_alive() for t in threads)
        finally:
            gate.set()
            for t in threads:
                t.join()
    inputs(WORKERS, "requests held inside inference")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert still_held == WORKERS and statuses == [200] * WORKERS, statuses


# -- schemathesis against the app's own spec ------------------------------------------------------------------------
def _operations(clf):
    import schemathesis

    from genrefusion.serve.app import create_app

    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(clf))
    return [r.ok() for r in schema.get_all_operations()]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_schemathesis_no_server_errors(mode, clf, inputs):
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error

    ops = _operations(clf)
    assert {f"{o.method.upper()} {o.path}" for o in ops} >= {"POST /predict", "POST /predict/batch", "GET /health"}
    tried, statuses = 0, {}
    for op in ops:
        has_input = bool(op.body) or any(True for _ in op.iter_parameters())

        @settings(max_examples=30 if has_input else 2, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy(generation_mode=GenerationMode(mode)))
        def check(case):
            nonlocal tried
            tried += 1
            r = case.call()
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            assert r.status_code < 500, (case.method, case.path, r.text[:300])
            case.validate_response(r, checks=[not_a_server_error])
            if r.status_code >= 400:  # every error is the one-line JSON shape
                body = r.json()
                assert body["status"] == r.status_code and "\n" not in body["error"]

        try:
            check()
        except Unsatisfiable:
            assert not has_input  # nothing to make invalid in a parameterless GET
    inputs(tried, "schemathesis examples")
    print(f"\nschemathesis {mode}: {tried} examples, statuses {statuses}")
    assert tried >= 40
