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


# -- per input combination, regularised ----------------------------------------------------------------------
from genrefusion.thresholds import (COMBINATION_RULES, POOLED_RULES, ThresholdSets,  # noqa: E402
                                    combination_keys, inputs_of, loo_best_thresholds, parse_rules,
                                    served_combinations, tune_threshold_sets)


def test_leave_one_out_thresholds_match_refitting_without_each_row():
    rng = np.random.default_rng(2)
    for trial in range(25):
        n = int(rng.integers(2, 40))
        y = (rng.random(n) < 0.3).astype(int)
        s = np.round(rng.random(n), 1 if trial % 2 else 3)  # coarse rounding: many ties and lone scores
        full, loo = loo_best_thresholds(y, s)
        assert full == best_f1_threshold(y, s)[0]
        for i in range(n):
            want = best_f1_threshold(np.delete(y, i), np.delete(s, i))[0]
            assert loo[i] == pytest.approx(want), (trial, i)


def test_combination_keys_follow_what_the_model_reads():
    img = np.array([1, 1, 0, 0], bool)
    txt = np.array([1, 0, 1, 0], bool)
    assert list(combination_keys(img, txt)) == ["both", "poster", "plot", "none"]
    assert list(combination_keys(img, txt, ("poster",))) == ["poster", "poster", "none", "none"]
    assert list(combination_keys(img, txt, ("plot",))) == ["plot", "none", "plot", "none"]
    # a title with no input the model reads gets no genre, whatever its (prior) score: not the pooled set's guess
    sets = ThresholdSets(np.array([0.03, 0.4]), {"plot": np.array([0.2, 0.5])})
    T, name = sets.pick("none")
    assert name == "none" and (T > 1).all()
    rows = sets.rows(combination_keys(img, txt, ("plot",)))
    assert (rows[[1, 3]] > 1).all() and np.allclose(rows[[0, 2]], [0.2, 0.5])
    back = inputs_of(combination_keys(img, txt))  # the inverse, as run score files need it
    np.testing.assert_array_equal(back[0], img)
    np.testing.assert_array_equal(back[1], txt)
    assert served_combinations(("poster", "plot")) == ("both", "poster", "plot")
    assert served_combinations(("plot",)) == ("plot",)


def _two_populations(seed=0, n=300):
    """Genre 0 on poster-only and plot-only dev titles whose scores sit on different scales."""
    rng = np.random.default_rng(seed)
    keys = np.array(["poster"] * n + ["plot"] * n, dtype=object)
    y = (rng.random(2 * n) < 0.3).astype(int)
    s = np.where(y == 1, 0.55, 0.35) + rng.normal(0, 0.05, 2 * n)
    s[n:] -= 0.25  # plot-only titles score lower: their best cut is ~0.2, the poster-only one ~0.45
    return y[:, None], s[:, None], keys


def test_each_set_is_tuned_on_the_titles_with_that_combination_only():
    Y, S, keys = _two_populations()
    sets, info = tune_threshold_sets(Y, S, None, keys, rule="min_support:1")
    plot = keys == "plot"
    assert sets.sets["plot"][0] == pytest.approx(best_f1_threshold(Y[plot, 0], S[plot, 0])[0])
    assert sets.sets["poster"][0] == pytest.approx(best_f1_threshold(Y[~plot, 0], S[~plot, 0])[0])
    assert sets.sets["plot"][0] < 0.3 < sets.sets["poster"][0]
    assert sets.pick("plot") == (sets.sets["plot"], "plot")
    assert sets.pick("both")[1] == "pooled" and info["no_set"] == ["both"]  # no dev title has both inputs
    # moving the poster-only titles' scores leaves the plot-only set alone
    S2 = S.copy()
    S2[~plot] += 0.2
    again, _ = tune_threshold_sets(Y, S2, None, keys, rule="min_support:1")
    assert again.sets["plot"][0] == sets.sets["plot"][0] and again.sets["poster"][0] != sets.sets["poster"][0]
    # titles without an input the model reads are not used at all
    keys3 = keys.copy()
    keys3[:10] = "none"
    S3 = S.copy()
    S3[:10] = 0.99
    Y3 = Y.copy()
    Y3[:10] = 0
    a, info3 = tune_threshold_sets(Y3, S3, None, keys3, rule="min_support:1")
    b, _ = tune_threshold_sets(Y[10:], S[10:], None, keys[10:], rule="min_support:1")
    assert np.allclose(a.pooled, b.pooled) and np.allclose(a.sets["poster"], b.sets["poster"])
    assert info3["sets"]["plot"]["dev_titles"] == 300 and info3["pooled"]["dev_titles"] == 590


