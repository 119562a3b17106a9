"""Metrics: equal to scikit-learn on unmasked data, hand-checked tiny cases, and masking semantics."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, hamming_loss

from genrefusion.metrics import masked_map, multilabel_metrics, selection_score


def _random(n=40, g=5, seed=0):
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, g)) < 0.3).astype(int)
    Y[0] = 1  # every genre has a positive
    S = np.clip(Y * 0.3 + rng.random((n, g)) * 0.7, 0, 1)
    return Y, S, (S >= 0.5).astype(int)


def test_unmasked_equals_sklearn():
    Y, S, P = _random()
    m = multilabel_metrics(Y, P, None, S, list("abcde"))
    assert m["micro_f1"] == pytest.approx(f1_score(Y, P, average="micro"))
    assert m["macro_f1"] == pytest.approx(f1_score(Y, P, average="macro", zero_division=0))
    assert m["weighted_f1"] == pytest.approx(f1_score(Y, P, average="weighted", zero_division=0))
    has = Y.sum(1) > 0  # per-title figures: over the titles with a positive
    assert 0 < has.sum() < len(Y) and m["n_titles_with_positive"] == has.sum()
    assert m["samples_f1"] == pytest.approx(f1_score(Y[has], P[has], average="samples", zero_division=0))
    assert m["hamming_loss"] == pytest.approx(hamming_loss(Y, P))
    assert m["mAP"] == pytest.approx(average_precision_score(Y, S, average="macro"))
    assert m["exact_match"] == pytest.approx(np.mean((Y[has] == P[has]).all(1)))
    assert m["per_label_accuracy"] == pytest.approx(np.mean(Y == (S > 0.5)))
    for j, g in enumerate("abcde"):
        c = m["per_genre"][g]
        assert c["tp"] == int(((Y[:, j] == 1) & (P[:, j] == 1)).sum())
        assert c["tp"] + c["fp"] + c["fn"] + c["tn"] == len(Y)
        assert c["support"] == int(Y[:, j].sum())


def test_hand_checked_tiny_case():
    Y = np.array([[1, 0], [1, 1], [0, 0]])
    P = np.array([[1, 1], [0, 1], [0, 0]])
    m = multilabel_metrics(Y, P, genres=["A", "B"])
    # pooled: TP 2 (row0 A, row1 B), FP 1 (row0 B), FN 1 (row1 A) -> F1 = 4 / (4 + 2)
    assert m["micro_f1"] == pytest.approx(2 / 3)
    # A: P 1/1, R 1/2 -> 2/3;  B: P 1/2, R 1/1 -> 2/3
    assert m["macro_f1"] == pytest.approx(2 / 3)
    assert m["hamming_loss"] == pytest.approx(2 / 6)
    assert m["exact_match"] == 0.0  # row 2 has no positive: left out of the per-title figures
    assert m["samples_f1"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert m["per_genre"]["A"] == {**m["per_genre"]["A"], "tp": 1, "fn": 1, "fp": 0, "tn": 1}


def test_masked_entries_count_neither_way():
    Y, S, P = _random(seed=1)
    M = np.ones_like(Y)
    M[:10, 2] = 0  # genre 2 unknown for the first 10 titles
    # make the masked entries maximally wrong: they must not change anything
    Yw, Pw, Sw = Y.copy(), P.copy(), S.copy()
    Yw[:10, 2], Pw[:10, 2], Sw[:10, 2] = 1, 0, 0.0
    a = multilabel_metrics(Yw, Pw, M, Sw, list("abcde"))
    Y2, P2, S2 = Y.copy(), P.copy(), S.copy()
    Y2[:10, 2], P2[:10, 2], S2[:10, 2] = 0, 1, 1.0
    b = multilabel_metrics(Y2, P2, M, S2, list("abcde"))
    for k in ("micro_f1", "macro_f1", "weighted_f1", "samples_f1", "mAP", "hamming_loss", "exact_match",
              "per_label_accuracy"):
        assert a[k] == pytest.approx(b[k]), k
    lab = M.astype(bool)
    assert a["micro_f1"] == pytest.approx(f1_score(Yw[lab], Pw[lab]))
    assert a["per_genre"]["c"]["labelled"] == len(Y) - 10
    # the masked genre's F1 is the sklearn F1 of its labelled rows
    assert a["per_genre"]["c"]["f1"] == pytest.approx(f1_score(Y[10:, 2], P[10:, 2]))
    assert masked_map(Yw, Sw, M) == pytest.approx(a["mAP"])


def test_genre_without_positives_is_left_out_of_macro():
    Y = np.array([[1, 0], [0, 0], [1, 0]])
    P = np.array([[1, 1], [0, 0], [0, 0]])
    m = multilabel_metrics(Y, P, genres=["A", "B"], S=P.astype(float))
    assert m["genres_without_positives"] == ["B"]
    assert m["macro_f1"] == pytest.approx(f1_score(Y[:, 0], P[:, 0]))
    assert m["mAP"] == pytest.approx(average_precision_score(Y[:, 0], P[:, 0]))


def test_a_single_genre_is_scored_like_any_other():
    # sklearn reads one column as binary, and refused samples-F1 for it: a run whose data left one genre crashed
    Y, P = np.array([[1], [0], [1], [0]]), np.array([[1], [1], [0], [0]])
    m = multilabel_metrics(Y, P, S=np.array([[0.9], [0.6], [0.4], [0.1]]), genres=["Drama"])
    assert m["micro_f1"] == pytest.approx(0.5) and m["exact_match"] == pytest.approx(0.5)
    assert m["samples_f1"] == pytest.approx(0.5)  # the titles with a positive: 1 (found), 0 (a miss)


def test_always_negative_and_empty():
    Y, _, _ = _random(seed=2)
    Z = np.zeros_like(Y)
    m = multilabel_metrics(Y, Z, None, Z.astype(float))
    assert m["micro_f1"] == 0.0 and m["macro_f1"] == 0.0
    assert m["per_label_accuracy"] == pytest.approx(1 - Y.mean())  # the paper's "accuracy" for free
    assert m["samples_f1"] == 0.0 and m["exact_match"] == 0.0  # no credit for titles with nothing to find
    none = multilabel_metrics(np.zeros((3, 2)), np.zeros((3, 2)), genres=["A", "B"])
    assert none["samples_f1"] is None and none["n_titles_with_positive"] == 0
    e = multilabel_metrics(np.zeros((0, 3)), np.zeros((0, 3)))
    assert e["micro_f1"] is None and e["n_titles"] == 0
    with pytest.raises(ValueError):
        multilabel_metrics(np.zeros((2, 3)), np.zeros((2, 2)))


def test_selection_score_metrics():
    Y, S, P = _random(seed=3)
    assert selection_score("mAP", Y, S, None) == pytest.approx(average_precision_score(Y, S))
    assert selection_score("micro_f1", Y, S, None) == pytest.approx(f1_score(Y, P, average="micro"))
    thr = np.full(Y.shape[1], 0.9)
    assert selection_score("micro_f1", Y, S, None, thr) == pytest.approx(
        f1_score(Y, (S >= 0.9).astype(int), average="micro"))


# -- bootstrap intervals -------------------------------------------------------------------------------------
def _masked_case(n=300, g=6, seed=3):
    rng = np.random.default_rng(seed)
    Y = rng.random((n, g)) < 0.25
    P = (Y & (rng.random((n, g)) < 0.7)) | (rng.random((n, g)) < 0.1)
    M = rng.random((n, g)) < 0.8
    return Y.astype(int), P.astype(int), M.astype(int)


def test_resampled_f1_is_the_metric_of_the_resampled_titles():
    """Each draw's micro/macro-F1 equals multilabel_metrics on the titles that draw picked (masks included)."""
    from genrefusion.metrics import bootstrap_draws, resampled_f1

    Y, P, M = _masked_case()
    W = bootstrap_draws(len(Y), draws=5, seed=1)
    micro, macro = resampled_f1(W, Y, P, M)
    for d in range(5):
        idx = np.repeat(np.arange(len(Y)), W[d].astype(int))
        ref = multilabel_metrics(Y[idx], P[idx], M[idx])
        assert micro[d] == pytest.approx(ref["micro_f1"], abs=1e-6)
        assert macro[d] == pytest.approx(ref["macro_f1"], abs=1e-6)
    # one draw of every title once is the point estimate
    micro, macro = resampled_f1(np.ones((1, len(Y)), np.float32), Y, P, M)
    ref = multilabel_metrics(Y, P, M)
    assert micro[0] == pytest.approx(ref["micro_f1"]) and macro[0] == pytest.approx(ref["macro_f1"])


