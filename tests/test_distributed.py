"""Distributed training and sharded feature extraction (genrefusion.distributed), on CPU with gloo.

The torchrun tests launch ``python -m torch.distributed.run`` on 127.0.0.1 with a free port and the
helper scripts ``tests/dist_train.py`` / ``tests/dist_extract.py``.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from genrefusion import distributed as dist
from genrefusion.training.baseline_cache import NAMESPACE as BASELINE_NAMESPACE

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_cmd(nproc: int, script: str, *args) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
            "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(HERE / script), *map(str, args)]


def run_ok(cmd, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    return r


# -- pure helpers (no process group) -----------------------------------------------------------------------
def test_shard_and_unshard_are_inverse():
    x = np.arange(23 * 3).reshape(23, 3)
    for world in (1, 2, 3, 5, 30):
        parts = [dist.shard(x, r, world) for r in range(world)]
        assert sum(len(p) for p in parts) == len(x)
        assert np.array_equal(dist.unshard(parts, len(x)), x)


def test_single_process_helpers_are_identity():
    assert dist.from_main(lambda: 7) == 7 and dist.broadcast_object("x") == "x"
    S = np.ones((3, 2), np.float32)
    assert dist.gather_scores(S, 0.5, 3) == (S, 0.5)
    assert dist.mean_over_ranks(0.25) == 0.25
    import torch

    sampler, bs = dist.epoch_sampler(list(range(10)), torch.Generator().manual_seed(1), 1, 4, True)
    assert isinstance(sampler, torch.utils.data.RandomSampler) and bs == 4


# train.py drops the last partial batch unless all rows fit in one batch (n <= batch): the cases below
@pytest.mark.parametrize("n,drop_last", [(50, True), (7, True), (9, True), (3, False), (4, False)])
def test_ranks_split_every_global_batch_of_the_single_process_run(monkeypatch, n, drop_last):
    """Global batch k of a 2-rank epoch holds exactly the rows of single-process batch k (same seed)."""
    import torch

    rows, seed, batch = list(range(100, 100 + n)), 1234, 4

    def batches(world, rank):
        monkeypatch.setattr(dist, "_INFO", dist.DistInfo(rank, world, rank))
        sampler, bs = dist.epoch_sampler(rows, torch.Generator().manual_seed(seed), seed, batch, drop_last)
        loader = torch.utils.data.DataLoader(rows, batch_size=bs, sampler=sampler, drop_last=drop_last)
        return [sorted(b.tolist()) for b in loader]

    one = batches(1, 0)
    r0, r1 = batches(2, 0), batches(2, 1)
    assert len(r0) == len(r1) == len(one)  # equal step counts on every rank, as the one-cycle schedule assumes
    for k, b in enumerate(one):
        got = sorted(r0[k] + r1[k])
        if drop_last or n % 2 == 0:
            assert got == b
        else:  # one batch of an odd number of rows: DistributedSampler pads it with a repeated row
            assert set(got) == set(b) and len(got) == len(b) + 1


def test_batch_size_must_split_evenly(monkeypatch):
    import torch

    from genrefusion.errors import ConfigError

    monkeypatch.setattr(dist, "_INFO", dist.DistInfo(0, 3, 0))
    with pytest.raises(ConfigError, match="multiple of the number of ranks"):
        dist.epoch_sampler(list(range(10)), torch.Generator(), 0, 16, True)


# -- torchrun: sharded feature extraction ------------------------------------------------------------------
def test_sharded_extraction_matches_one_process_and_caches_each_row_once(tmp_path, make_jpeg):
    sys.path.insert(0, str(HERE))
    try:
        from dist_extract import inputs, toy_encoders
    finally:
        sys.path.remove(str(HERE))
    from genrefusion.encoders.extract import extract_image_features, extract_text_features

    posters_dir = tmp_path / "posters"
    for i in range(7):
        make_jpeg(posters_dir / f"p{i}.jpg", color=(30 * i, 200 - 20 * i, 90))
    (posters_dir / "zz_bad.jpg").write_bytes(b"not a jpeg")  # a decode error computed on some rank
    cache, out = tmp_path / "cache", tmp_path / "out"
    out.mkdir()
    run_ok(torchrun_cmd(2, "dist_extract.py", posters_dir, cache, out))

    img, txt = toy_encoders()
    posters, texts = inputs(posters_dir)
    want_i = extract_image_features(posters, img, None, batch_size=3, num_workers=0, progress=False)
    want_t = extract_text_features(texts, txt, None, batch_size=3, progress=False)
    ranks = [np.load(out / f"rank{r}.npz") for r in (0, 1)]
    for got in ranks:
        np.testing.assert_allclose(got["iv"], want_i.values, rtol=1e-6, atol=1e-6)
        assert np.array_equal(got["iok"], want_i.ok) and np.array_equal(got["tok"], want_t.ok)
        np.testing.assert_array_equal(got["tv"], want_t.values)
        errors = {int(k): v for k, v in json.loads(str(got["ierr"])).items()}
        assert sorted(errors) == sorted(want_i.errors)  # the bad JPEG and the missing file, on every rank
    assert want_i.ok.sum() == 8 and len(want_i.errors) == 2  # 7 posters + 1 duplicate

    # rank 0 merged every rank's rows into the cache, each unique poster/plot exactly once
    index = {p.parent.name.split("-")[0]: p.read_text().splitlines() for p in cache.glob("*/index.log")}
    assert len(index["toyimg"]) == 7 and len({json.loads(x)["k"] for x in index["toyimg"]}) == 7
    n_plots = len({t for t in texts if t})
    assert len(index["toytxt"]) == n_plots

    # a second run finds everything in the cache: every rank gets the hits, nothing is appended
    run_ok(torchrun_cmd(2, "dist_extract.py", posters_dir, cache, out))
    for r in (0, 1):
        got = np.load(out / f"rank{r}.npz")
        assert int(got["ihits"]) == 8 and int(got["thits"]) == int(want_t.ok.sum())
        np.testing.assert_allclose(got["iv"], want_i.values, rtol=1e-6, atol=1e-6)
    assert len((next(cache.glob("toyimg-*")) / "index.log").read_text().splitlines()) == 7


# -- torchrun: training ------------------------------------------------------------------------------------
# Tiny but complete: poster, MiniLM plot and fused stages on 60 shipped titles. Dropout is off so that the
# only differences between 1 and 2 ranks are BatchNorm statistics over half-batches and the per-rank
# masked-mean weighting of the loss (initial weights, batches and learning-rate schedule are the same).
TRAIN = {"train.epochs": 3, "train.fused_epochs": 3, "train.batch_size": 16, "train.hidden": [64, 32],
         "train.dropout": 0.0, "train.input_dropout": 0.0, "train.modality_dropout": 0.0,
         "data.min_genre_count": 3, "text.encoder": "minilm", "image.num_workers": 0, "train.crossfit": 0}

# Measured on this machine: per-epoch dev losses agree to < 0.002, train losses to < 0.02, test micro-F1
# to < 0.03 (13 test titles: one title flipping one genre moves micro-F1 by ~0.03). Stated tolerances:
DEV_LOSS_TOL, TRAIN_LOSS_TOL, TEST_METRIC_TOL = 0.01, 0.05, 0.1


def overrides(cfg: dict) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in cfg.items()]


def read_result(out: Path) -> dict:
    res = json.loads((out / "result.json").read_text())
    per_rank = [(out / f"result.rank{r}.json").read_text() for r in range(2) if (out / f"result.rank{r}.json").exists()]
    assert len(set(per_rank)) == 1, "ranks returned different metrics"
    return res


@pytest.mark.slow
def test_torchrun_two_ranks_match_one_rank_and_resume(shipped_subset, tmp_path):
    data = shipped_subset("imdb_top250", n=60)
    cache = tmp_path / "cache"
    cfg = {**TRAIN, "cache_dir": str(cache)}

    # cold cache, 2 ranks, cross-fitted (2 folds): every rank encodes half of the posters/plots, rank 0 merges
    # them into the cache; both ranks train every fold
    run_ok(torchrun_cmd(2, "dist_train.py", data, tmp_path / "cold", *overrides({**cfg, "train.crossfit": 2})))
    feature_namespaces = [ns for ns in cache.iterdir() if ns.name != BASELINE_NAMESPACE]
    assert feature_namespaces
    for ns in feature_namespaces:
        keys = [json.loads(x)["k"] for x in (ns / "index.log").read_text().splitlines()]
        assert len(keys) == len(set(keys)) == 60, ns.name
    # rank 0 alone evaluates, so each fold's baselines are fitted and cached once
    assert len(list((cache / BASELINE_NAMESPACE).iterdir())) == 2
    assert {"fused@fold0", "fused@fold1"} <= set(read_result(tmp_path / "cold")["training"])

    # warm cache (so that no extraction draws from the RNG before the models are built): 1 rank vs 2 ranks
    run_ok([sys.executable, str(HERE / "dist_train.py"), data, tmp_path / "one", *overrides(cfg)])
    run_ok(torchrun_cmd(2, "dist_train.py", data, tmp_path / "two", *overrides(cfg)))
    one, two = read_result(tmp_path / "one"), read_result(tmp_path / "two")
    assert one["genres"] == two["genres"] and one["split"] == two["split"]
    assert set(one["training"]) == set(two["training"]) == {"poster", "plot_minilm", "fused"}
    for stage, a in one["training"].items():
        b = two["training"][stage]
        assert len(a["history"]) == len(b["history"]), stage
        for ha, hb in zip(a["history"], b["history"]):
            assert abs(ha["dev_loss"] - hb["dev_loss"]) < DEV_LOSS_TOL, (stage, ha, hb)
            assert abs(ha["train_loss"] - hb["train_loss"]) < TRAIN_LOSS_TOL, (stage, ha, hb)
    for model in ("poster", "plot", "fused"):
        for metric in ("micro_f1", "macro_f1", "mAP"):
            assert abs(one["models"][model][metric] - two["models"][model][metric]) < TEST_METRIC_TOL, (model, metric)
        assert len(one["thresholds"][model]) == len(two["thresholds"][model]) == len(one["genres"])
    assert (tmp_path / "two" / "model" / "weights.safetensors").exists()
    assert not list((tmp_path / "two" / "checkpoints").glob("*.pt"))

    # resume: kill the 2-rank run once the fused stage has checkpointed, then finish it with --resume
    out = tmp_path / "resumed"
    long = overrides({**cfg, "train.fused_epochs": 400, "train.patience": 1000})
    proc = subprocess.Popen(torchrun_cmd(2, "dist_train.py", data, out, *long), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        while not (out / "checkpoints" / "fused.pt").exists():  # ends with the run at the latest
            assert proc.poll() is None, "run ended before the fused checkpoint"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)  # like a lost node: no clean shutdown
    finally:
        proc.wait(timeout=60)
    assert not (out / "stages" / "fused.json").exists() and not (out / "result.json").exists()
    run_ok(torchrun_cmd(2, "dist_train.py", data, out, *long, "--resume"))
    log = (out / "train.log").read_text()
    assert "stage poster: already done" in log and "stage plot_minilm: already done" in log
    assert "stage fused: resuming after epoch" in log
    res = read_result(out)
    assert res["training"]["fused"]["epochs_run"] == 400
    assert set(res["models"]) >= {"poster", "plot", "fused", "always_negative", "tfidf_logreg"}