def test_rare_genre_threshold_is_regularised_and_the_rule_chosen_by_leave_one_out():
    """A genre with 2 plot-only dev positives that happen to score low (0.08-0.1) must not get a threshold
    that low: the Musical-at-0.09 case."""
    rng = np.random.default_rng(3)
    n, G = 400, 6
    keys = np.array(["plot"] * n, dtype=object)
    Y = (rng.random((n, G)) < 0.25).astype(int)
    S = np.clip(np.where(Y == 1, 0.6, 0.3) + rng.normal(0, 0.12, (n, G)), 0, 1)
    Y[:, 5] = 0
    Y[:2, 5] = 1
    S[:, 5] = rng.random(n) * 0.3  # an uninformative score; ~2/3 of the negatives score above 0.1
    S[:2, 5] = [0.08, 0.1]
    raw, _ = tune_threshold_sets(Y, S, None, keys, rule="min_support:1")
    assert raw.sets["plot"][5] < 0.1  # what tuning on 2 positives gives
    sets, info = tune_threshold_sets(Y, S, None, keys)
    assert info["chosen_by"] == "leave-one-out on dev"
    loo = info["leave_one_out"]
    pooled_rule, combination_rule = (r.strip() for r in info["rule"].split("/"))
    assert len(loo) == len(POOLED_RULES) and loo[pooled_rule]["score"] == max(v["score"] for v in loo.values())
    # each combination's rule is the best of every combination rule on its own dev titles
    rated = dict(loo[pooled_rule]["by_combination"]["plot"])
    assert rated.pop("chosen_on") == "its own dev titles"  # 400 dev titles: enough to choose on
    assert len(rated) == len(COMBINATION_RULES) and rated[combination_rule] == max(rated.values())
    assert info["combination_rules"] == {"plot": combination_rule}
    assert sets.pick("plot")[0][5] > 0.25  # close to the global threshold, far from 0.09
    assert abs(sets.pick("plot")[0][0] - raw.sets["plot"][0]) < 0.1  # well-supported genres barely move
    assert info["sets"]["plot"]["positives"]["5"] == 2 and info["pooled"]["positives"]["5"] == 2
    assert "5" in info["pooled"]["fallback"] or info["pooled"]["own_weight"]["5"] < 0.5  # the pooled level too
    if combination_rule.startswith(("shrink", "toward_combination")):
        assert info["sets"]["plot"]["own_weight"]["5"] < 0.5
    else:
        assert "5" in info["sets"]["plot"]["fallback"]


