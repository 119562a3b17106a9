"""Per-genre threshold tuning on dev."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from genrefusion.thresholds import best_f1_threshold, tune_thresholds


def test_best_threshold_maximises_f1_by_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = (rng.random(30) < 0.3).astype(int)
        y[0] = 1
        s = np.round(rng.random(30), 2)  # ties on purpose
        t, f = best_f1_threshold(y, s)
        brute = max(f1_score(y, (s >= c).astype(int), zero_division=0) for c in np.unique(s))
        assert f == pytest.approx(brute)
        assert f1_score(y, (s >= t).astype(int)) == pytest.approx(brute)


def test_threshold_sits_between_scores():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.3, 0.6, 0.9])
    t, f = best_f1_threshold(y, s)
    assert f == 1.0 and t == pytest.approx(0.45)  # halfway between 0.3 and 0.6
    assert best_f1_threshold(np.zeros(4), s) == (1.0, 0.0)


def test_tune_with_mask_and_fallback():
    rng = np.random.default_rng(1)
    n = 60
    Y = np.zeros((n, 3), int)
    Y[:20, 0] = 1
    Y[:2, 1] = 1  # genre 1: only 2 dev positives -> global threshold
    S = rng.random((n, 3)) * 0.5
    S[:20, 0] += 0.5  # genre 0: positives in [0.5, 1), negatives in [0, 0.5): separable
    M = np.ones_like(Y)
    M[:, 2] = 0  # genre 2 unlabelled everywhere -> global threshold
    thr, info = tune_thresholds(Y, S, M, min_positives=3)
    assert info["fallback"] == [1, 2]
    assert thr[1] == thr[2] == info["global"]
    assert S[20:, 0].max() < thr[0] <= S[:20, 0].min()  # separates positives from negatives
    # a mask excludes rows: masking the positives of genre 0 leaves too few -> fallback
    M2 = M.copy()
    M2[:19, 0] = 0
    _, info2 = tune_thresholds(Y, S, M2, min_positives=3)
    assert 0 in info2["fallback"]
