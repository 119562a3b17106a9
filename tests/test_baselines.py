"""Baselines: the linear probe on frozen features (masking, missing inputs, C on dev, round trip)."""
from __future__ import annotations

import numpy as np
import pytest

from genrefusion.baselines import LinearProbe, fit_linear_probe
from genrefusion.metrics import masked_map


def _features(n, seed=0):
    """Genre 0 readable from the image block, genre 1 from the text block; genre 2 from neither."""
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, 3)) < 0.3).astype(np.float32)
    image = rng.normal(size=(n, 8)).astype(np.float32)
    text = rng.normal(size=(n, 5)).astype(np.float32)
    image[:, 0] += 3 * Y[:, 0]
    text[:, 0] += 3 * Y[:, 1]
    image_ok = rng.random(n) < 0.7
    text_ok = rng.random(n) < 0.7
    image_ok[~image_ok & ~text_ok] = True  # every title has an input
    return {"image": image, "image_ok": image_ok, "text": text, "text_ok": text_ok}, Y


def test_probe_learns_from_its_own_inputs_only():
    inp, Y = _features(600)
    M = np.ones_like(Y)
    S = {m: LinearProbe(m, C=1.0).fit(**inp, Y=Y, M=M).predict_proba(**inp) for m in ("poster", "plot", "fused")}
    ok_i, ok_t = inp["image_ok"], inp["text_ok"]
    ap = lambda s, rows, j: masked_map(Y[rows][:, [j]], s[rows][:, [j]])  # noqa: E731
    assert ap(S["poster"], ok_i, 0) > 0.9 and ap(S["poster"], ok_i, 1) < 0.6
    assert ap(S["plot"], ok_t, 1) > 0.9 and ap(S["plot"], ok_t, 0) < 0.6
    assert ap(S["fused"], ok_i, 0) > 0.9 and ap(S["fused"], ok_t, 1) > 0.9
    # without its input the poster probe answers the genre's training rate, whatever the (garbage) features say
    no_img = ~ok_i
    rate = Y.mean(0)
    assert np.allclose(S["poster"][no_img], rate, atol=1e-6)


def test_probe_respects_the_genre_mask():
    inp, Y = _features(400, seed=1)
    M = np.ones_like(Y)
    M[:200, 0] = 0
    Y_poisoned = Y.copy()
    Y_poisoned[:200, 0] = 1 - Y[:200, 0]  # unlabelled entries are garbage: they must not be learned from
    a = LinearProbe("poster", C=1.0).fit(**inp, Y=Y_poisoned, M=M)
    b = LinearProbe("poster", C=1.0).fit(**inp, Y=Y, M=M)
    assert np.allclose(a.coef_, b.coef_) and np.allclose(a.prior_, b.prior_)
    c = LinearProbe("poster", C=1.0).fit(**inp, Y=Y_poisoned, M=np.ones_like(Y))
    assert not np.allclose(a.coef_[0], c.coef_[0], atol=0.1)  # the poisoned labels would have changed it


def test_one_class_genre_and_missing_features():
    inp, Y = _features(100, seed=2)
    Y[:, 2] = 0
    probe = LinearProbe("fused").fit(**inp, Y=Y, M=np.ones_like(Y))
    assert np.allclose(probe.predict_proba(**inp)[:, 2], 1e-4, atol=1e-5)  # never positive in training
    with pytest.raises(ValueError, match="needs plot features"):
        LinearProbe("plot").fit(inp["image"], inp["image_ok"], None, None, Y, np.ones_like(Y))


def test_fit_picks_C_on_dev_and_round_trips():
    inp, Y = _features(500, seed=3)
    tr = {k: v[:400] for k, v in inp.items()}
    dv = {k: v[400:] for k, v in inp.items()}
    M = np.ones_like(Y)
    probe, Sd, info = fit_linear_probe("fused", tr, Y[:400], M[:400], dv, Y[400:], M[400:])
    assert set(info["dev_mAP_by_C"]) and info["C"] == max(info["dev_mAP_by_C"], key=info["dev_mAP_by_C"].get)
    assert info["inputs"] == ["poster", "plot"]
    again = LinearProbe.from_state(*probe.state())
    assert np.allclose(again.predict_proba(**dv), Sd)


def test_genre_without_titles_that_have_the_input():
    inp, Y = _features(120, seed=4)
    M = np.ones_like(Y)
    M[inp["text_ok"], 2] = 0  # genre 2 labelled only on titles without a plot
    probe = LinearProbe("plot").fit(**inp, Y=Y, M=M)
    assert not probe.coef_[2].any()