def test_a_combination_can_be_anchored_to_its_own_single_threshold():
    """Titles with both inputs score on another scale than the single-input titles that dominate each genre's
    pooled threshold: with few of them, their genres are better pulled toward the one cut that suits all
    their genres than toward the pooled thresholds. Each combination's rule is chosen on its own titles."""
    rng = np.random.default_rng(5)
    G, n_single, n_both = 12, 1500, 120
    keys = np.array(["poster"] * n_single + ["plot"] * n_single + ["both"] * n_both, dtype=object)
    Y = (rng.random((len(keys), G)) < 0.2).astype(int)
    S = np.where(Y == 1, 0.45, 0.2) + rng.normal(0, 0.1, Y.shape)
    both = keys == "both"
    S[both] = np.where(Y[both] == 1, 0.85, 0.55) + rng.normal(0, 0.1, (n_both, G))  # higher scale, few titles
    sets, info = tune_threshold_sets(Y, S, None, keys, genres=[f"g{j}" for j in range(G)])
    assert info["combination_rules"]["both"].startswith(("toward_combination", "combination_global"))
    assert 0.6 < info["combination_global"]["both"] < 0.8 and info["combination_global"]["plot"] < 0.45
    assert np.all(np.abs(sets.sets["both"] - info["combination_global"]["both"]) < 0.1)
    by = info["leave_one_out"][info["rule"].split(" / ")[0]]["by_combination"]["both"]
    assert by[info["combination_rules"]["both"]] > max(v for r, v in by.items() if r.startswith(("shrink", "min_support")))
    assert by["chosen_on"] == "its own dev titles"
    # with a handful of such titles, their rule is the one chosen over all dev titles, anchored to the pooled
    # thresholds: a choice (or a single cut) made on 30 titles is noise
    few = np.r_[np.arange(2 * n_single), 2 * n_single + np.arange(30)]
    _, info_few = tune_threshold_sets(Y[few], S[few], None, keys[few], genres=[f"g{j}" for j in range(G)])
    pooled_rule = info_few["rule"].split(" / ")[0]
    by_few = info_few["leave_one_out"][pooled_rule]["by_combination"]
    assert by_few["both"]["chosen_on"] == "all dev titles" and by_few["plot"]["chosen_on"] == "its own dev titles"
    assert not info_few["combination_rules"]["both"].startswith(("toward_combination", "combination_global"))
    # the fixed rule from the config applies to every combination and reads back
    fixed, info2 = tune_threshold_sets(Y, S, None, keys, rule="shrink:5 / toward_combination:40")
    assert info2["rule"] == "shrink:5 / toward_combination:40" and info2["chosen_by"] == "config"
    assert set(info2["combination_rules"].values()) == {"toward_combination:40"}
    n = info2["sets"]["both"]["positives"]["0"]
    t_own = best_f1_threshold(Y[both, 0], S[both, 0])[0]
    assert fixed.sets["both"][0] == pytest.approx((n * t_own + 40 * info2["combination_global"]["both"]) / (n + 40))


def test_single_input_models_have_one_set_and_rules_parse():
    Y, S, keys = _two_populations()
    plot = keys == "plot"
    sets, info = tune_threshold_sets(Y[plot], S[plot], None, keys[plot], served_combinations(("plot",)))
    assert set(sets.sets) == {"plot"} and np.array_equal(sets.sets["plot"], sets.pooled)
    assert info["rule"].endswith("/ pooled") and len(info["leave_one_out"]) == len(POOLED_RULES)
    assert parse_rules("shrink:5") == (("shrink", 5), ("shrink", 5))
    assert parse_rules("min_support:3 / pooled") == (("min_support", 3), ("pooled", 0))
    assert parse_rules("shrink:5 / combination_global") == (("shrink", 5), ("combination_global", 0))
    for bad in ("pooled", "shrink", "shrink:0", "median:3", "shrink:5 / shrink:5 / shrink:5", "toward_combination:5",
                "combination_global / shrink:5", "shrink:5 / toward_combination"):
        with pytest.raises(ValueError, match="threshold rule"):
            parse_rules(bad)
    # 'pooled' at the combination level: no per-combination set, requests use the pooled one
    Y2, S2, keys2 = _two_populations(seed=1)
    sets2, info2 = tune_threshold_sets(Y2, S2, None, keys2, rule="shrink:5 / pooled")
    assert sets2.sets == {} and sets2.pick("plot")[1] == "pooled" and set(info2["no_set"]) == {"both", "poster",
                                                                                                 "plot"}