def test_intervals_hold_the_estimate_and_narrow_with_more_titles():
    from genrefusion.metrics import bootstrap_draws, interval, resampled_f1

    Y, P, M = _masked_case(n=200)
    point = multilabel_metrics(Y, P, M)["micro_f1"]
    lo, hi = interval(resampled_f1(bootstrap_draws(len(Y)), Y, P, M)[0])
    assert lo < point < hi
    big = [np.tile(a, (9, 1)) for a in (Y, P, M)]  # the same titles, nine times as many
    lo9, hi9 = interval(resampled_f1(bootstrap_draws(len(big[0])), *big)[0])
    assert lo9 < point < hi9 and (hi9 - lo9) < 0.5 * (hi - lo)  # ~1/3 as wide
    assert interval([np.nan, np.nan]) is None


def test_paired_difference_interval():
    """Same draws for two models: identical predictions differ by exactly 0; removing false positives is a
    difference the interval resolves."""
    from genrefusion.metrics import bootstrap_draws, interval, resampled_f1

    Y, P, M = _masked_case(n=400)
    W = bootstrap_draws(len(Y))
    a = resampled_f1(W, Y, P, M)[0]
    assert interval(a - resampled_f1(W, Y, P.copy(), M)[0]) == [0.0, 0.0]
    better = P & Y  # every false positive gone
    lo, hi = interval(resampled_f1(W, Y, better, M)[0] - a)
    assert 0 < lo <= hi


