"""evaluate.cross_validated_f1: dev F1 with every title decided by thresholds tuned on the other folds."""
from __future__ import annotations

import numpy as np
import pytest

import genrefusion.evaluate as ev
from genrefusion.evaluate import cross_validated_f1, predictions, tune_model_thresholds
from genrefusion.metrics import multilabel_metrics

GENRES = ["A", "B", "C", "D"]


def _data(n=240, seed=0, informative=True):
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, len(GENRES))) < 0.3).astype(np.int64)
    noise = rng.random(Y.shape)
    S = np.clip(0.6 * Y + 0.4 * noise, 0, 1) if informative else noise
    M = np.ones_like(Y)
    img, txt = rng.random(n) < 0.7, np.ones(n, bool)
    img[:20] = True
    txt[:10] = False  # poster-only titles
    return Y, S, M, img, txt


def test_separable_scores_score_one_everywhere():
    Y, S, M, img, txt = _data()
    S = 0.2 + 0.6 * Y  # every positive above every negative
    cv = cross_validated_f1("fused", Y, S, M, img, txt, GENRES)
    assert set(cv) == {"all", "both", "poster", "plot"}
    assert cv["all"]["n_titles"] == len(Y) and cv["poster"]["n_titles"] == int((img & ~txt).sum())
    for part in cv.values():
        assert part["micro_f1"] == 1.0 and part["macro_f1"] == 1.0


def test_held_out_titles_never_tune_their_own_thresholds(monkeypatch):
    Y, S, M, img, txt = _data(n=200)
    seen = []

    def spy(name, Yf, *a, **kw):
        seen.append(len(Yf))
        return tune_model_thresholds(name, Yf, *a, **kw)

    monkeypatch.setattr(ev, "tune_model_thresholds", spy)
    cross_validated_f1("fused", Y, S, M, img, txt, GENRES, folds=5, repeats=2)
    assert seen == [160] * 10  # 4/5 of the titles, 5 folds x 2 repetitions


def test_thresholds_tuned_on_the_scored_titles_flatter_noise_and_cross_validation_does_not():
    # scores carry no information: F1 with thresholds tuned on the same titles is inflated, the cross-validated
    # one falls back to what a threshold learnt elsewhere achieves
    Y, S, M, img, txt = _data(n=120, seed=3, informative=False)
    sets, _ = tune_model_thresholds("fused", Y, S, M, img, txt, GENRES)
    from genrefusion.thresholds import combination_keys

    in_sample = multilabel_metrics(Y, predictions(S, sets.rows(combination_keys(img, txt))), M)["micro_f1"]
    cv = cross_validated_f1("fused", Y, S, M, img, txt, GENRES)["all"]["micro_f1"]
    assert in_sample - cv > 0.02
    informative = cross_validated_f1("fused", *_data(n=120, seed=3)[:3], img, txt, GENRES)["all"]["micro_f1"]
    assert informative > cv + 0.2


def test_too_few_titles_is_a_clear_error():
    Y, S, M, img, txt = _data(n=4)
    with pytest.raises(ev.DatasetError, match="at least 5 dev titles"):
        cross_validated_f1("fused", Y, S, M, img, txt, GENRES)


def test_a_second_stage_and_a_decision_rule_are_read_fold_by_fold():
    Y, S, M, img, txt = _data(n=120, seed=4)
    plain = cross_validated_f1("fused", Y, S, M, img, txt, GENRES)
    seen = []
    same = cross_validated_f1("fused", Y, S, M, img, txt, GENRES, rescore=lambda fit: seen.append(fit.sum()) or S)
    assert same == plain and len(seen) == 5 * 3 and all(n < len(Y) for n in seen)  # fitted on 4/5 each time
    none = cross_validated_f1("fused", Y, S, M, img, txt, GENRES, decide=lambda S, T, M, P: P * 0)
    assert none["all"]["micro_f1"] == 0.0 and plain["all"]["micro_f1"] > 0
