"""benchmarks/genre_blend.py: per-genre lexical blend weights, cross-validated within dev."""
from __future__ import annotations

import pytest

from conftest import load_benchmark


def test_one_weight_reproduces_the_variants_cv_figure_and_per_genre_rows_differ_only_in_weights(tiny_run):
    mod = load_benchmark("genre_blend")
    rows = mod.main([str(tiny_run), "--min-pos", "1", "1000000"])
    one, per, never = rows
    cv = load_benchmark("variants").dev_figures(tiny_run)["cv"]["both"]
    assert one["min_pos"] is None and one["n_both"] == cv["n_titles"]
    assert one["cv_micro_f1_both"] == pytest.approx(cv["micro_f1"], abs=1e-4)
    # no genre has a million positives: every genre keeps the run's weight, so the figures are the one-weight row's
    keys = ("cv_micro_f1_both", "mAP_both")
    assert {k: never[k] for k in keys} == {k: one[k] for k in keys}
    assert 0 <= per["cv_micro_f1_both"] <= 1 and 0 <= per["mAP_both"] <= 1


def test_genre_weights_pick_the_better_source_per_genre():
    import numpy as np

    mod = load_benchmark("genre_blend")
    rng = np.random.default_rng(0)
    Y = (rng.random((200, 2)) < 0.3).astype(int)
    M = np.ones_like(Y)
    noise = rng.random((200, 2))
    net = np.where(np.arange(2) == 0, Y + 0.1 * noise, noise)  # genre 0: the network ranks perfectly
    lex = np.where(np.arange(2) == 1, Y + 0.1 * noise, noise)  # genre 1: tf-idf does
    w = mod.genre_weights(Y, M, net, lex, np.ones(200, bool), 0.5, 5)
    assert w[0] < 0.5 < w[1]
    assert (mod.genre_weights(Y, M, net, lex, np.ones(200, bool), 0.5, 1000) == 0.5).all()
