"""End-to-end fine-tuning (train.finetune), the fused join point, and bundles that carry their backbone."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from genrefusion.config import load_config
from genrefusion.encoders.image import BackboneTop, FullBackbone, StemView, build_image_encoder
from genrefusion.encoders.resnet import ResNet50
from genrefusion.errors import BundleError, ConfigError
from genrefusion.models import FusedModel, SingleModel, TextPooler


@pytest.fixture(scope="module")
def effnet():
    return build_image_encoder("efficientnet_lite0")


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("rn50") / "rn50.pth"
    torch.save(ResNet50().state_dict(), path)
    return path


def _bn(module):
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "resnet50"])
def test_stem_and_top_compose_to_the_features(name, effnet, resnet_file):
    # Lite1 / Lite2 read 240 / 260 px, whose last block does not sit on a 7 x 7 grid
    if name == "efficientnet_lite0":
        enc = effnet
    else:
        enc = build_image_encoder(name, resnet_file if name == "resnet50" else None)
    x = torch.randn(2, 3, enc.input_size, enc.input_size)
    top = enc.top().eval()
    view = StemView(enc)
    with torch.inference_mode():
        stem = view(x)
        assert stem.shape == (2, int(np.prod(enc.stem_shape))) and view.dim == stem.shape[1]
        assert torch.allclose(top(stem), enc(x), atol=1e-4)
    assert view.fingerprint == enc.fingerprint and view.name != enc.name  # its own feature-cache namespace
    # the top is a copy: training it leaves the extraction encoder as it was
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    top.train()
    opt = torch.optim.SGD([p for p in top.parameters() if p.requires_grad], lr=0.1)
    top(stem).sum().backward()
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())
    # BatchNorm as the backbone expects: EfficientNet's stays frozen when fine-tuned, ResNet's trains
    bns = _bn(top)
    assert bns and all(m.training != enc.bn_frozen for m in bns)
    assert all(p.requires_grad != enc.bn_frozen for m in bns for p in m.parameters())


def test_last_block_top_mirrors_activations_in_training_only(effnet):
    top = effnet.top()
    x = torch.randn(64, int(np.prod(effnet.stem_shape)))
    top.eval()
    with torch.no_grad():
        a, b = top(x), top(x)
        assert torch.equal(a, b)
        torch.manual_seed(0)
        top.train()
        c = top(x)
        mirrored = top.eval()(x.reshape(64, *effnet.stem_shape).flip(3).flatten(1))
    same = torch.isclose(c, a, atol=1e-5).all(1)
    flipped = torch.isclose(c, mirrored, atol=1e-5).all(1)
    assert (same | flipped).all() and same.any() and flipped.any()  # each title: as is, or mirrored


def _single(encoder, in_dim, modality="poster"):
    return SingleModel(modality, in_dim, 5, hidden=(8, 4), encoder=encoder)


def test_poster_param_groups_are_discriminative(effnet):
    from genrefusion.training.finetune import poster_param_groups

    tc = load_config(overrides={"train.finetune": "all"}).train
    model = _single(FullBackbone(effnet), 1280)
    groups = poster_param_groups(model, tc)
    assert [g["lr"] for g in groups] == pytest.approx([tc.lr] + [tc.lr * 0.1 / 2.6 ** k for k in range(3)])
    grouped = {id(p) for g in groups for p in g["params"]}
    frozen_bn = {id(p) for m in _bn(model.encoder) for p in m.parameters()}
    assert frozen_bn and not grouped & frozen_bn  # EfficientNet's BatchNorm stays as it was
    assert grouped == {id(p) for p in model.parameters() if p.requires_grad}
    last = _single(effnet.top(), 1280)
    assert [g["lr"] for g in poster_param_groups(last, tc)] == pytest.approx([tc.lr, tc.lr * 0.1])


@pytest.mark.parametrize("finetune, open_layers", [("none", 0), ("last_block", 1), ("all", 3)])
def test_fused_stage_trains_the_lstm_only_when_fine_tuning(finetune, open_layers):
    from genrefusion.encoders.lstm import AWDLSTMEncoder
    from genrefusion.training.finetune import fused_param_groups

    cfg = load_config(overrides={"train.finetune": finetune})
    lstm = AWDLSTMEncoder(30, emb_size=8, hidden_size=12, n_layers=2)
    fused = FusedModel(_single(None, 16), _single(TextPooler(lstm), 24, "plot"), 5, hidden=(8, 4))
    groups = fused_param_groups(fused, cfg, finetune)
    trained = {id(p) for g in groups for p in g["params"]}
    layers = fused.plot.encoder.layer_groups()  # embedding, LSTM 1, LSTM 2
    opened = [all(id(p) in trained for p in grp) for grp in layers]
    assert opened == [False] * (3 - open_layers) + [True] * open_layers
    assert all(id(p) in trained for p in fused.head.parameters())
    assert all(id(p) in trained for p in fused.poster.body.parameters())


def test_join_point_shapes():
    poster, plot = _single(None, 16), _single(None, 24, "plot")
    heads = FusedModel(poster, plot, 5, hidden=(8, 4), join="heads")
    feats = FusedModel(poster, plot, 5, hidden=(8, 4), join="features")
    assert heads.head.in_dim == 4 + 4 and feats.head.in_dim == 16 + 24
    present = torch.tensor([True, False, True])
    for m in (heads, feats):
        out = m.eval()(torch.randn(3, 16), present, torch.randn(3, 24), ~present)
        assert out.shape == (3, 5) and torch.isfinite(out).all()


def test_finetune_config_is_validated():
    assert load_config().train.finetune == "none"
    with pytest.raises(ConfigError, match=r"train.finetune must be one of none, last_block, all.*'last_block'"):
        load_config(overrides={"train.finetune": "last_blocks"})
    with pytest.raises(ConfigError, match="train.fusion_join must be one of heads, features"):
        load_config(overrides={"train.fusion_join": "late"})


# -- end to end: tiny runs on CPU --------------------------------------------------------------------------
TINY = {"seed": 0, "data.min_genre_count": 1, "data.dev": 0.25, "data.test": 0.25, "train.epochs": 1,
        "train.fused_epochs": 1, "train.batch_size": 8, "train.hidden": [16, 8], "image.num_workers": 0}


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    from conftest import copy_shipped_titles

    from genrefusion.paths import shipped_data_dir

    shipped = shipped_data_dir(required=False)
    if shipped is None:
        pytest.skip("shipped datasets not found (set GENREFUSION_DATA)")
    base = tmp_path_factory.mktemp("ft_data")
    return [copy_shipped_titles(shipped / "cornell_tmdb", base / "cornell_tmdb", 16),
            copy_shipped_titles(shipped / "poster_genres_av", base / "poster_genres_av", 8)]


def _train(data, out, monkeypatch, tmp_path, **overrides):
    from genrefusion.train import main

    monkeypatch.setenv("GENREFUSION_CACHE", str(tmp_path / "cache"))
    return main(data, out, load_config(overrides={**TINY, **overrides}), progress=False, device="cpu")


def _titles(data):
    rows = [json.loads(line) for line in (data[0] / "titles.jsonl").read_text("utf-8").splitlines()[:3]]
    return [{"poster": data[0] / r["poster"], "plot": r["plot"]} for r in rows]


@pytest.mark.slow
def test_finetune_all_with_the_lstm_trains_on_cpu_and_serves(small_data, tmp_path, monkeypatch):
    """The paper's whole system on a CPU, slowly: the whole backbone on augmented posters, the AWD-LSTM trained
    again in the fused stage, the paper's join point; the bundle predicts and exports like any other."""
    from safetensors.torch import load_file

    from genrefusion.export import export_onnx
    from genrefusion.predict import GenreClassifier

    run = tmp_path / "run"
    res = _train(small_data, run, monkeypatch, tmp_path, **{
        "train.finetune": "all", "train.fusion_join": "features", "text.encoder": "lstm", "text.lstm.emb_dim": 16,
        "text.lstm.hidden": 24, "text.lstm.min_freq": 1, "text.lstm.unfreeze_epochs": [1, 0, 0]})
    assert res["config"]["train"]["finetune"] == "all" and res["models"]["fused"]["mAP"] is not None
    assert not list((tmp_path / "cache").glob("*/efficientnet*"))  # posters decoded per batch, never cached
    w = load_file(str(run / "model" / "weights.safetensors"))
    stock = build_image_encoder("efficientnet_lite0").state_dict()
    for model in ("poster", "fused.poster"):
        key = f"{model}.encoder.encoder.net._conv_stem.weight"
        assert not torch.equal(w[key], stock["net._conv_stem.weight"]), model  # the stem trained too
    # the LSTM trained again in the fused stage (the paper's third stage)
    k = "rnns.0.lstm.weight_ih_l0"
    assert not torch.equal(w[f"fused.plot.encoder.lstm.{k}"], w[f"plot.encoder.lstm.{k}"])
    clf = GenreClassifier.load(run)
    titles = _titles(small_data)
    s = clf.predict_proba(titles)
    assert s.shape == (3, len(clf.genres_)) and np.isfinite(s).all()
    export_onnx(clf, tmp_path / "m.onnx", check=True)  # onnxruntime matches PyTorch on the exported graph


