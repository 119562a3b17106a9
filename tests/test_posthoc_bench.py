"""benchmarks/posthoc.py: its default row is the product's cross-validated F1, and a second stage fitted on the
training folds never sees the held-out titles' labels."""
from __future__ import annotations

import numpy as np
from conftest import load_benchmark

MODELS = ("fused", "tfidf_logreg", "linear_probe_fused", "poster", "plot", "linear_probe_poster", "linear_probe_plot")


def oof_scores(n=150, g=4, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, g)) < 0.3).astype(np.uint8)
    Y[np.arange(n), rng.integers(0, g, n)] = 1
    z = {"Y": Y, "M": np.ones((n, g), np.uint8), "genres": np.array([f"g{i}" for i in range(g)]),
         "combination": np.array(["both", "poster", "plot"])[np.arange(n) % 3]}
    for m in MODELS:
        z[f"S_{m}"] = np.clip(0.35 * Y + 0.65 * rng.random((n, g)), 0.01, 0.99).astype(np.float32)
    return z


def test_default_row_equals_the_products_cross_validated_f1():
    from genrefusion.evaluate import cross_validated_f1
    from genrefusion.thresholds import inputs_of

    mod = load_benchmark("posthoc")
    z = oof_scores()
    img, txt = inputs_of(z["combination"])
    ref = cross_validated_f1("fused", z["Y"], z["S_fused"], z["M"], img, txt, list(z["genres"]))
    got = mod.cross_validate(z)
    for part in ("all", "both", "poster", "plot"):
        assert abs(got[part]["micro_f1"] - ref[part]["micro_f1"]) < 1e-3
        assert abs(got[part]["macro_f1"] - ref[part]["macro_f1"]) < 1e-3


def test_stackers_read_only_the_training_titles_labels():
    mod = load_benchmark("posthoc")
    z = oof_scores()
    fit = np.arange(len(z["Y"])) % 5 != 0
    flipped = dict(z, Y=np.where(fit[:, None], z["Y"], 1 - z["Y"]).astype(np.uint8))
    for rescore in (lambda d: mod.stack(d, fit, per_genre=False, C=1.0),
                    lambda d: mod.stack(d, fit, per_genre=True, C=1.0),
                    lambda d: mod.label_chain(d, fit)):
        a, b = rescore(z), rescore(flipped)
        assert np.allclose(a, b) and not np.allclose(a, z["S_fused"])


def test_decision_rules_fill_an_empty_title_and_cap_a_crowded_one():
    mod = load_benchmark("posthoc")
    S = np.array([[0.2, 0.4, 0.3], [0.9, 0.8, 0.7]])
    T = np.full((2, 3), 0.5)
    M = np.ones((2, 3), bool)
    P = (S >= T).astype(np.int64)
    assert mod.at_least_one(S, T, M, P).tolist() == [[0, 1, 0], [1, 1, 1]]
    assert mod.cap(2)(S, T, M, P).tolist() == [[0, 0, 0], [1, 1, 0]]


def test_held_out_fits_on_the_out_of_fold_titles_and_reads_the_held_out_ones():
    mod = load_benchmark("posthoc")
    z, t = oof_scores(), oof_scores(n=60, seed=1)
    for name, (rescore, decide) in mod.VARIANTS.items():
        res = mod.held_out(z, t, rescore, decide)
        assert res["n_titles"] == 60 and 0 < res["micro_f1"] <= 1, name
    flipped = dict(t, Y=(1 - t["Y"]).astype(np.uint8))  # the held-out labels are read, never fitted on
    every = np.ones(len(z["Y"]), bool)
    assert np.allclose(mod.stack(z, every, True, 1.0, target=t), mod.stack(z, every, True, 1.0, target=flipped))
