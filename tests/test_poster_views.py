"""train.poster_views: augmented poster views (encoders/augment.py) cached and swapped into training batches."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_RUN_OVERRIDES

from genrefusion.config import load_config
from genrefusion.encoders.inputs import Inputs, add_poster_views
from genrefusion.errors import ConfigError
from genrefusion.inference import Batcher, swap_views


def _inputs(n=6, d=4, views=2, with_views=(1, 2, 4)):
    """Clean features 0, view v's features v (row-independent), so a batch shows which view each row got."""
    inp = Inputs(image=torch.zeros(n, d), image_ok=torch.ones(n, dtype=torch.bool), text_ok=torch.zeros(n, dtype=torch.bool))
    inp.image_views = torch.stack([torch.full((len(with_views), d), float(v)) for v in range(1, views + 1)])
    inp.view_index = torch.full((n,), -1, dtype=torch.long)
    inp.view_index[list(with_views)] = torch.arange(len(with_views))
    return inp


def test_training_batches_show_each_poster_or_one_of_its_views_eval_batches_never():
    inp = _inputs()
    batcher = Batcher(inp, np.zeros((6, 2)), np.ones((6, 2)))
    rows = np.arange(6)
    torch.manual_seed(0)
    seen = np.stack([batcher.for_training()(rows)["image"][:, 0].numpy() for _ in range(60)])
    assert (seen[:, [0, 3, 5]] == 0).all()  # rows without views: always the poster itself
    for r in (1, 2, 4):  # rows with views: the poster and each of its 2 views, each about a third of the time
        counts = np.bincount(seen[:, r].astype(int), minlength=3)
        assert counts.sum() == 60 and (counts >= 8).all(), counts
    assert (inp.image == 0).all()  # the stored features are never written into
    for _ in range(5):
        assert (batcher(rows)["image"] == 0).all()  # dev / test / prediction batches: the posters themselves


def test_swap_views_is_seeded_by_torchs_global_rng():
    inp = _inputs()
    torch.manual_seed(3)
    a = swap_views(inp.image, inp.view_index, inp.image_views)
    torch.manual_seed(3)
    b = swap_views(inp.image, inp.view_index, inp.image_views)
    assert torch.equal(a, b)


def test_poster_views_config_is_validated():
    assert load_config().train.poster_views == 0
    assert load_config(overrides={"train.poster_views": 2}).train.poster_views == 2
    with pytest.raises(ConfigError, match="poster_views"):
        load_config(overrides={"train.poster_views": -1})
    with pytest.raises(ConfigError, match=r"train.poster_views needs cached poster features"):
        load_config(overrides={"train.poster_views": 1, "train.finetune": "all"})


class _FakeEncoder(torch.nn.Module):
    """A 'backbone' whose feature is the mean pixel: views (cropped, thumbnailed, re-encoded) differ a little."""
    name, dim, input_size, fingerprint = "fake", 2, 8, "fake0"

    def __init__(self):
        super().__init__()
        self.calls = 0

    def preprocess(self, im, train=False):
        return torch.from_numpy(np.asarray(im.convert("RGB").resize((8, 8)), np.float32) / 255).permute(2, 0, 1)

    def forward(self, x):
        self.calls += len(x)
        return torch.stack([x.mean((1, 2, 3)), x[:, 0].mean((1, 2))], 1)


def _noisy_jpeg(path, seed):
    from PIL import Image

    px = np.random.default_rng(seed).integers(0, 256, (60, 40, 3), dtype=np.uint8)
    px[:30] //= 3  # a darker top half, so a crop or a flip changes the features
    Image.fromarray(px).save(path, format="JPEG", quality=90)
    return path


def test_add_poster_views_indexes_training_posters_and_caches_them(tmp_path):
    from genrefusion.encoders.extract import extract_image_features

    posters = [_noisy_jpeg(tmp_path / f"p{i}.jpg", i) for i in range(4)] + [None]  # the last title has no poster
    enc = _FakeEncoder()
    clean = extract_image_features(posters, enc, None, num_workers=0, progress=False)
    inp = Inputs(image=torch.from_numpy(clean.values), image_ok=torch.from_numpy(clean.ok))
    ids = [f"t{i}" for i in range(5)]
    add_poster_views(inp, posters, np.array([0, 2, 3, 4]), enc, 2, tmp_path / "cache", ids, num_workers=0,
                     progress=False)
    assert inp.image_views.shape == (2, 3, 2)  # rows 0, 2, 3 (row 4 has no poster, row 1 is not training)
    assert inp.view_index.tolist() == [0, -1, 1, 2, -1]
    assert not torch.allclose(inp.image_views[0], inp.image_views[1])
    assert torch.allclose(inp.image_views.mean(0), inp.image[[0, 2, 3]], atol=0.15)  # the same posters, seen worse
    enc.calls = 0
    again = Inputs(image=inp.image, image_ok=inp.image_ok)
    add_poster_views(again, posters, np.array([0, 2, 3, 4]), enc, 2, tmp_path / "cache", ids, num_workers=0,
                     progress=False)
    assert enc.calls == 0 and torch.equal(again.image_views, inp.image_views)  # from the feature cache


def test_training_with_poster_views(tiny_run_data, tiny_run_cache, tmp_path, monkeypatch):
    """The main job with ``train.poster_views``: views of the training posters only, cached, logged, timed."""
    from genrefusion import train as T

    monkeypatch.setenv("GENREFUSION_CACHE", str(tiny_run_cache))
    seen = {}
    real = T.add_poster_views

    def spy(inputs, posters, rows, *a, **kw):
        real(inputs, posters, rows, *a, **kw)
        seen["rows"], seen["index"] = np.asarray(rows), inputs.view_index.clone()

    monkeypatch.setattr(T, "add_poster_views", spy)
    run = tmp_path / "run"
    m = T.main(tiny_run_data, run, load_config(overrides={**TINY_RUN_OVERRIDES, "train.poster_views": 1}),
               progress=False, write_report=False, device="cpu")
    assert m["config"]["train"]["poster_views"] == 1 and "features_views_s" in m["timings"]
    indexed = set(np.flatnonzero(seen["index"].numpy() >= 0).tolist())
    assert indexed and indexed <= set(seen["rows"].tolist())  # training rows only: dev and test never get views
    assert "poster views: 1 per training poster" in (run / "train.log").read_text()
    assert m["models"]["fused"]["mAP"] is not None
