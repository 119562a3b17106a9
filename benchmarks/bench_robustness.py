"""Time figures of the robustness checks (the tests check the behaviour; the seconds are measured here).

    python benchmarks/bench_robustness.py RUN_DIR [--requests 1000] [--workers 8] [--json OUT]

``run_all(run_dir)`` returns (and the script prints):

- ``load_requests_s``: 1,000 mixed requests (valid poster/plot/batch predictions and malformed ones) from 8
  concurrent clients against uvicorn on 127.0.0.1; ``health_max_ms_under_load`` / ``health_p95_ms_under_load``:
  ``GET /health`` polled every 100 ms meanwhile (inference runs in the threadpool, so the event loop answers).
- ``bomb_refusal_ms``: the slower of a 30000x30000 PNG and JPEG header refused by ``load_image``.
- ``rate_limit_ratio``: requests/s measured at a local server over 20 requests at ``--rate 20``, divided by
  20 (at most 1: the limiter never lets more through); ``rate_limit_min_gap_ratio``: the smallest gap between
  two arrivals times the rate (an unlimited client sends them ~1 ms apart: ~0.02).
- ``retry_after_wait_s``: the wait between a 429 carrying ``Retry-After: 1`` and the retry.
- ``bad_url_fail_ms``: refusing three unusable URLs with retries and a 5 s backoff configured (no retry).
"""
from __future__ import annotations

import argparse
import base64
import io
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _jpeg(size=(24, 36), color=(200, 40, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG")
    return buf.getvalue()


def _request_kinds() -> list:
    """(session, url) -> status callables: the valid predictions and a few kinds of malformed request."""
    jpeg = _jpeg()
    b64 = base64.b64encode(jpeg).decode()

    def post(path, **kw):
        return lambda s, u: s.post(u + path, timeout=120, **kw).status_code

    return [
        post("/predict", data={"plot": "A haunted house and a family who moves in."}),
        post("/predict", files={"poster": ("p.jpg", jpeg, "image/jpeg")}),
        post("/predict", files={"poster": ("p.jpg", jpeg, "image/jpeg")}, data={"plot": "Two cops chase a smuggler."}),
        post("/predict/batch", json=[{"plot": "Space war."}, {"poster_base64": b64, "id": "x"}]),
        post("/predict", data={"plot": "   "}),
        post("/predict", files={"poster": ("t.jpg", b"not an image", "image/jpeg")}),
        post("/predict/batch", json=[{"plot": 5}]),
    ]


def load(run_dir, n_requests: int = 1000, workers: int = 8) -> dict:
    import random

    import requests

    from genrefusion.serve.app import create_app
    from genrefusion.serve.server import BackgroundServer

    kinds = _request_kinds()
    plan = random.Random(0).choices(range(len(kinds)), k=n_requests)
    local = threading.local()

    def one(k):
        if not hasattr(local, "s"):
            local.s = requests.Session()
        return kinds[k](local.s, srv.url)

    health, stop = [], threading.Event()
    with BackgroundServer(create_app(run_dir, warmup=True)) as srv:
        with ThreadPoolExecutor(workers) as ex:  # warm every kind and the threadpool
            list(ex.map(one, list(range(len(kinds))) * workers))

        def poll():
            s = requests.Session()
            while not stop.is_set():
                t0 = time.perf_counter()
                s.get(srv.url + "/health", timeout=120)
                health.append(time.perf_counter() - t0)
                stop.wait(0.1)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(workers) as ex:
            statuses = list(ex.map(one, plan))
        elapsed = time.perf_counter() - t0
        stop.set()
        poller.join()
    if any(s >= 500 for s in statuses):
        raise SystemExit(f"load: {sum(s >= 500 for s in statuses)} server errors")
    return {"load_requests_s": round(elapsed, 2), "load_requests": n_requests, "load_workers": workers,
            "health_max_ms_under_load": round(max(health) * 1000, 1),
            "health_p95_ms_under_load": round(float(np.percentile(health, 95)) * 1000, 1),
            "health_polls": len(health)}


def bomb_refusal_ms(repeats: int = 5) -> float:
    from genrefusion.data.images import load_image
    from genrefusion.errors import BadInput

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from reliability.util import jpeg_bomb, png_bomb

    worst = 0.0
    for data in (png_bomb(), jpeg_bomb()):
        for _ in range(repeats):
            t0 = time.perf_counter()
            try:
                load_image(data, name="bomb")
            except BadInput:
                pass
            else:
                raise SystemExit("a decompression bomb was accepted")
            worst = max(worst, time.perf_counter() - t0)
    return round(worst * 1000, 2)


class _Recorder(BaseHTTPRequestHandler):
    """Answers 200 (``/busy`` first answers 429 with Retry-After: 1) and records arrival times."""
    arrivals: list = []

    def do_GET(self):
        type(self).arrivals.append((time.monotonic(), self.path))
        busy = self.path == "/busy" and sum(p == "/busy" for _, p in self.arrivals) == 1
        self.send_response(429 if busy else 200)
        if busy:
            self.send_header("Retry-After", "1")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a):
        pass


def http_client(rate: float = 20.0, n: int = 20) -> dict:
    from genrefusion.collect.http import FatalFetchError, HttpClient

    _Recorder.arrivals = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        c = HttpClient(rate=rate, backoff=0.01, jitter=False, timeout=5.0)
        for i in range(n):
            c.get(f"{url}/p{i}")
        times = [t for t, p in _Recorder.arrivals if p.startswith("/p")]
        gaps = np.diff(times)
        HttpClient(rate=1000.0, backoff=0.01, jitter=False).get(url + "/busy")
        busy = [t for t, p in _Recorder.arrivals if p == "/busy"]
    finally:
        srv.shutdown()
    c = HttpClient(retries=3, backoff=5.0)
    t0 = time.perf_counter()
    for bad in ("www.imdb.com/title/tt0111161/", "ftp://example.org/x", "http:///nohost"):
        try:
            c.get(bad)
        except FatalFetchError:
            pass
    return {"rate_limit_ratio": round((n - 1) / (times[-1] - times[0]) / rate, 3),
            "rate_limit_min_gap_ratio": round(float(gaps.min()) * rate, 3),
            "retry_after_wait_s": round(busy[1] - busy[0], 3),
            "bad_url_fail_ms": round((time.perf_counter() - t0) * 1000, 2)}


def run_all(run_dir, n_requests: int = 1000, workers: int = 8) -> dict:
    return {**load(run_dir, n_requests, workers), "bomb_refusal_ms": bomb_refusal_ms(), **http_client()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--json", help="also write the results to this JSON file")
    a = ap.parse_args(argv)
    res = run_all(a.run_dir, a.requests, a.workers)
    for k, v in res.items():
        print(f"{k:28s} {v}")
    if a.json:
        from genrefusion.io import write_json

        write_json(a.json, res)
    return 0


if __name__ == "__main__":
    from genrefusion.errors import one_line_errors

    with one_line_errors():
        sys.exit(main())