@pytest.mark.slow
def test_resnet_last_block_bundle_carries_its_backbone(small_data, resnet_file, tmp_path, monkeypatch):
    """A ResNet-50 bundle predicts where the weights file it was trained with does not exist; one trained with
    image.bundle_weights = false asks for --image-weights there."""
    from genrefusion.predict import GenreClassifier

    weights = tmp_path / "rn50.pth"
    shutil.copyfile(resnet_file, weights)
    run = tmp_path / "run"
    res = _train(small_data, run, monkeypatch, tmp_path, **{
        "image.encoder": "resnet50", "image.weights": str(weights), "train.finetune": "last_block",
        "text.encoder": "minilm"})
    assert (run / "model" / "image_backbone.safetensors").is_file()
    assert list((tmp_path / "cache").glob("*/resnet50.stem-*"))  # activations before the last block, cached
    titles = _titles(small_data)
    before = GenreClassifier.load(run).predict_proba(titles)
    weights.unlink()  # another machine: the training-time file is gone
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(run / "model", elsewhere)
    assert np.allclose(GenreClassifier.load(elsewhere).predict_proba(titles), before, atol=1e-5)
    assert res["models"]["fused"]["mAP"] is not None

    bare = tmp_path / "bare"
    shutil.copytree(run / "model", bare)
    (bare / "image_backbone.safetensors").unlink()
    with pytest.raises(BundleError, match="image_backbone.safetensors missing.*--image-weights"):
        GenreClassifier.load(bare)
    shutil.copyfile(resnet_file, weights)
    assert np.allclose(GenreClassifier.load(bare, image_weights=weights).predict_proba(titles), before, atol=1e-5)
    (elsewhere / "image_backbone.safetensors").write_bytes(b"\0" * 64)
    with pytest.raises(Exception, match="image_backbone|ResNet-50 weights"):
        GenreClassifier.load(elsewhere).predict_proba(titles)


def test_gpu_batch_padding_is_exact_and_never_touches_batch_statistics():
    """The fused branch pads a backbone's batch to a fixed multiple on a GPU (new batch sizes cost seconds
    there): the padded rows must not change the real rows' outputs, nor reach BatchNorm batch statistics."""
    from genrefusion.models.fusion import encode_bucketed

    seen = []
    enc = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten())
    enc.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
    x = torch.randn(5, 3, 8, 8)
    ref = enc.eval()(x)
    enc.train()
    enc[1].eval()  # frozen BatchNorm, as EfficientNet fine-tunes
    out = encode_bucketed(enc, x, bucket=4, pad=True)
    assert seen[-1] == 8 and out.shape == ref.shape and torch.allclose(out, ref, atol=1e-6)
    enc.train()  # BatchNorm on batch statistics (ResNet-50): zero rows would shift them, so no padding
    encode_bucketed(enc, x, bucket=4, pad=True)
    assert seen[-1] == 5
    encode_bucketed(enc.eval(), x)  # on the CPU nothing is padded
    assert seen[-1] == 5