def test_verdict_lines_give_the_difference_interval():
    from genrefusion.metrics import verdict_lines

    lines = verdict_lines([
        {"model": "fused", "probe": "linear_probe_fused", "titles": "poster", "n": 90, "micro_f1": 0.48,
         "probe_micro_f1": 0.49, "beats": False, "difference_ci95": [-0.04, 0.02]},
        {"model": "plot", "probe": "linear_probe_plot", "titles": "all", "n": 300, "micro_f1": 0.52,
         "probe_micro_f1": 0.51, "beats": True, "difference_ci95": [-0.01, 0.03]},
    ])
    assert any("does NOT beat" in ln and "difference -0.010, 95% interval -0.040 to +0.020" in ln for ln in lines)
    assert any("plot model beats its linear probe on every" in ln for ln in lines)
    assert any("plot model's lead over its probe is within the bootstrap interval on all titles" in ln for ln in lines)


def test_single_input_models_meet_their_probes_on_the_titles_they_read():
    """Scored on plot-only titles, a poster model gets no verdict (it reads nothing there, nor does its probe), and
    the plot model's overall verdict is read on the titles with a plot."""
    import numpy as np

    from genrefusion.evaluate import score_models
    from genrefusion.thresholds import ThresholdSets

    rng = np.random.default_rng(0)
    n, G = 40, 3
    Y = (rng.random((n, G)) < 0.4).astype(int)
    scores = {name: np.clip(Y * 0.5 + rng.random((n, G)) * 0.6, 0, 1) for name in
              ("poster", "linear_probe_poster", "plot", "linear_probe_plot", "fused", "linear_probe_fused")}
    sets = {name: ThresholdSets(np.full(G, 0.5)) for name in scores}
    image_ok, text_ok = np.zeros(n, bool), np.ones(n, bool)
    out = score_models(Y, np.ones_like(Y), scores, sets, image_ok, text_ok, np.full(n, "movie"), list("abc"))
    parts = {(v["model"], v["titles"]) for v in out["probe_verdicts"]}
    assert not any(m == "poster" for m, _ in parts)
    assert ("plot", "with_plot") in parts and ("plot", "all") not in parts and ("fused", "all") in parts
    # every title is plot-only: the per-combination verdicts would repeat the overall ones
    assert ("plot", "plot") not in parts and ("fused", "plot") not in parts
    assert out["models"]["poster"]["micro_f1"] in (0.0, None)  # no genre from a title it cannot read
    assert "with_input" not in out
    # with posters on half the titles, the poster model is judged on exactly those
    image_ok[:20] = True
    out = score_models(Y, np.ones_like(Y), scores, sets, image_ok, text_ok, np.full(n, "movie"), list("abc"))
    v = {(x["model"], x["titles"]): x for x in out["probe_verdicts"]}
    assert v[("poster", "with_poster")]["n"] == 20 and ("poster", "all") not in v
    assert v[("plot", "plot")]["n"] == 20 and v[("fused", "both")]["n"] == 20 and v[("fused", "all")]["n"] == 40
