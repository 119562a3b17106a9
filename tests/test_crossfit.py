"""Cross-fitting (train.crossfit): fold models merged exactly into one ensemble, thresholds tuned on out-of-fold
scores of every train + dev title, a bundle that loads and predicts, resume inside a fold, bad configs refused."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genrefusion import train as T
from genrefusion.config import Config, load_config
from genrefusion.errors import ConfigError, GenreFusionError
from genrefusion.models import build_fused, build_single, model_spec
from genrefusion.models.merge import merge_fold_models

from conftest import TINY_RUN_OVERRIDES

GENRES = ["a", "b", "c", "d"]


def _fold_models(spec, k):
    torch.manual_seed(k)
    p, t = build_single(spec, "poster"), build_single(spec, "plot")
    p.set_prior(torch.rand(len(GENRES)))
    t.set_prior(torch.rand(len(GENRES)))
    f = build_fused(spec, p, t)
    with torch.no_grad():  # untrained models start with zero 'absent' embeddings and unit BatchNorm statistics
        f.poster.missing.normal_()
        f.plot.missing.normal_()
        for m in list(f.modules()) + list(p.modules()):
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2)
    return p.eval(), f.eval()


@pytest.mark.parametrize("members", [1, 2])
def test_merged_model_is_the_mean_of_the_fold_models(members):
    spec = model_spec(Config().replace({"train.members": members, "train.hidden": [16, 8]}), GENRES, 12, "minilm")
    folds = [_fold_models(spec, k) for k in range(3)]
    big = {**spec, "members": 3 * members}
    mp, mt = build_single(big, "poster"), build_single(big, "plot")
    poster = merge_fold_models([p for p, _ in folds], mp, members).eval()
    fused = merge_fold_models([f for _, f in folds], build_fused(big, mp, mt), members).eval()
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(8, 12, generator=g), torch.randn(8, 384, generator=g)
    ip = torch.tensor([1, 1, 0, 1, 0, 1, 1, 0]).bool()
    tp = torch.tensor([1, 0, 1, 1, 1, 0, 1, 0]).bool()
    with torch.no_grad():
        want_f = torch.stack([f(img, ip, txt, tp) for _, f in folds]).mean(0)
        want_p = torch.stack([p(img, ip) for p, _ in folds]).mean(0)
        assert torch.allclose(fused(img, ip, txt, tp), want_f, atol=1e-6)
        assert torch.allclose(poster(img, ip), want_p, atol=1e-6)  # incl. the prior of poster-less titles


def test_merge_refuses_folds_that_differ_outside_their_members():
    spec = model_spec(Config().replace({"train.members": 1, "train.hidden": [16, 8]}), GENRES, 12, "minilm")
    a, b = build_single(spec, "poster"), build_single(spec, "poster")
    b.register_buffer("shared", torch.ones(2))
    a.register_buffer("shared", torch.zeros(2))
    big = build_single({**spec, "members": 2}, "poster")
    big.register_buffer("shared", torch.zeros(2))
    with pytest.raises(GenreFusionError, match="differ in 'shared'"):
        merge_fold_models([a, b], big, 1)


@pytest.mark.parametrize("over, why", [
    ({"train.crossfit": 1}, "at least 2 folds"),
    ({"train.crossfit": 6, "train.members": 3}, "18 members"),
])
def test_bad_crossfit_configs_are_refused(over, why):
    with pytest.raises(ConfigError, match=why):
        load_config(overrides=over)


@pytest.mark.parametrize("over, why", [
    ({"train.finetune": "last_block"}, "finetune"),
    ({"text.encoder": "auto"}, "MiniLM"),
    ({"train.members": 1, "train.fusion": "gmu"}, "gmu"),
    ({"train.fusion_join": "features"}, "features"),
])
def test_models_that_cannot_be_merged_tune_on_dev_instead(over, why):
    from genrefusion.config import crossfit_folds

    cfg = load_config(overrides=over)  # the default crossfit does not make these options errors
    folds, reason = crossfit_folds(cfg)
    assert folds == 0 and why in reason
    assert crossfit_folds(load_config()) == (5, None)


@pytest.fixture(scope="module")
def crossfit_run(tiny_run_data, tiny_run_cache, tmp_path_factory):
    cfg = load_config(overrides={**TINY_RUN_OVERRIDES, "train.crossfit": 3, "train.members": 2})
    run = tmp_path_factory.mktemp("crossfit") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENREFUSION_CACHE", str(tiny_run_cache))
        result = T.main(tiny_run_data, run, cfg, progress=False, write_report=False, device="cpu")
    return run, cfg, result


def test_crossfit_tunes_on_out_of_fold_scores_of_train_and_dev(crossfit_run):
    run, cfg, m = crossfit_run
    from genrefusion.data.split import Split

    split = Split.load(run / "split.json")
    pool = set(split.ids("train")) | set(split.ids("dev"))
    assert m["crossfit"]["folds"] == 3 and sum(m["crossfit"]["fold_titles"]) == len(pool)
    assert m["split"]["dev"] == len(split.ids("dev"))  # the split's own counts, not the pool's
    with np.load(run / "dev_scores.npz", allow_pickle=False) as z:
        keys = set(z["keys"])
        S = z["S_fused"]
    assert keys == pool  # every train + dev title once (two datasets: keys are "<dataset>/<id>" in both)
    assert S.shape[0] == len(pool) and np.isfinite(S).all()
    # the model card says what the thresholds were tuned on
    assert "tuned on the out-of-fold scores of" in (run / "model" / "README.md").read_text()
    for k in range(3):  # each fold trained its three stages in its own resumable folder
        for stage in ("poster", "plot_minilm", "fused"):
            assert (run / "folds" / str(k) / "stages" / f"{stage}.json").is_file()
            assert f"{stage}@fold{k}" in m["training"]


def test_crossfit_bundle_serves_the_merged_ensemble(crossfit_run, tiny_run_data):
    from genrefusion.data.dataset import open_datasets
    from genrefusion.predict import GenreClassifier

    run, cfg, m = crossfit_run
    clf = GenreClassifier.load(run)
    assert clf.bundle_.spec["members"] == 6  # 3 folds x 2 members
    assert "out-of-fold" in clf.info()["thresholds_tuned_on"]
    with np.load(run / "test_scores.npz", allow_pickle=False) as z:
        keys, S = list(z["keys"]), z["S_fused"]
    items, idx = [], []
    for ds in open_datasets(tiny_run_data):
        for t in ds.titles():
            if f"{ds.name}/{t.id}" in keys:
                items.append({"poster": ds.poster_path(t) if t.poster else None, "plot": t.plot})
                idx.append(keys.index(f"{ds.name}/{t.id}"))
    # what the bundle answers is what the run evaluated: the merged ensemble, blended as tuned
    assert np.allclose(clf.predict_proba(items), S[idx], atol=1e-4)


def test_crossfit_resumes_inside_a_fold(tiny_run_data, tiny_run_cache, crossfit_run, tmp_path, monkeypatch):
    _, cfg, ref = crossfit_run
    monkeypatch.setenv("GENREFUSION_CACHE", str(tiny_run_cache))
    run = tmp_path / "run"
    real, calls = T.train_one_epoch, {"n": 0}

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 9:  # fold 0 runs poster 3 + plot 3 + fused 2 epochs: fold 1's first poster epoch
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(T, "train_one_epoch", dying)
    with pytest.raises(KeyboardInterrupt):
        T.main(tiny_run_data, run, cfg, progress=False, write_report=False, device="cpu")
    assert (run / "folds" / "0" / "stages" / "fused.json").is_file()
    assert not (run / "folds" / "1" / "stages" / "poster.json").exists()
    monkeypatch.setattr(T, "train_one_epoch", real)
    got = T.main(tiny_run_data, run, cfg, resume=True, progress=False, write_report=False, device="cpu")
    for name in ("poster", "plot", "fused"):
        for k in ("micro_f1", "mAP"):
            assert got["models"][name][k] == pytest.approx(ref["models"][name][k], abs=1e-6), (name, k)


def test_fold_workers_train_the_folds_one_process_would(tiny_run_data, tiny_run_cache, crossfit_run, tmp_path,
                                                        monkeypatch):
    """A re-run (every fold's baselines cached): a worker process claims folds beside the main one, and the run
    ends with the models, thresholds and metrics of the one-process run."""
    import os
    import time

    _, cfg, ref = crossfit_run
    monkeypatch.setenv("GENREFUSION_CACHE", str(tiny_run_cache))
    monkeypatch.setattr(T, "FOLD_WORKER_MIN_TITLES", 0)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    real = T.train_claimed_folds

    def after_the_worker_claims(job, fold_rows, claims):  # tiny folds train in seconds: let the worker start
        deadline = time.monotonic() + 120
        while not any(claims.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return real(job, fold_rows, claims)

    monkeypatch.setattr(T, "train_claimed_folds", after_the_worker_claims)
    run = tmp_path / "run"
    got = T.main(tiny_run_data, run, cfg, progress=False, write_report=False, device="cpu")
    log = (run / "train.log").read_text()
    assert "1 fold worker process(es)" in log
    assert "] trained folds 0" in log  # the worker's own lines, tagged, in the run's log
    assert "a fold worker failed" not in log
    for name in ("poster", "plot", "fused", "tfidf_logreg"):
        for k in ("micro_f1", "macro_f1", "mAP"):
            assert got["models"][name][k] == pytest.approx(ref["models"][name][k], abs=1e-6), (name, k)
    assert got["thresholds"] == ref["thresholds"]


def test_fold_workers_wait_for_cached_baselines(tiny_run_data, tiny_run_cache, crossfit_run, monkeypatch):
    """No worker while a fold's baselines still need fitting (their background fit takes the spare core), with
    fold_workers = 0, or with no spare core."""
    import dataclasses
    import os

    _, cfg, _ = crossfit_run
    monkeypatch.setenv("GENREFUSION_CACHE", str(tiny_run_cache))
    monkeypatch.setattr(T, "FOLD_WORKER_MIN_TITLES", 0)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    from genrefusion.data.dataset import open_datasets
    from genrefusion.training.rundir import RunDir

    datasets = open_datasets(tiny_run_data)
    job = T.Job(RunDir(crossfit_run[0]), cfg, list(T.ALL_MODELS), False, torch.device("cpu"), 0.0)
    T.prepare_data(job, datasets)
    T.compute_features(job)
    folds = T.fold_partition(job, datasets)
    assert T.fold_workers_wanted(job, folds) == 1
    assert T.fold_workers_wanted(dataclasses.replace(job, cfg=cfg.replace({"train.fold_workers": 0})), folds) == 0
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert T.fold_workers_wanted(job, folds) == 0
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    other = dataclasses.replace(job, cfg=cfg.replace({"seed": cfg.seed + 7}))  # other fold seeds: nothing cached
    assert T.fold_workers_wanted(other, folds) == 0


def test_a_failed_fold_worker_leaves_its_folds_to_the_main_process(tiny_run_data, tiny_run_cache, crossfit_run,
                                                                   tmp_path, monkeypatch):
    import os
    import sys

    _, cfg, ref = crossfit_run
    monkeypatch.setenv("GENREFUSION_CACHE", str(tiny_run_cache))
    monkeypatch.setattr(T, "FOLD_WORKER_MIN_TITLES", 0)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(sys, "executable", "/bin/false")  # the worker exits 1 at once
    run = tmp_path / "run"
    got = T.main(tiny_run_data, run, cfg, progress=False, write_report=False, device="cpu")
    log = (run / "train.log").read_text()
    assert "a fold worker failed (exit code 1)" in log
    assert got["models"]["fused"]["micro_f1"] == pytest.approx(ref["models"]["fused"]["micro_f1"], abs=1e-6)
    assert got["thresholds"] == ref["thresholds"]
