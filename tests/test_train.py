"""Training: a tiny run on shipped titles (the session's ``tiny_run``), resume after an interruption,
cold/warm-cache determinism, missing modalities, masking of unlabelled genres, scheduler edge cases."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from genrefusion import train as T
from genrefusion.config import Config, load_config
from genrefusion.errors import GenreFusionError

from conftest import TINY_RUN_OVERRIDES


def _metrics(run):
    return json.loads((run / "metrics.json").read_text())


PROBES = {"linear_probe_poster", "linear_probe_plot", "linear_probe_fused"}


def test_tiny_run_outputs(tiny_run):
    m = _metrics(tiny_run)
    assert set(m["models"]) == {"poster", "plot", "fused", "always_negative", "tfidf_logreg"} | PROBES
    for name in ("poster", "plot", "fused", "tfidf_logreg", *PROBES):
        for k in ("micro_f1", "macro_f1", "weighted_f1", "samples_f1", "mAP", "hamming_loss", "exact_match",
                  "per_label_accuracy"):
            assert m["models"][name][k] is not None and 0 <= m["models"][name][k] <= 1, (name, k)
        assert set(m["models"][name]["per_genre"]) == set(m["genres"])
    assert m["models"]["always_negative"]["micro_f1"] == 0.0
    assert m["split"]["train"] + m["split"]["dev"] + m["split"]["test"] == 64
    assert set(m["thresholds"]["fused"]) == set(m["genres"])
    # thresholds: each level's regularisation rule chosen by leave-one-out on dev, and recorded
    info = m["threshold_info"]["fused"]
    assert info["chosen_by"] == "leave-one-out on dev" and info["rule"].split(" / ")[0] in info["leave_one_out"]
    assert set(info["combination_rules"]) == set(info["sets"]) and set(info["combination_global"]) == set(info["sets"])
    assert set(m["by_combination"]) == {"both", "poster"} and set(m["by_kind"]) <= {"movie", "tv", "unknown"}
    for f in ("model/config.json", "model/weights.safetensors", "split.json", "train.log", "report.html",
              "test_scores.npz", "dev_scores.npz", "config.json", "baselines/config.json",
              "baselines/weights.safetensors"):
        assert (tiny_run / f).is_file(), f
    assert not list((tiny_run / "checkpoints").glob("*.pt"))  # dropped once each stage finished


def test_genres_too_rare_to_learn_are_a_warning_naming_them(tiny_run):
    dropped = _metrics(tiny_run)["dropped_genres"]
    assert dropped  # 48 + 16 titles at min_genre_count 2: some labelled genres have a single training title
    warnings = [ln for ln in (tiny_run / "train.log").read_text().splitlines() if " WARNING " in ln]
    line = next(ln for ln in warnings if "not learnt" in ln)  # seen under -q too, not only in the log
    assert all(g in line for g in dropped) and "data.min_genre_count" in line


def test_test_scores_are_plain_arrays_matching_metrics(tiny_run):
    from genrefusion.evaluate import score_model

    m = _metrics(tiny_run)
    with np.load(tiny_run / "test_scores.npz", allow_pickle=False) as z:
        assert list(z["genres"]) == m["genres"] and len(z["keys"]) == m["split"]["test"]
        # each title is decided with the threshold set of its inputs (the pooled set where there is none)
        sets = m["threshold_sets"]["fused"]
        thr = [[sets.get(c, m["thresholds"]["fused"])[g] for g in m["genres"]] for c in z["combination"]]
        again = score_model(z["Y"], z["S_fused"], z["M"], np.asarray(thr), m["genres"])
    # thresholds in metrics.json are rounded to 5 digits: allow a title on the edge
    assert again["micro_f1"] == pytest.approx(m["models"]["fused"]["micro_f1"], abs=0.02)
    assert again["mAP"] == pytest.approx(m["models"]["fused"]["mAP"], abs=1e-6)


def test_dev_scores_are_what_the_thresholds_were_tuned_on(tiny_run):
    from genrefusion.evaluate import cross_validated_f1, tune_model_thresholds
    from genrefusion.thresholds import inputs_of

    m = _metrics(tiny_run)
    with np.load(tiny_run / "dev_scores.npz", allow_pickle=False) as z:
        assert len(z["keys"]) == m["split"]["dev"] and list(z["genres"]) == m["genres"]
        img, txt = inputs_of(z["combination"])
        for name in ("fused", "plot", "linear_probe_fused"):
            sets, _ = tune_model_thresholds(name, z["Y"], z["S_" + name], z["M"], img, txt, m["genres"])
            for combo, thr in m["threshold_sets"][name].items():
                np.testing.assert_allclose(sets.sets[combo], [thr[g] for g in m["genres"]], atol=1e-5)
        cv = cross_validated_f1("fused", z["Y"], z["S_fused"], z["M"], img, txt, m["genres"], folds=3)
    assert cv["all"]["n_titles"] == m["split"]["dev"] and 0 <= cv["all"]["micro_f1"] <= 1


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


def test_focal_and_asymmetric_losses_follow_their_formulas():
    """train.loss: focal -(1-p)^2 log p / -p^2 log(1-p); ASL -log p on positives and, on negatives, the
    probability shifted down by 0.05 (so confident negatives cost nothing) to the 4th power; pos_weight on
    positives; masked entries count in neither."""
    x = torch.tensor([[2.0, -1.0, -4.0, 0.5]])
    y = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    m = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the last entry is unlabelled
    pw = torch.full((4,), 2.0)
    p = torch.sigmoid(x)[0]
    focal = -torch.stack([2 * (1 - p[0]) ** 2 * p[0].log(), 2 * (1 - p[1]) ** 2 * p[1].log(),
                          p[2] ** 2 * (1 - p[2]).log()]).mean()
    assert torch.allclose(T.masked_bce(x, y, m, pw, "focal"), focal)
    asl = -torch.stack([2 * p[0].log(), 2 * p[1].log(), torch.tensor(0.0)]).mean()  # p[2] = 0.018 < 0.05
    assert torch.allclose(T.masked_bce(x, y, m, pw, "asl"), asl)
    for kind in ("bce", "focal", "asl"):
        y2 = y.clone()
        y2[0, 3] = 1.0  # only the masked label changes
        assert torch.allclose(T.masked_bce(x, y, m, pw, kind), T.masked_bce(x, y2, m, pw, kind))


def test_label_smoothing_softens_the_targets_of_labelled_entries_only():
    """train.label_smoothing eps: BCE against 1 - eps/2 and eps/2, pos_weight kept; masked entries still free."""
    x = torch.tensor([[2.0, -1.0, 0.5]])
    y = torch.tensor([[1.0, 0.0, 1.0]])
    m = torch.tensor([[1.0, 1.0, 0.0]])
    pw = torch.full((3,), 2.0)
    soft = torch.tensor([[0.95, 0.05, 0.95]])
    full = torch.nn.functional.binary_cross_entropy_with_logits(x, soft, pos_weight=pw, reduction="none")
    assert torch.allclose(T.masked_bce(x, y, m, pw, "bce", 0.1), full[m.bool()].mean())
    assert torch.allclose(T.masked_bce(x, y, m, pw, "bce", 0.0), T.masked_bce(x, y, m, pw))
    y2 = y.clone()
    y2[0, 2] = 0.0
    assert torch.allclose(T.masked_bce(x, y, m, pw, "bce", 0.1), T.masked_bce(x, y2, m, pw, "bce", 0.1))


def test_loss_mask_density_weighs_a_sparse_datasets_negatives():
    # dataset 0 lists 2 genres a title, dataset 1 one: its negatives count half; unlabelled entries stay 0
    Y = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0]], np.float32)
    M = np.ones_like(Y)
    M[2, 3] = 0
    ds = np.array([0, 0, 1, 1, 1])
    train = np.array([0, 1, 2, 3])  # row 4 (dev) does not count toward the density, but is weighted alike
    assert np.array_equal(T.loss_mask(Y, M, ds, train, "none"), M)
    W = T.loss_mask(Y, M, ds, train, "density")
    assert np.array_equal(W[:2], M[:2])  # the densest dataset: unchanged
    assert np.array_equal(W[2], [1, 0.5, 0.5, 0]) and np.array_equal(W[4], [0.5, 1, 0.5, 0.5])
    assert M[2, 3] == 0  # the corpus mask itself is untouched


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


def _fake_pretrained_lm(tmp_path, emb=16, hidden=24, layers=2):
    """A fastai-layout AWD-LSTM LM checkpoint (keys as fastai names them) and its vocabulary file."""
    from genrefusion.encoders.lstm import AWDLSTMEncoder

    itos = ["xxunk", "xxpad", "xxbos", "xxeos", "xxmaj", "xxup", "the", "a", "of", "and", "to", "his", "her"]
    torch.manual_seed(1)
    src = AWDLSTMEncoder(len(itos), emb_size=emb, hidden_size=hidden, n_layers=layers)
    sd = {"0.encoder.weight": src.emb.weight.detach().clone(), "1.decoder.weight": src.emb.weight.detach().clone(),
          "1.decoder.bias": torch.linspace(-1, 1, len(itos))}
    for i, r in enumerate(src.rnns):
        sd[f"0.rnns.{i}.weight_hh_l0_raw"] = r.lstm.weight_hh_l0.detach().clone()
        for n in ("weight_ih_l0", "bias_ih_l0", "bias_hh_l0"):
            sd[f"0.rnns.{i}.module.{n}"] = getattr(r.lstm, n).detach().clone()
    torch.save(sd, tmp_path / "lm.pth")
    (tmp_path / "itos.json").write_text(json.dumps(itos))
    return tmp_path / "lm.pth", tmp_path / "itos.json", src


@pytest.mark.slow
def test_lstm_route_end_to_end(tiny_run_data, tiny_run_cache, tmp_path, monkeypatch):
    """text.encoder=lstm from a user-supplied pretrained LM: LM pre-training on the training plots + unlabelled
    plots of another dataset (its dev/test titles left out), fine-tuning on the training plots, gradual
    unfreezing on whole plots read in BPTT chunks; the fused model keeps the fine-tuned LSTM frozen (its weights
    equal the plot model's), and the bundle predicts from a plot alone through GenreClassifier."""
    from genrefusion.bundle import load_bundle
    from genrefusion.predict import GenreClassifier

    monkeypatch.setenv("GENREFUSION_CACHE", str(tiny_run_cache))
    lm_path, itos_path, src = _fake_pretrained_lm(tmp_path)
    over = {**TINY_RUN_OVERRIDES, "text.encoder": "lstm", "text.lstm.emb_dim": 16, "text.lstm.hidden": 24,
            "text.lstm.bptt": 16, "text.lstm.unfreeze_epochs": [1, 0, 1], "train.epochs": 2,
            "text.lstm.pretrained": str(lm_path), "text.lstm.pretrained_vocab": str(itos_path),
            "text.lstm.lm_data": [str(tiny_run_data[0])]}
    run = tmp_path / "run"
    m = T.main(tiny_run_data, run, load_config(overrides=over), progress=False, write_report=False, device="cpu")
    assert m["text_route"] == "lstm" and {"lm_pretrain", "lm", "plot_lstm_1", "plot_lstm_3"} <= set(m["training"])
    assert "plot_lstm_2" not in m["training"]  # a phase with 0 epochs is skipped
    assert m["training"]["lm"]["epochs_run"] == 1 and m["training"]["lm_pretrain"]["epochs_run"] == 1
    # the extra dataset is the training one itself: its training plots come twice, its dev/test ones never
    assert m["training"]["lm_pretrain"]["texts"] == 2 * m["training"]["lm"]["texts"]
    assert "words found in its vocabulary" in (run / "train.log").read_text()
    b = load_bundle(run)
    plot_enc, fused_enc = b.models["plot"].encoder.state_dict(), b.models["fused"].plot.encoder.state_dict()
    assert plot_enc.keys() == fused_enc.keys()
    assert all(torch.equal(plot_enc[k], fused_enc[k]) for k in plot_enc)
    clf = GenreClassifier.load(run)
    p_a, p_b = clf.predict_proba([{"plot": "A haunted house, a demon and blood."},
                                  {"plot": "Two lovers marry after a long summer."}])
    assert not np.allclose(p_a, p_b)  # the plot really goes through the LSTM

    # a missing checkpoint is a one-line ConfigError naming it, before any stage trains
    over["text.lstm.pretrained"] = str(tmp_path / "absent.pth")
    with pytest.raises(GenreFusionError, match="absent.pth: AWD-LSTM weights not found"):
        T.main(tiny_run_data, tmp_path / "run2", load_config(overrides=over), progress=False, write_report=False,
               device="cpu")


def test_init_lstm_from_pretrained_or_spacy(tmp_path, monkeypatch):
    from genrefusion.encoders.tokenize import SPECIALS, Vocab

    monkeypatch.setenv("GENREFUSION_CACHE", str(tmp_path / "cache"))
    lm_path, itos_path, src = _fake_pretrained_lm(tmp_path)
    vocab = Vocab(SPECIALS + ["his", "love", "the"])
    spec = {"vocab_size": len(vocab), "emb_dim": 16, "hidden": 24, "layers": 2}
    cfg = load_config(overrides={"text.lstm.pretrained": str(lm_path), "text.lstm.pretrained_vocab": str(itos_path)})
    lstm, bias = T.init_lstm(spec, vocab, cfg.text.lstm)
    assert torch.equal(lstm.emb.weight[vocab.stoi["his"]], src.emb.weight[11])
    assert torch.equal(lstm.rnns[1].lstm.weight_hh_l0, src.rnns[1].lstm.weight_hh_l0)
    assert bias.shape == (len(vocab),) and bias[vocab.stoi["his"]] == pytest.approx(-1 + 2 * 11 / 12)
    # no checkpoint: spaCy vectors (PCA-reduced to 16-d) and no decoder bias
    lstm, bias = T.init_lstm(spec, vocab, load_config().text.lstm)
    assert bias is None and lstm.emb.weight.shape == (len(vocab), 16)
    assert lstm.emb.weight[vocab.stoi["love"]].abs().max() > 0.5  # a real (projected) vector, not the small init


def test_resume_accepts_a_run_from_before_a_config_key_existed(tmp_path):
    """A run folder written before a config key was added resumes as if it had the key's default; a real
    difference is still refused, naming the key."""
    from genrefusion.io import write_json
    from genrefusion.training.rundir import check_resume

    stored = {"config": Config().to_dict(), "data": ["d"], "models": ["fused"]}
    old = json.loads(json.dumps(stored))
    del old["config"]["train"]["loss"]
    write_json(tmp_path / "config.json", old)
    check_resume(tmp_path, stored, resume=True)
    changed = json.loads(json.dumps(stored))
    changed["config"]["train"]["loss"] = "asl"
    with pytest.raises(GenreFusionError, match=r"different config\.train"):
        check_resume(tmp_path, changed, resume=True)


def test_a_run_from_before_crossfit_resumes_only_as_it_was_trained(tmp_path):
    """``train.crossfit``'s default (5) trains differently from runs made before the key existed: such a run
    resumes with crossfit 0, the way it was trained, and a resume with the new default is refused, naming it."""
    from genrefusion.io import write_json
    from genrefusion.training.rundir import check_resume

    old = {"config": Config().to_dict(), "data": ["d"], "models": ["fused"]}
    del old["config"]["train"]["crossfit"]
    write_json(tmp_path / "config.json", old)
    as_trained = {**old, "config": Config().replace({"train.crossfit": 0}).to_dict()}
    check_resume(tmp_path, as_trained, resume=True)
    with pytest.raises(GenreFusionError, match=r"different config\.train\.crossfit"):
        check_resume(tmp_path, {**old, "config": Config().to_dict()}, resume=True)
