"""benchmarks/variants.py: the dev figures a model choice is made on, and the comparison with the defaults."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import load_benchmark


def _bench():
    return load_benchmark("variants")


def test_dev_figures_come_from_the_runs_dev_scores(tiny_run, tmp_path, capsys):
    from genrefusion.metrics import masked_map

    mod = _bench()
    m = json.loads((tiny_run / "metrics.json").read_text())
    d = mod.dev_figures(tiny_run)
    assert d["cv"]["all"]["n_titles"] == m["split"]["dev"]
    with np.load(tiny_run / "dev_scores.npz", allow_pickle=False) as z:
        both = z["combination"] == "both"
        assert d["mAP_both"] == pytest.approx(masked_map(z["Y"][both], z["S_fused"][both], z["M"][both]), abs=1e-5)
    # a run from before dev_scores.npz: no dev figures, and the row still prints
    old = tmp_path / "old"
    shutil.copytree(tiny_run, old, ignore=shutil.ignore_patterns("dev_scores.npz"))
    assert mod.dev_figures(old) is None
    mod.print_row("old", {"seed": 0, "select_metric": "mAP", "dev_fused": 0.4, "dev_fused_detail": None,
                          "timings": {"features_s": 1, "training_s": 2}})
    assert "n/a" in capsys.readouterr().out


def _row(seed, dev, both, cv_both, cv_all):
    return {"seed": seed, "dev_fused": dev, "dev_fused_detail": {
        "mAP_both": both, "cv": {"all": {"micro_f1": cv_all}, "both": {"micro_f1": cv_both}}}}


def test_variants_are_compared_with_the_defaults_seed_by_seed():
    mod = _bench()
    assert mod.run_name("members_5", 0) == "members_5" and mod.run_name("members_5", 2) == "members_5_seed2"
    assert mod.VARIANTS["default"] == {}
    rows = {"default": {0: _row(0, 0.40, 0.70, 0.70, 0.56), 1: _row(1, 0.42, 0.72, 0.68, 0.57)},
            "members_5": {0: _row(0, 0.41, 0.69, 0.68, 0.56), 1: _row(1, 0.44, 0.73, 0.70, 0.58)},
            "only_seed_2": {2: _row(2, 0.5, 0.5, 0.5, 0.5)}}
    lines = mod.against_default(rows, [0, 1, 2])
    assert len(lines) == 1 and lines[0].startswith("members_5 - default, seeds 0, 1:")
    assert "dev mAP +0.0150 (+0.010 / +0.020)" in lines[0]
    assert "CV micro-F1 both +0.0000 (-0.020 / +0.020)" in lines[0]


def test_runs_of_one_split_are_averaged_and_other_splits_refused(tiny_run, tmp_path):
    mod = _bench()
    twin = tmp_path / "twin"
    shutil.copytree(tiny_run, twin)
    with np.load(tiny_run / "dev_scores.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["S_fused"] = 1.0 - arrays["S_fused"]  # a model that ranks every genre the other way round
    np.savez(twin / "dev_scores.npz", **arrays)
    one, avg = mod.dev_figures(tiny_run), mod.dev_figures([tiny_run, twin])
    assert avg["cv"]["all"]["n_titles"] == one["cv"]["all"]["n_titles"]
    assert avg["mAP_both"] != one["mAP_both"]  # the average is scored, not either run
    assert mod.dev_figures([tiny_run, tiny_run]) == one  # a run averaged with itself is itself
    arrays["keys"] = arrays["keys"][::-1]
    np.savez(twin / "dev_scores.npz", **arrays)
    with pytest.raises(SystemExit, match="not the split of"):
        mod.dev_figures([tiny_run, twin])
