"""train.members: an ensemble of independently initialised heads in one model, each member trained on its own
loss, their logits averaged; fused member i joins poster member i and plot member i."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genrefusion.models.fusion import FusedModel
from genrefusion.models.heads import SingleModel
from genrefusion.training.optim import masked_bce


def test_one_member_keeps_the_paper_head_layout():
    """Bundles from before ensembles hold ``head.body.N`` / ``head.out`` tensors: one member must load them."""
    keys = set(SingleModel("poster", 10, 4, hidden=(8, 6), members=1).state_dict())
    assert {"head.body.1.weight", "head.body.2.running_mean", "head.out.weight", "prior_logits"} <= keys
    assert not any("members" in k for k in keys)


def test_members_are_trained_on_their_own_loss_and_averaged_when_predicting():
    torch.manual_seed(0)
    m = SingleModel("plot", 10, 4, hidden=(8, 6), dropout=0.0, input_dropout=0.0, members=3)  # same pass twice
    x, present = torch.randn(5, 10), torch.tensor([True, True, False, True, True])
    y, mask = (torch.rand(5, 4) > 0.5).float(), torch.ones(5, 4)
    m.train()
    out = m(x, present)
    assert out.shape == (3, 5, 4)
    assert torch.equal(out[:, 2], m.prior_logits.expand(3, -1))  # no plot: the genre priors, every member
    # the loss is the mean of the members' losses: member 0's gradient does not depend on member 1's output
    masked_bce(out, y, mask).backward()
    g0 = m.head.out.members[0].weight.grad.clone()
    m.zero_grad()
    out = m(x, present)
    (masked_bce(out[0], y, mask) / 3).backward()
    assert torch.allclose(m.head.out.members[0].weight.grad, g0, atol=1e-6)
    assert m.head.out.members[1].weight.grad is None or not m.head.out.members[1].weight.grad.any()
    m.eval()
    with torch.no_grad():
        avg = m(x, present)
        h = m.head.body(x[present])
        each = [lin(c) for lin, c in zip(m.head.out.members, torch.chunk(h, 3, dim=1))]
    assert avg.shape == (5, 4)
    assert torch.allclose(avg[present], torch.stack(each).mean(0), atol=1e-6)


def test_fused_member_reads_only_its_own_branch_members():
    torch.manual_seed(1)
    poster, plot = SingleModel("poster", 12, 4, hidden=(8, 6), members=3), SingleModel("plot", 10, 4, hidden=(8, 6), members=3)
    fused = FusedModel(poster, plot, 4, hidden=(8, 6), members=3).eval()
    assert fused.poster.rep_dim == 18 and fused.head.in_dim == 36
    a, b = torch.randn(4, 18), torch.randn(4, 18)
    h = fused.head.body(torch.cat([a, b], 1))
    a2, b2 = a.clone(), b.clone()
    a2[:, 6:12] += 5.0  # poster member 1's chunk
    b2[:, 12:] -= 3.0   # plot member 2's chunk
    h2 = fused.head.body(torch.cat([a2, b2], 1))
    assert torch.equal(h[:, :6], h2[:, :6])                      # fused member 0: untouched
    assert not torch.allclose(h[:, 6:12], h2[:, 6:12])           # member 1 reads poster member 1
    assert not torch.allclose(h[:, 12:], h2[:, 12:])             # member 2 reads plot member 2
    with pytest.raises(ValueError, match="concatenation"):
        FusedModel(poster, plot, 4, hidden=(8, 6), fusion="gmu", members=3)


def test_config_refuses_an_ensemble_with_gmu():
    from genrefusion.config import load_config
    from genrefusion.errors import ConfigError

    assert load_config(overrides={"train.members": 3}).train.members == 3
    with pytest.raises(ConfigError, match="members"):
        load_config(overrides={"train.members": 2, "train.fusion": "gmu"})
    with pytest.raises(ConfigError, match="members"):
        load_config(overrides={"train.members": 0})


@pytest.fixture(scope="module")
def ensemble_run(tiny_run_data, tiny_run_cache, tmp_path_factory):
    from conftest import TINY_RUN_OVERRIDES

    from genrefusion.config import load_config
    from genrefusion.train import main

    run = tmp_path_factory.mktemp("ensemble") / "run"
    cfg = load_config(overrides={**TINY_RUN_OVERRIDES, "train.members": 2})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENREFUSION_CACHE", str(tiny_run_cache))
        main(tiny_run_data, run, cfg, progress=False, device="cpu", write_report=False)
    return run


def test_an_ensemble_trains_bundles_predicts_and_exports(ensemble_run, shipped_subset, tmp_path):
    """The bundle records the members and reloads them; predict_proba is the members' average, the same
    through ONNX Runtime."""
    from genrefusion.predict import GenreClassifier

    clf = GenreClassifier.load(ensemble_run)
    config = json.loads((ensemble_run / "model" / "config.json").read_text())
    assert json.dumps(config).count('"members": 2') >= 1
    model = clf.bundle_.models[clf.model_name_]
    assert isinstance(model, FusedModel) and model.head.members == 2
    ds = shipped_subset("imdb_top250", n=4)
    recs = [json.loads(line) for line in (ds / "titles.jsonl").read_text(encoding="utf-8").splitlines()]
    titles = [{"poster": ds / r["poster"], "plot": r["plot"]} for r in recs]
    titles[1]["plot"] = None
    probs = clf.predict_proba(titles)
    assert probs.shape == (4, len(clf.genres_)) and np.isfinite(probs).all()
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from genrefusion.cli import main
    from genrefusion.export import onnx_inputs

    out = tmp_path / "model.onnx"
    assert main(["export", str(ensemble_run), "--format", "onnx", "--out", str(out)]) == 0
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(["probs"], onnx_inputs(clf, titles))[0]
    assert np.abs(got - probs).max() <= 1e-4
