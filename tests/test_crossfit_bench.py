"""benchmarks/crossfit.py: the two protocols' splits, and runs that stay one train/dev run each."""
from __future__ import annotations

from conftest import load_benchmark


def test_fold_split_trains_on_the_pool_minus_the_fold_and_reads_the_evaluated_titles():
    mod = load_benchmark("crossfit")
    pool, fold, evaluated = ["a/1", "a/2", "b/3", "b/4"], {"a/2", "b/4"}, ["a/9", "b/8"]
    split = mod.fold_split(["a", "b"], pool, fold, evaluated)
    assert split.ids("train") == ["a/1", "b/3"] and split.ids("dev") == ["a/2", "b/4"]
    assert split.ids("test") == evaluated  # the main job's dev titles: neither protocol tunes on them


def test_each_benchmark_run_is_one_train_dev_run_whatever_the_default(monkeypatch, tmp_path):
    import genrefusion.train as T

    mod = load_benchmark("crossfit")
    seen = {}
    monkeypatch.setattr(T, "main", lambda data, run, cfg, **kw: seen.setdefault("cfg", cfg))
    split = mod.fold_split(["a"], ["1", "2"], {"2"}, ["3"])
    mod.train_fold(tmp_path / "run", split, [], {"seed": 7})
    assert seen["cfg"].train.crossfit == 0 and seen["cfg"].seed == 7
    assert (tmp_path / "run" / "split.json").is_file()  # the run uses the split it finds there