def test_genre_no_dev_title_of_a_combination_labels_is_never_predicted_from_it():
    """Musical labelled only by a poster-only dataset: no dev title with a plot labels it, so a plot-only
    request must never get Musical, whatever the model scores (the 167-false-positive case of the
    leave-one-dataset-out benchmark); poster-only requests keep their tuned threshold."""
    from genrefusion.decision import decide
    from genrefusion.thresholds import NEVER

    Y, S, keys = _two_populations()
    Y, S = np.hstack([Y, Y]), np.hstack([S, S])  # genre 1 ("Musical"): same data ...
    M = np.ones_like(Y, dtype=bool)
    M[keys == "plot", 1] = False  # ... but no plot-only dev title is labelled for it
    for rule in ("min_support:1", "shrink:5 / pooled", "auto"):
        sets, info = tune_threshold_sets(Y, S, M, keys, rule=rule, genres=["Drama", "Musical"])
        plot_set, name = sets.pick("plot")
        assert name == "plot" and plot_set[1] == NEVER and plot_set[0] < 1, rule
        assert sets.pick("poster")[0][1] < 1 and info["never"] == {"plot": ["Musical"]}, rule
        assert decide(np.array([0.9, 1.0]), ["Drama", "Musical"], plot_set) == ["Drama"], plot_set
    # a plot-only model: its one set (its pooled set) never predicts Musical either
    plot = keys == "plot"
    single, info1 = tune_threshold_sets(Y[plot], S[plot], M[plot], keys[plot], served_combinations(("plot",)),
                                        genres=["Drama", "Musical"])
    assert single.pooled[1] == NEVER and single.sets["plot"][1] == NEVER and info1["never"] == {"plot": ["Musical"]}
    # a genre labelled only on dev titles with both inputs (Crime, when the plot-only dev titles come from a
    # dataset without it) is checked for plot-only requests by them: not 'never'
    keys_b = keys.copy()
    keys_b[:50] = "both"
    M_b = np.ones_like(Y, dtype=bool)
    M_b[50:, 1] = False
    sets_b, info_b = tune_threshold_sets(Y, S, M_b, keys_b, rule="min_support:1", genres=["Drama", "Crime"])
    assert info_b["never"] == {} and sets_b.pick("plot")[0][1] <= 1
    # labelled (even with no positive) is checked: the tuned threshold stands
    M[np.flatnonzero(plot)[0], 1] = True
    Y[np.flatnonzero(plot)[0], 1] = 0
    sets3, info3 = tune_threshold_sets(Y, S, M, keys, rule="min_support:1", genres=["Drama", "Musical"])
    assert info3["never"] == {} and sets3.pick("plot")[0][1] <= 1


def test_threshold_sets_json_round_trip_and_single_set_bundles():
    sets = ThresholdSets(np.array([0.3, 0.5]), {"plot": np.array([0.2, 0.4])})
    again = ThresholdSets.from_json(sets.to_json())
    assert np.allclose(again.pooled, sets.pooled) and np.allclose(again.sets["plot"], [0.2, 0.4])
    old = ThresholdSets.from_json([0.3, 0.5])  # what bundles stored before per-combination sets
    assert old.sets == {} and old.pick("plot")[1] == "pooled"
    assert np.allclose(sets.rows(["plot", "both"]), [[0.2, 0.4], [0.3, 0.5]])


def test_a_combination_takes_the_simplest_rule_within_the_tolerance_of_the_best(monkeypatch):
    from genrefusion import thresholds as TH

    rated = {("shrink", 5): 0.664, ("shrink", 100): 0.665, ("combination_global", 0): 0.658, ("pooled", 0): 0.650}
    monkeypatch.setattr(TH, "RULE_TOLERANCE", 0.01)
    assert TH._simplest_near_best(rated) == ("combination_global", 0)  # 0.007 below the best: indistinguishable
    monkeypatch.setattr(TH, "RULE_TOLERANCE", 0.005)
    assert TH._simplest_near_best(rated) == ("shrink", 100)  # the simplest within 0.005 is the best itself here
    monkeypatch.setattr(TH, "RULE_TOLERANCE", 0.0)
    assert TH._simplest_near_best(rated) == ("shrink", 100)
    assert TH._simplest_near_best({("min_support", 10): 0.5}) == ("min_support", 10)
    assert set(TH.SIMPLEST_FIRST) == set(TH.COMBINATION_RULES)  # every rule has a place in the order
