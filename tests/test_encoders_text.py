"""MiniLM plot encoder (offline, shipped weights) and plot feature extraction with the cache."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genrefusion.encoders.cache import content_key
from genrefusion.encoders.extract import extract_text_features, feature_cache_for
from genrefusion.encoders.text import MiniLMEncoder, build_text_encoder
from genrefusion.errors import ConfigError

ALIEN_1 = "A crew of astronauts aboard a spaceship is hunted by a deadly alien creature in deep space."
ALIEN_2 = "Space explorers on a distant planet are attacked by a monstrous extraterrestrial lifeform."
ROMANCE = "Two old friends fall in love while planning a wedding in a small Italian village."


@pytest.fixture(scope="module")
def minilm():
    return MiniLMEncoder()


def cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_minilm_features_shape_norm_and_similarity(minilm):
    f = minilm.encode([ALIEN_1, ALIEN_2, ROMANCE])
    assert f.shape == (3, 384) and f.dtype == np.float32 and minilm.dim == 384
    assert np.allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-5)
    assert cos(f[0], f[1]) > cos(f[0], f[2]) + 0.2
    # batching/sorting by length must not change results or their order
    single = np.concatenate([minilm.encode([t]) for t in (ROMANCE, ALIEN_1)])
    assert np.allclose(single, f[[2, 0]], atol=1e-5)
    assert len(minilm.fingerprint) == 16


def test_minilm_is_offline(minilm):
    import os

    assert os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"


def test_minilm_fine_tuning_top_layers(minilm):
    try:
        params = minilm.unfreeze_top(1)
        trainable = [p for p in minilm.parameters() if p.requires_grad]
        assert trainable and len(trainable) == len(params) < len(list(minilm.parameters()))
        minilm.train()
        batch = minilm.tokenize([ALIEN_1, ROMANCE])
        out = minilm(**batch)
        assert out.shape == (2, 384)
        out.sum().backward()
        assert all(p.grad is not None for p in params)
        assert all(p.grad is None for p in minilm.model.embeddings.parameters())
        with pytest.raises(ConfigError, match="outside 0..6"):
            minilm.unfreeze_top(7)
    finally:
        minilm.unfreeze_top(0)
        minilm.zero_grad(set_to_none=True)
        minilm.eval()
    assert len(minilm.layer_groups()) == 7


def test_extract_text_features_missing_and_cache(minilm, tmp_path, monkeypatch):
    texts = [ALIEN_1, None, "   ", ROMANCE, "", ALIEN_1 + "\n"]
    calls = []
    orig = minilm.encode
    monkeypatch.setattr(minilm, "encode", lambda t, batch_size=32: calls.append(len(t)) or orig(t, batch_size))
    cache = feature_cache_for(minilm, root=tmp_path)
    f = extract_text_features(texts, minilm, cache=cache, ids=list("abcdef"), progress=False)
    assert f.ok.tolist() == [True, False, False, True, False, True] and f.errors == {}
    assert np.array_equal(f.values[0], f.values[5])  # same text after strip: encoded once
    assert sum(calls) == 2 and len(cache) == 2
    assert not f.values[~f.ok].any()

    g = extract_text_features(texts, minilm, cache=feature_cache_for(minilm, root=tmp_path), progress=False)
    assert sum(calls) == 2 and g.cache_hits == 3
    assert np.array_equal(g.values, f.values)
    direct = orig([ALIEN_1, ROMANCE])
    assert np.allclose(f.values[[0, 3]], direct, atol=1e-6)


def test_unknown_text_encoder():
    with pytest.raises(ConfigError, match="unknown frozen text encoder 'bert'"):
        build_text_encoder("bert")


def test_non_text_plot_is_an_error_not_a_crash(minilm):
    f = extract_text_features([ALIEN_1, 42], minilm, ids=["ok", "weird"], progress=False)
    assert f.ok.tolist() == [True, False] and "plot of weird" in f.errors[1]
    assert torch.is_tensor(minilm.tokenize([ALIEN_1])["input_ids"])


# -- ONNX Runtime for frozen features -------------------------------------------------------------------------
def test_onnxruntime_features_match_torch(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("GENREFUSION_CACHE", str(tmp_path))
    texts = [ALIEN_1, "", ROMANCE * 8, "ok"]
    fast = MiniLMEncoder(runtime="onnxruntime")
    assert fast.onnx_session() is not None
    graph = next((tmp_path / "onnx").glob("minilm-*.onnx"))
    ref = MiniLMEncoder(runtime="torch")
    assert ref.onnx_session() is None
    assert np.abs(fast.encode(texts, batch_size=3) - ref.encode(texts, batch_size=3)).max() < 1e-5
    # the encoder stays in eval mode after the export (the exporter restores its wrapper's mode)
    assert not fast.model.training and not fast.training

    # a damaged graph in the cache (a killed copy, a full disk) is exported again, not trusted
    graph.write_bytes(graph.read_bytes()[:1000])
    again = MiniLMEncoder(runtime="onnxruntime")
    assert again.onnx_session() is not None and graph.stat().st_size > 1_000_000
    assert not list((tmp_path / "onnx").glob(".minilm-*"))  # no temp files left


def test_onnxruntime_unavailable(tmp_path, monkeypatch, caplog):
    import builtins

    monkeypatch.setenv("GENREFUSION_CACHE", str(tmp_path))
    real_import = builtins.__import__

    def no_ort(name, *a, **kw):
        if name == "onnxruntime":
            raise ImportError("no onnxruntime")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ort)
    with pytest.raises(ConfigError, match="onnxruntime is not installed"):
        MiniLMEncoder(runtime="onnxruntime").encode([ALIEN_1])
    auto = MiniLMEncoder(runtime="auto")
    with caplog.at_level("WARNING"):
        f = auto.encode([ALIEN_1])
    assert f.shape == (1, 384) and "runs in PyTorch" in caplog.text
    with pytest.raises(ConfigError, match="text runtime 'fast'"):
        MiniLMEncoder(runtime="fast")


def test_unwritable_cache_falls_back_to_torch(tmp_path, monkeypatch, caplog, minilm):
    """A read-only install: the graph cannot be exported, so 'auto' encodes in PyTorch (same features)."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("GENREFUSION_CACHE", str(blocker))
    enc = MiniLMEncoder(runtime="auto")
    with caplog.at_level("WARNING"):
        f = enc.encode([ALIEN_1])
    assert enc.onnx_session() is None and "runs in PyTorch" in caplog.text
    np.testing.assert_allclose(f, minilm.encode([ALIEN_1]), atol=1e-5)
    with pytest.raises(ConfigError, match="cannot write the ONNX graph"):
        MiniLMEncoder(runtime="onnxruntime").encode([ALIEN_1])


