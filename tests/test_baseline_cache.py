"""The content-keyed cache of fitted baselines: a second fit on the same inputs is a read, any change refits,
a damaged entry is refitted, and a fresh fit scores exactly like a cached one."""
import logging
from pathlib import Path

import numpy as np
import pytest

import genrefusion.baselines as B
from genrefusion.training import baseline_cache as BC

WORDS = {0: "detective murder police", 1: "love wedding kiss", 2: "alien spaceship planet"}


def _data(n, seed):
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, 3)) < 0.4).astype(np.float32)
    Y[np.arange(n), rng.integers(0, 3, n)] = 1
    plots = [" ".join(WORDS[j] for j in range(3) if Y[i, j]) + f" story {i % 7}" for i in range(n)]
    feats = {"image": (rng.normal(size=(n, 6)) + Y @ rng.normal(size=(3, 6))).astype(np.float32),
             "image_ok": rng.random(n) < 0.8,
             "text": (rng.normal(size=(n, 5)) + Y @ rng.normal(size=(3, 5))).astype(np.float32),
             "text_ok": rng.random(n) < 0.8}
    return plots, feats, Y, np.ones_like(Y)


@pytest.fixture
def args():
    ptr, ftr, Ytr, Mtr = _data(60, 0)
    pdv, fdv, Ydv, Mdv = _data(24, 1)
    return [ptr, pdv, ftr, fdv, Ytr, Mtr, Ydv, Mdv]


@pytest.fixture
def fits(monkeypatch):
    calls = []
    real = B.fit_baselines
    monkeypatch.setattr(B, "fit_baselines", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_second_fit_on_the_same_inputs_is_read_from_the_cache(tmp_path, args, fits):
    m1, dev1, info1 = BC.fit_baselines_cached(tmp_path, *args)
    m2, dev2, info2 = BC.fit_baselines_cached(tmp_path, *args)
    assert len(fits) == 1
    assert set(m1) == set(m2) == {"tfidf_logreg", "linear_probe_poster", "linear_probe_plot", "linear_probe_fused"}
    for name in m1:
        np.testing.assert_array_equal(dev1[name], dev2[name])  # cold and warm score alike, bit for bit
    assert info1 == info2
    # and the cached models are the fitted ones: scores on new titles agree
    pnew, fnew, _, _ = _data(10, 2)
    s1, s2 = B.baseline_scores(m1, pnew, fnew), B.baseline_scores(m2, pnew, fnew)
    for name in m1:
        np.testing.assert_array_equal(s1[name], s2[name])


def test_fresh_fit_scores_like_its_stored_form(tmp_path, args):
    models, dev, _ = BC.fit_baselines_cached(None, *args)  # no cache at all
    stored = BC.stored_form(models)
    again = B.baseline_scores(stored, args[1], args[3])
    for name in models:
        np.testing.assert_array_equal(dev[name], again[name])


@pytest.mark.parametrize("change", ["label", "plot", "feature", "seed", "grid"])
def test_any_change_in_what_the_fit_reads_refits(tmp_path, args, fits, monkeypatch, change):
    BC.fit_baselines_cached(tmp_path, *args)
    seed = 0
    if change == "label":
        args[4] = args[4].copy()
        args[4][0, 0] = 1 - args[4][0, 0]
    elif change == "plot":
        args[0] = ["a different plot"] + args[0][1:]
    elif change == "feature":
        args[2] = {**args[2], "text": args[2]["text"].copy()}
        args[2]["text"][3, 1] += 1e-3
    elif change == "seed":
        seed = 1
    else:
        monkeypatch.setattr(B, "PROBE_C_GRID", B.PROBE_C_GRID[:2])
    BC.fit_baselines_cached(tmp_path, *args, seed=seed)
    assert len(fits) == 2


def test_a_damaged_entry_is_refitted_and_replaced(tmp_path, args, fits, caplog):
    _, dev1, _ = BC.fit_baselines_cached(tmp_path, *args)
    (entry,) = (tmp_path / BC.NAMESPACE).iterdir()
    weights = entry / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with caplog.at_level(logging.WARNING):
        _, dev2, _ = BC.fit_baselines_cached(tmp_path, *args)
    assert len(fits) == 2
    assert any(str(entry) in r.getMessage() and "refitting" in r.getMessage() for r in caplog.records)
    for name in dev1:
        np.testing.assert_array_equal(dev1[name], dev2[name])
    BC.fit_baselines_cached(tmp_path, *args)  # the replaced entry reads back
    assert len(fits) == 2
    assert [p.name for p in (tmp_path / BC.NAMESPACE).iterdir()] == [entry.name]  # no temporary folder left


def test_an_unwritable_cache_only_costs_a_refit(tmp_path, args, fits, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING):
        models, dev, _ = BC.fit_baselines_cached(blocker, *args)
    assert set(dev) == set(models) and len(fits) == 1
    assert any("could not cache" in r.getMessage() for r in caplog.records)


def test_background_fit_fills_the_cache_the_run_then_reads(tmp_path, args, fits, monkeypatch):
    monkeypatch.setattr(BC, "BACKGROUND_MIN_TITLES", 0)
    bg = BC.BackgroundFit.start(tmp_path / "bg", *args)
    assert bg is not None and bg.wait()
    assert not list(tmp_path.glob("genrefusion-baselines-*"))
    models, dev, info = BC.fit_baselines_cached(tmp_path / "bg", *args)
    assert not fits  # read from the entry the child wrote
    # the child's fit equals one done here, in the parent
    m_here, dev_here, info_here = BC.fit_baselines_cached(tmp_path / "fg", *args)
    assert info == info_here
    for name in models:
        np.testing.assert_allclose(dev[name], dev_here[name], rtol=1e-5, atol=1e-7)
    # nothing to do once the entry is there, and nothing without a cache or for a small training set
    assert BC.BackgroundFit.start(tmp_path / "bg", *args) is None
    assert BC.BackgroundFit.start(None, *args) is None
    monkeypatch.setattr(BC, "BACKGROUND_MIN_TITLES", 61)
    assert BC.BackgroundFit.start(tmp_path / "other", *args) is None


def test_failed_background_fit_is_reported_and_the_run_fits_itself(tmp_path, args, monkeypatch, caplog):
    monkeypatch.setattr(BC, "BACKGROUND_MIN_TITLES", 0)
    broken = list(args)
    broken[4] = broken[4][:10]  # labels for 10 of the 60 training titles: the fit raises in the child
    bg = BC.BackgroundFit.start(tmp_path / "cache", *broken)
    with caplog.at_level(logging.WARNING):
        assert bg.wait() is False
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "background fit failed" in warning and "\n" not in warning  # one line, naming the error
    assert not (tmp_path / "cache" / BC.NAMESPACE).exists()


def test_stopped_background_fit_leaves_no_half_entry(tmp_path, args, monkeypatch):
    monkeypatch.setattr(BC, "BACKGROUND_MIN_TITLES", 0)
    bg = BC.BackgroundFit.start(tmp_path / "cache", *args)
    bg.stop()
    assert bg.proc.returncode is not None and not Path(bg.tmp.name).exists()
    ns = tmp_path / "cache" / BC.NAMESPACE
    entries = list(ns.iterdir()) if ns.exists() else []
    assert all((e / BC.CONFIG).is_file() for e in entries)  # killed before publishing, or a whole entry
