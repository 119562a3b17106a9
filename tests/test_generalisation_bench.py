"""benchmarks/generalisation.py end to end on tiny datasets: the held-out dataset is the run's test part,
titles it shares are out of training, every model and baseline is reported, small posters are scored."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from conftest import TINY_RUN_OVERRIDES, build_tiny_dataset, load_benchmark


def _bench():
    return load_benchmark("generalisation")


@pytest.mark.slow
def test_leave_one_dataset_out_benchmark(tmp_path, monkeypatch):
    data = tmp_path / "data"
    build_tiny_dataset(data / "cornell_tmdb", n=24, name="cornell_tmdb", id_prefix="c", poster_size=(200, 300))
    build_tiny_dataset(data / "other", n=48, name="other", id_prefix="o", seed=1)  # shares tt9000000..23
    third = build_tiny_dataset(data / "third", n=30, name="third", id_prefix="t", imdb_offset=1000, posters=False)
    tj = third / "titles.jsonl"
    tj.write_text(tj.read_text().replace("Tiny Title", "Third Title"))  # no title + year in common either
    monkeypatch.setenv("GENREFUSION_CACHE", str(tmp_path / "cache"))
    overrides = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in TINY_RUN_OVERRIDES.items()
                 if not k.startswith("data.test")]
    out, js = tmp_path / "out", tmp_path / "g.json"
    args = ["--data", str(data), "--held-out", "cornell_tmdb", "--out", str(out), "--json", str(js),
            "--label", "t"] + [a for o in overrides for a in ("--set", o)]
    bench = _bench()
    assert bench.main(args) == 0
    fold = json.loads(js.read_text())["t"]["folds"]["cornell_tmdb"]
    assert fold["test_titles"] == 24 and fold["dropped_overlap"] == {"other": {"imdb_id": 24}}
    assert fold["train_titles"] + fold["dev_titles"] == 24 + 30
    for m in ("fused", "poster", "plot", "tfidf_logreg", "always_negative"):
        assert fold["models"][m]["micro_f1"] is not None, m
    lo, hi = fold["models"]["fused"]["micro_f1_ci95"]  # bootstrap interval over the held-out titles
    assert 0 <= lo <= hi <= 1
    assert any(v["model"] == "fused" and v["titles"] == "all" and "difference_ci95" in v for v in fold["probe_verdicts"])
    assert any("paired 95% interval" in line for line in bench.verdict({"cornell_tmdb": fold}))
    split = json.loads((out / "t" / "cornell_tmdb" / "split.json").read_text())
    held = {f"o-{i:04d}" for i in range(24)}
    trained = {k.split("/", 1)[1] for p in ("train", "dev") for k in split["parts"][p] if k.startswith("other/")}
    assert trained == {f"o-{i:04d}" for i in range(24, 48)} and not trained & held
    assert sorted(split["parts"]["test"]) == sorted(f"cornell_tmdb/c-{i:04d}" for i in range(24))
    small = json.loads(js.read_text())["t"]["folds"]["cornell_tmdb_small"]
    assert small["test_titles"] == 24 and small["models"]["fused"]["mAP"] is not None
    poster = next((out / "datasets" / "cornell_tmdb_small" / "posters").glob("*.jpg"))
    assert max(Image.open(poster).size) <= bench.SMALL_SIDE
    # a second call reuses the finished run (same config and data) instead of retraining
    assert bench.main(args + ["--no-small-posters"]) == 0