def test_fine_tuning_switches_encode_to_torch(minilm):
    try:
        minilm.unfreeze_top(1)
        assert minilm.onnx_session() is None  # the graph would hold the old weights
    finally:
        minilm.unfreeze_top(0)
        minilm._session = None


def test_short_text_same_as_truncating_tokenizer(minilm):
    # a text that fits one window is embedded exactly as before (so its cached features stay valid)
    tok = minilm.tokenize([ROMANCE])
    with torch.inference_mode():
        want = minilm(**tok).numpy()
    assert np.allclose(minilm.encode([ROMANCE]), want, atol=1e-5)
    assert minilm.feature_keys([ROMANCE]) == [content_key(ROMANCE)]


def test_long_text_is_the_average_of_its_windows(minilm):
    # ~600 word pieces: three windows; the alien half at the end must count as much as the romance start
    long = " ".join([ROMANCE] * 20 + [ALIEN_1] * 17)
    chunks = minilm.chunks([long])[0]
    assert len(chunks) == 3 and max(map(len, chunks)) <= minilm.max_length - 2
    assert max(map(len, chunks)) - min(map(len, chunks)) <= 1  # equal windows, no stub at the end
    windows = [minilm.tokenizer.decode(c) for c in chunks]
    parts = minilm.encode(windows)
    want = (parts * np.array([[len(c)] for c in chunks])).sum(0)
    want /= np.linalg.norm(want)
    got = minilm.encode([long, ROMANCE])
    assert np.allclose(got[0], want, atol=1e-4) and np.isclose(np.linalg.norm(got[0]), 1.0, atol=1e-5)
    truncated = minilm.encode([minilm.tokenizer.decode(minilm.tokenize([long])["input_ids"][0][1:-1])])[0]
    alien = minilm.encode([ALIEN_1])[0]
    assert cos(got[0], alien) > cos(truncated, alien) + 0.1  # the end of the text is no longer cut off
    # its feature-cache key is not the plain content key (features of long texts changed)
    assert minilm.feature_keys([long]) != [content_key(long)]


def test_chunked_features_cached_under_their_own_key(minilm, tmp_path):
    long = " ".join([ALIEN_2] * 40)
    cache = feature_cache_for(minilm, tmp_path)
    f = extract_text_features([long, ROMANCE], minilm, cache, progress=False)
    again = extract_text_features([long, ROMANCE], minilm, cache, progress=False)
    assert again.cache_hits == 2 and np.allclose(again.values, f.values)
    assert cache.lookup([content_key(long)])[0] == -1 and cache.lookup([content_key(ROMANCE)])[0] >= 0
    cache.close()
