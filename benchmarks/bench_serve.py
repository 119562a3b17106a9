"""Serving benchmark: batch throughput vs the raw image backbone, warm single-title latency, API latency.

    python benchmarks/bench_serve.py RUN_DIR [--titles 64] [--batch-size 32] [--repeats 30] [--json OUT]

``run_all(run_dir)`` returns (and the script prints):

- ``throughput_ratio``: end-to-end batch prediction (``genrefusion.batch.run_batch`` over a dataset folder:
  JPEG decode, preprocessing, image backbone, MiniLM plot features, fused head, decisions) in titles/s,
  divided by the raw image-backbone forward pass on already-decoded, preprocessed tensors at the same batch
  size, in the runtime prediction uses (``ImageEncoder.encode``: ONNX Runtime when installed, else PyTorch). Both are measured in this run, alternated, and the median of each is used (the machine is shared).
- ``latency_p50_ms`` / ``latency_p95_ms``: warm ``GenreClassifier.predict_one`` (poster file + plot).
- ``api_latency_p50_ms`` / ``api_latency_p95_ms``: ``POST /predict`` (multipart poster + plot) through
  uvicorn on 127.0.0.1, one request at a time, each with a timeout.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


INT8 = "onnxruntime-int8"


def _pct(xs, q) -> float:
    return round(float(np.percentile(np.asarray(xs) * 1000.0, q)), 1)


class _NullWriter:
    def __init__(self):
        self.rows = 0

    def write(self, row):
        self.rows += 1


def _titles(dataset: Path, n: int) -> list[dict]:
    out = []
    with open(dataset / "titles.jsonl", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            if r.get("poster") and r.get("plot"):
                out.append({"id": r["id"], "poster": dataset / r["poster"], "plot": r["plot"]})
            if len(out) >= n:
                break
    return out


def _subset_dir(titles: list[dict], root: Path) -> Path:
    """A dataset folder holding just these titles (posters copied: symlinks out of a dataset are refused)."""
    import shutil

    (root / "posters").mkdir(parents=True, exist_ok=True)
    with open(root / "titles.jsonl", "w", encoding="utf-8") as fh:
        for t in titles:
            link = root / "posters" / Path(t["poster"]).name
            if not link.exists():
                shutil.copyfile(t["poster"], link)
            fh.write(json.dumps({"id": t["id"], "genres": [], "plot": t["plot"],
                                 "poster": f"posters/{link.name}"}) + "\n")
    return root


def run_all(run_dir, dataset=None, n_titles: int = 64, batch_size: int = 32, repeats: int = 30,
            rounds: int = 3) -> dict:
    import tempfile

    import torch

    from genrefusion import batch as B
    from genrefusion.data.images import load_image
    from genrefusion.errors import GenreFusionError
    from genrefusion.paths import shipped_data_dir
    from genrefusion.predict import GenreClassifier
    from genrefusion.serve.app import create_app
    from genrefusion.serve.server import BackgroundServer

    t_start = time.perf_counter()
    load_before = round(os.getloadavg()[0], 2)  # other processes on the box skew every figure: recorded
    dataset = Path(dataset) if dataset else shipped_data_dir(required=True) / "imdb_top250"
    titles = _titles(dataset, n_titles)
    if len(titles) < batch_size:
        raise SystemExit(f"{dataset}: fewer than {batch_size} titles with poster and plot")
    clf = GenreClassifier.load(run_dir)
    clf.predict_one(poster=titles[0]["poster"], plot=titles[0]["plot"])  # builds the encoders
    # the opt-in int8 text runtime, measured in the same rounds (None when onnxruntime is missing)
    clf8 = GenreClassifier.load(run_dir, text_runtime=INT8)
    try:
        clf8.predict_one(poster=titles[0]["poster"], plot=titles[0]["plot"])
    except GenreFusionError as err:
        print(f"int8 text runtime unavailable: {err}", file=sys.stderr)
        clf8 = None
    enc = clf.encoders_.get("image")
    if enc is None:
        raise SystemExit(f"{run_dir}: model {clf.model_name_!r} has no image backbone to compare with")
    threads = torch.get_num_threads()

    # raw backbone input: decoded + preprocessed once, outside the timing
    tensors = torch.stack([enc.preprocess(load_image(t["poster"])) for t in titles])
    batches = [tensors[i:i + batch_size] for i in range(0, len(tensors), batch_size)]

    def raw_backbone() -> float:
        t0 = time.perf_counter()
        for x in batches:
            enc.encode(x)  # the backbone in the runtime prediction uses (ONNX Runtime when installed)
        return time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        src = _subset_dir(titles, Path(tmp) / "ds")

        def batch_path(c=clf) -> float:
            w = _NullWriter()
            t0 = time.perf_counter()
            stats = B.run_batch(c, B.open_input(src), w, batch_size=batch_size)
            dt = time.perf_counter() - t0
            if stats.errors or w.rows != len(titles):
                raise SystemExit(f"batch path failed on {stats.errors} titles")
            return dt

        raw_backbone(), batch_path()  # warm both paths (allocator, thread pools)
        if clf8 is not None:
            batch_path(clf8)
        raw_t, batch_t, int8_t = [], [], []
        for _ in range(rounds):
            raw_t.append(raw_backbone())
            batch_t.append(batch_path())
            if clf8 is not None:
                int8_t.append(batch_path(clf8))
    n = len(titles)
    text = clf.encoders_.get("minilm")
    raw_tps, batch_tps = n / float(np.median(raw_t)), n / float(np.median(batch_t))
    int8_tps = n / float(np.median(int8_t)) if int8_t else None

    # warm single-title latency through the Python API
    lat = []
    for i in range(repeats):
        t = titles[i % len(titles)]
        t0 = time.perf_counter()
        clf.predict_one(poster=t["poster"], plot=t["plot"])
        lat.append(time.perf_counter() - t0)

    # the same through uvicorn
    import httpx

    api = []
    blobs = [(Path(t["poster"]).name, Path(t["poster"]).read_bytes(), t["plot"]) for t in titles[:repeats]]
    with BackgroundServer(create_app(clf)) as srv, httpx.Client(base_url=srv.url, timeout=30.0) as http:
        for name, data, plot in blobs[:3]:  # warm the connection and the app
            http.post("/predict", files={"poster": (name, data, "image/jpeg")}, data={"plot": plot})
        for i in range(repeats):
            name, data, plot = blobs[i % len(blobs)]
            t0 = time.perf_counter()
            r = http.post("/predict", files={"poster": (name, data, "image/jpeg")}, data={"plot": plot})
            api.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise SystemExit(f"/predict answered {r.status_code}: {r.text[:200]}")

    return {
        "throughput_ratio": round(batch_tps / raw_tps, 3),
        "throughput_ratio_int8": round(int8_tps / raw_tps, 3) if int8_tps else None,
        "text_runtime": None if text is None else text.runtime + (" (onnxruntime)" if text.onnx_session() else ""),
        "latency_p50_ms": _pct(lat, 50), "latency_p95_ms": _pct(lat, 95),
        "api_latency_p50_ms": _pct(api, 50), "api_latency_p95_ms": _pct(api, 95),
        "batch_titles_per_s": round(batch_tps, 2), "backbone_titles_per_s": round(raw_tps, 2),
        "batch_seconds": [round(x, 3) for x in batch_t], "batch_int8_seconds": [round(x, 3) for x in int8_t],
        "backbone_seconds": [round(x, 3) for x in raw_t],
        "titles": n, "batch_size": batch_size, "repeats": repeats, "torch_threads": threads,
        "cpu_count": os.cpu_count(), "image_encoder": enc.name, "model": clf.model_name_,
        "text_route": clf.bundle_.spec.get("text_route"), "dataset": str(dataset),
        "load_avg_1m_before": load_before, "load_avg_1m_after": round(os.getloadavg()[0], 2),
        "wall_s": round(time.perf_counter() - t_start, 1),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--dataset", help="dataset folder to take titles from (default: shipped imdb_top250)")
    ap.add_argument("--titles", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--json", help="also write the results to this JSON file")
    a = ap.parse_args(argv)
    res = run_all(a.run_dir, a.dataset, a.titles, a.batch_size, a.repeats)
    for k, v in res.items():
        print(f"{k:24s} {v}")
    if a.json:
        from genrefusion.io import write_json

        write_json(a.json, res)
    return 0


if __name__ == "__main__":
    from genrefusion.errors import one_line_errors

    with one_line_errors():
        sys.exit(main())
