"""Training: a tiny run on shipped titles (the session's ``tiny_run``), resume after an interruption,
cold/warm-cache determinism, missing modalities, masking of unlabelled genres, scheduler edge cases."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from genrefusion import train as T
from genrefusion.config import load_config
from genrefusion.errors import GenreFusionError

from conftest import TINY_RUN_OVERRIDES


def _metrics(run):
    return json.loads((run / "metrics.json").read_text())


def test_tiny_run_outputs(tiny_run):
    m = _metrics(tiny_run)
    assert set(m["models"]) == {"poster", "plot", "fused", "always_negative", "tfidf_logreg"}
    for name in ("poster", "plot", "fused", "tfidf_logreg"):
        for k in ("micro_f1", "macro_f1", "weighted_f1", "samples_f1", "mAP", "hamming_loss", "exact_match",
                  "per_label_accuracy"):
            assert m["models"][name][k] is not None and 0 <= m["models"][name][k] <= 1, (name, k)
        assert set(m["models"][name]["per_genre"]) == set(m["genres"])
    assert m["models"]["always_negative"]["micro_f1"] == 0.0
    assert m["split"]["train"] + m["split"]["dev"] + m["split"]["test"] == 64
    assert set(m["thresholds"]["fused"]) == set(m["genres"])
    for f in ("model/config.json", "model/weights.safetensors", "split.json", "train.log", "report.html",
              "test_scores.npz", "config.json"):
        assert (tiny_run / f).is_file(), f
    assert not list((tiny_run / "checkpoints").glob("*.pt"))  # dropped once each stage finished


def test_test_scores_are_plain_arrays_matching_metrics(tiny_run):
    from genrefusion.evaluate import score_model

    m = _metrics(tiny_run)
    with np.load(tiny_run / "test_scores.npz", allow_pickle=False) as z:
        assert list(z["genres"]) == m["genres"] and len(z["keys"]) == m["split"]["test"]
        thr = [m["thresholds"]["fused"][g] for g in m["genres"]]
        again = score_model(z["Y"], z["S_fused"], z["M"], thr, m["genres"])
    # thresholds in metrics.json are rounded to 5 digits: allow a title on the edge
    assert again["micro_f1"] == pytest.approx(m["models"]["fused"]["micro_f1"], abs=0.02)
    assert again["mAP"] == pytest.approx(m["models"]["fused"]["mAP"], abs=1e-6)


def test_missing_modality_titles_are_used(tiny_run):
    m = _metrics(tiny_run)
    tr = m["training"]
    # 16 poster-only titles: in the poster and fused stages, not in the plot stage
    assert tr["fused"]["train_titles"] == tr["poster"]["train_titles"] > tr["plot_minilm"]["train_titles"]
    assert m["split"]["test_with_poster_and_plot"] < m["split"]["test"]


def test_genres_a_dataset_does_not_label_are_masked(tiny_run, tiny_run_data):
    m = _metrics(tiny_run)
    labelled = {json.loads((d / "dataset.json").read_text())["name"]: set(json.loads(
        (d / "dataset.json").read_text())["genres"]) for d in tiny_run_data}
    with np.load(tiny_run / "test_scores.npz", allow_pickle=False) as z:
        for key, mrow, yrow in zip(z["keys"], z["M"], z["Y"]):
            ds = str(key).split("/")[0]
            want = np.array([g in labelled[ds] for g in m["genres"]])
            np.testing.assert_array_equal(mrow.astype(bool), want)
            assert not (yrow.astype(bool) & ~want).any()
    # Biography (poster_genres_av only) is kept, so cornell_tmdb titles really have a masked genre
    assert "Biography" in m["genres"] and "Biography" not in labelled["cornell_tmdb"]
    pg = m["models"]["fused"]["per_genre"]["Biography"]
    assert pg["labelled"] == sum(str(k).startswith("poster_genres_av/") for k in np.load(
        tiny_run / "test_scores.npz", allow_pickle=False)["keys"])


def test_masked_bce_ignores_masked_entries():
    torch.manual_seed(0)
    logits = torch.randn(6, 4)
    y = (torch.rand(6, 4) < 0.4).float()
    m = torch.ones(6, 4)
    m[:3, 1] = 0
    y2 = y.clone()
    y2[:3, 1] = 1 - y2[:3, 1]  # flip only masked labels
    a, b = T.masked_bce(logits, y, m), T.masked_bce(logits, y2, m)
    assert torch.allclose(a, b)
    full = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
    assert torch.allclose(a, full[m.bool()].mean())


@pytest.mark.parametrize("total", [1, 2, 3, 4, 5, 8, 40])
def test_scheduler_handles_tiny_step_counts(total):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW([{"params": model.parameters(), "lr": 1e-2}])
    sched = T.make_scheduler(opt, [1e-2], total)
    lrs = []
    for _ in range(total):  # OneCycleLR used to raise ZeroDivisionError here for tiny totals
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert all(np.isfinite(lrs)) and max(lrs) <= 1e-2 + 1e-12


def test_resume_after_interruption_matches_uninterrupted_cold_run(tiny_run, tiny_run_data, tiny_run_cache,
                                                                   tmp_path, monkeypatch):
    """Kill training in the middle of a stage, resume: the result equals ``tiny_run``'s, which was trained
    with a cold feature cache (this one's is warm), so this also checks cold/warm determinism."""
    monkeypatch.setenv("GENREFUSION_CACHE", str(tiny_run_cache))
    cfg = load_config(overrides=TINY_RUN_OVERRIDES)
    run = tmp_path / "run"
    real = T.train_one_epoch
    calls = {"n": 0}

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:  # poster has 3 epochs: this is plot_minilm's second epoch
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(T, "train_one_epoch", dying)
    with pytest.raises(KeyboardInterrupt):
        T.main(tiny_run_data, run, cfg, progress=False, write_report=False, device="cpu")
    assert (run / "stages" / "poster.json").is_file() and (run / "checkpoints" / "plot_minilm.pt").is_file()
    assert not (run / "metrics.json").exists()
    monkeypatch.setattr(T, "train_one_epoch", real)
    with pytest.raises(GenreFusionError, match="--resume"):
        T.main(tiny_run_data, run, cfg, progress=False, write_report=False, device="cpu")
    with pytest.raises(GenreFusionError, match="different config"):
        T.main(tiny_run_data, run, cfg.replace({"train.epochs": 4}), resume=True, progress=False,
               write_report=False, device="cpu")
    got = T.main(tiny_run_data, run, cfg, resume=True, progress=False, write_report=False, device="cpu")
    assert "resuming after epoch 1" in (run / "train.log").read_text()
    ref = _metrics(tiny_run)
    assert got["training"]["plot_minilm"]["history"] == ref["training"]["plot_minilm"]["history"]
    for name in ("poster", "plot", "fused"):
        for k in ("micro_f1", "macro_f1", "mAP"):
            assert got["models"][name][k] == pytest.approx(ref["models"][name][k], abs=1e-6), (name, k)
    # a finished run with --resume just returns its metrics (nothing retrained)
    before = (run / "metrics.json").stat().st_mtime_ns
    again = T.main(tiny_run_data, run, cfg, resume=True, progress=False, device="cpu")
    assert again["models"]["fused"] == got["models"]["fused"]
    assert (run / "metrics.json").stat().st_mtime_ns == before and (run / "report.html").is_file()


def test_refuses_shipped_folder_and_bad_models(tiny_run_data, tmp_path, shipped):
    cfg = load_config(overrides=TINY_RUN_OVERRIDES)
    with pytest.raises(GenreFusionError, match="read-only|refusing"):
        T.main(tiny_run_data, shipped / "cornell_tmdb" / "run", cfg, progress=False)
    with pytest.raises(GenreFusionError, match="--models"):
        T.main(tiny_run_data, tmp_path / "r", cfg, models=["bogus"], progress=False)


def test_report_regenerates(tiny_run, tmp_path):
    from genrefusion.cli import main as cli

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "report.html").unlink()
    assert cli(["report", str(run)]) == 0
    assert (run / "report.html").stat().st_size > 10_000
