"""Posters: corrupt, truncated, empty, non-image, huge (bomb), exotic formats and EXIF rotation, through
``load_image``, the dataset validator, ``genrefusion validate``, ``genrefusion predict`` and the API."""
from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
import torch
from PIL import Image

from genrefusion.data.images import load_image
from genrefusion.data.validate import validate_dataset
from genrefusion.errors import BadInput

from .helpers import (assert_one_line_error, encode, exif_rotated, gradient, jpeg_bomb, png_bomb,
                      run_cli)


def _good_jpeg() -> bytes:
    return encode(gradient((40, 60)), "JPEG", quality=90)


def _cmyk_jpeg() -> bytes:
    return encode(gradient((40, 60)).convert("CMYK"), "JPEG")


def _palette_transparent_gif() -> bytes:
    im = gradient((30, 30)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encode(im, "GIF", transparency=0)


def _animated_gif() -> bytes:
    frames = [Image.new("P", (16, 16), i) for i in range(3)]
    buf = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buf


def _i16_png() -> bytes:
    im = Image.new("I;16", (20, 20))
    im.putdata([i * 150 for i in range(400)])
    return encode(im, "PNG")


# name -> bytes that must load as an RGB image
GOOD = {
    "jpeg": _good_jpeg,
    "png": lambda: encode(gradient(), "PNG"),
    "gif": _palette_transparent_gif,
    "gif-animated": _animated_gif,
    "webp": lambda: encode(gradient(), "WEBP"),
    "webp-lossless-alpha": lambda: encode(gradient().convert("RGBA"), "WEBP", lossless=True),
    "cmyk-jpeg": _cmyk_jpeg,
    "greyscale-jpeg": lambda: encode(gradient(mode="L"), "JPEG"),
    "greyscale-alpha-png": lambda: encode(gradient(mode="LA"), "PNG"),
    "rgba-png": lambda: encode(Image.new("RGBA", (30, 40), (200, 10, 10, 0)), "PNG"),
    "bilevel-png": lambda: encode(gradient(mode="1"), "PNG"),
    "16-bit-png": _i16_png,
    "1x1-jpeg": lambda: encode(Image.new("RGB", (1, 1), (5, 6, 7)), "JPEG"),
    "1x1-png": lambda: encode(Image.new("RGB", (1, 1), (5, 6, 7)), "PNG"),
    "bmp": lambda: encode(gradient(), "BMP"),
    "tiff": lambda: encode(gradient(), "TIFF"),
    "progressive-jpeg": lambda: encode(gradient(), "JPEG", progressive=True),
}


def _truncated() -> bytes:
    d = _good_jpeg()
    return d[: len(d) // 2]


def _bad_huffman() -> bytes:
    d = bytearray(_good_jpeg())
    i = d.index(b"\xff\xc4")  # DHT segment: a Huffman table that cannot be built
    d[i + 4:i + 40] = b"\xff" * 36
    return bytes(d)


def _bad_sof() -> bytes:
    d = bytearray(_good_jpeg())
    d[d.index(b"\xff\xc0") + 4] = 99  # sample precision 99 bits
    return bytes(d)


# name -> (bytes, words the one-line reason must contain)
BAD = {
    "empty": (lambda: b"", "empty"),
    "text-named-jpg": (lambda: b"<html>this is not an image</html>\n", "not an image"),
    "truncated-jpeg": (_truncated, "truncated"),
    "jpeg-header-only": (lambda: _good_jpeg()[:40], ""),
    "jpeg-bad-huffman-table": (_bad_huffman, ""),
    "jpeg-bad-frame-header": (_bad_sof, ""),
    "png-bad-crc": (lambda: encode(gradient(), "PNG")[:-20] + b"\0" * 20, ""),
    "random-bytes": (lambda: bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "not an image"),
    "bomb-png-30000x30000": (png_bomb, "too large"),
    "bomb-jpeg-30000x30000": (jpeg_bomb, "too large"),
    "bomb-png-1x2000000000": (lambda: png_bomb(1, 2_000_000_000), "too large"),
}


@pytest.mark.parametrize("name", GOOD)
def test_good_formats_load_as_rgb(name, tmp_path):
    data = GOOD[name]()
    for src in (data, tmp_path / f"{name}.img"):
        if not isinstance(src, bytes):
            src.write_bytes(data)
        im = load_image(src, name=name)
        assert im.mode == "RGB" and im.size[0] >= 1 and im.size[1] >= 1
        assert np.asarray(im).dtype == np.uint8


def test_alpha_is_flattened_on_white():
    im = load_image(GOOD["rgba-png"](), name="alpha")
    assert im.getpixel((0, 0)) == (255, 255, 255)  # fully transparent red -> white, not red or black


@pytest.mark.parametrize("name", BAD)
def test_bad_posters_raise_one_line_bad_input(name, tmp_path):
    data, word = BAD[name]
    data = data()
    path = tmp_path / "poster.jpg"
    path.write_bytes(data)
    for src in (data, path):
        with pytest.raises(BadInput) as ei:
            load_image(src, name=f"title-{name}")
        msg = str(ei.value)
        assert "\n" not in msg and f"title-{name}" in msg and word in msg, msg


@pytest.mark.parametrize("make", [png_bomb, jpeg_bomb])
def test_decompression_bomb_refused_cheaply(make, monkeypatch):
    from PIL import ImageFile

    data = make()
    assert len(data) < 2000
    decoded, real_load = [], ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda im: decoded.append(im.size) or real_load(im))
    tracemalloc.start()
    try:
        with pytest.raises(BadInput, match="too large"):
            load_image(data, name="bomb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a decode would need 30000*30000*3 = 2.7 GB; refused from the header: no pixel is decoded, next to no
    # memory is used (the refusal time is a figure in benchmarks/bench_robustness.py)
    assert decoded == [], decoded
    assert peak < 20 * 1024 * 1024, peak


def test_oversized_file_refused_without_reading(tmp_path):
    from genrefusion.data.images import MAX_BYTES

    p = tmp_path / "huge.jpg"
    with open(p, "wb") as fh:
        fh.truncate(MAX_BYTES + 1)  # sparse: no data written
    with pytest.raises(BadInput, match="too large"):
        load_image(p)


def test_missing_and_folder_posters(tmp_path):
    with pytest.raises(BadInput, match="not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(BadInput, match="not a regular file"):
        load_image(tmp_path)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotation_is_honoured(orientation):
    data, want = exif_rotated((20, 60), orientation)
    got = load_image(data, name="exif")
    assert got.size == ((20, 60) if orientation == 3 else (60, 20))  # 3 = 180 degrees; 6, 8 = quarter turns
    assert np.array_equal(np.asarray(got), np.asarray(want))


def test_broken_exif_does_not_lose_the_poster():
    im = gradient((20, 30))
    exif = Image.Exif()
    exif[0x0112] = 99  # not a valid orientation
    got = load_image(encode(im, "PNG", exif=exif.tobytes()))
    assert got.size == (20, 30)


# -- through the dataset validator and `genrefusion validate` --------------------------------------------------
def _poster_dataset(root, write_raw_dataset):
    posters = root / "posters"
    posters.mkdir(parents=True)
    recs = []
    for kind, table in (("good", GOOD), ("bad", BAD)):
        for name, val in table.items():
            data = (val if kind == "good" else val[0])()
            (posters / f"{name}.jpg").write_bytes(data)  # every file named .jpg whatever its format
            recs.append({"id": f"{kind}-{name}", "genres": ["Drama"], "plot": "A plot.", "poster": f"posters/{name}.jpg"})
    return write_raw_dataset(root, recs, genres=["Drama"], name="posters")


@pytest.mark.parametrize("decode", [True, False])
def test_validator_flags_exactly_the_bad_posters(decode, tmp_path, write_raw_dataset, inputs):
    root = _poster_dataset(tmp_path / "ds", write_raw_dataset)
    rep = validate_dataset(root, decode=decode, workers=1)
    bad = {p.id for p in rep.problems if p.kind == "bad-poster"}
    inputs(len(GOOD) + len(BAD), "dataset rows")
    want = {f"bad-{n}" for n in BAD}
    if not decode:
        # header-only check: catches everything but damage past the header
        want -= {"bad-truncated-jpeg", "bad-png-bad-crc", "bad-jpeg-header-only"}
        assert bad >= want and not {b for b in bad if b.startswith("good-")}
    else:
        assert bad == want
    for p in rep.problems:
        assert "\n" not in p.message
    # a bad poster drops the poster only: the title keeps its plot and stays usable
    assert rep.usable_titles == rep.titles == len(GOOD) + len(BAD)


def test_validate_cli_reports_each_bad_poster_by_id(tmp_path, write_raw_dataset):
    root = _poster_dataset(tmp_path / "ds", write_raw_dataset)
    rc, out, err = run_cli(["validate", root, "--workers", "1", "--json", tmp_path / "rep.json"])
    assert rc == 0 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ": bad-poster: " in ln]
    assert sorted(ln.split(":")[0] for ln in lines) == sorted(f"bad-{n}" for n in BAD)
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["problems_by_kind"] == {"bad-poster": len(BAD)}
    rc, _, _ = run_cli(["validate", root, "--workers", "1", "--strict"])
    assert rc == 1


# -- through `genrefusion predict` and the API --------------------------------------------------------------------
@pytest.mark.parametrize("name", BAD)
def test_predict_cli_bad_poster_one_error_line(name, tiny_run, tmp_path):
    p = tmp_path / f"{name}.jpg"
    p.write_bytes(BAD[name][0]())
    rc, out, err = run_cli(["predict", tiny_run, "--poster", p])
    assert_one_line_error(rc, err, p.name)
    assert out == ""


def test_predict_cli_missing_poster(tiny_run, tmp_path):
    rc, _, err = run_cli(["predict", tiny_run, "--poster", tmp_path / "nope.jpg", "--plot", "x"])
    assert_one_line_error(rc, err, "nope.jpg", "not found")


@pytest.mark.parametrize("name", ["cmyk-jpeg", "webp", "greyscale-alpha-png", "1x1-png", "gif-animated"])
def test_predict_cli_exotic_formats_work(name, tiny_run, tmp_path):
    p = tmp_path / f"{name}.jpg"
    p.write_bytes(GOOD[name]())
    rc, out, err = run_cli(["predict", tiny_run, "--poster", p])
    assert rc == 0, err
    res = json.loads(out)
    assert res["used"] == ["poster"] and all(0.0 <= v <= 1.0 for v in res["scores"].values())


@pytest.mark.parametrize("name", BAD)
def test_api_bad_poster_is_4xx_naming_it(name, api):
    r = api.post("/predict", files={"poster": (f"{name}.jpg", BAD[name][0](), "image/jpeg")},
                 data={"plot": "A detective hunts a killer."})
    assert r.status_code in (400, 413), r.text
    body = r.json()
    assert body["status"] == r.status_code and "\n" not in body["error"]
    # an empty upload is treated as a missing poster: the error then names the missing input
    assert f"{name}.jpg" in body["error"] or (name == "empty" and "poster" in body["error"]), body


@pytest.mark.parametrize("name", BAD)
def test_api_batch_bad_poster(name, api):
    import base64

    b64 = base64.b64encode(BAD[name][0]()).decode()
    titles = [{"plot": "A love story."}, {"poster_base64": b64, "id": "x"}]
    r = api.post("/predict/batch", json=titles)
    if name == "empty":  # "" base64 = no poster, and no plot either
        assert r.status_code == 400 and "titles[1]" in r.json()["error"]
        return
    assert r.status_code in (400, 413) and "titles[1]" in r.json()["error"], r.text
    r = api.post("/predict/batch?partial=true", json=titles)
    assert r.status_code == 200
    res = r.json()["results"]
    assert res[0]["error"] is None and res[0]["genres"] is not None and res[1]["error"]


@pytest.mark.parametrize("name", GOOD)
def test_api_good_formats_work(name, api):
    r = api.post("/predict", files={"poster": (f"{name}.jpg", GOOD[name](), "application/octet-stream")})
    assert r.status_code == 200, r.text
    assert r.json()["used"] == ["poster"]


def test_api_exif_rotation_honoured_end_to_end(api):
    data, shown = exif_rotated((20, 60), 6)
    rotated = encode(shown, "PNG")
    plain = encode(gradient((20, 60)), "PNG")

    def scores(b):
        r = api.post("/predict", files={"poster": ("p.png", b, "image/png")})
        assert r.status_code == 200, r.text
        return r.json()["scores"]

    a, b, c = scores(data), scores(rotated), scores(plain)
    # the tagged file predicts exactly like the physically rotated pixels, not like the raw stored pixels
    assert a == b
    assert a != c


def test_predict_batch_over_dataset_with_bad_posters(tiny_run, tmp_path, write_raw_dataset, inputs):
    """`predict --batch DATASET`: each bad poster is that row's one-line error; the good ones are predicted."""
    root = _poster_dataset(tmp_path / "ds", write_raw_dataset)
    out = tmp_path / "pred.jsonl"
    rc, stdout, err = run_cli(["predict", tiny_run, "--batch", root, "--out", out, "--no-progress",
                               "--batch-size", "8"])
    assert rc == 0 and "Traceback" not in err, err
    rows = {r["id"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    inputs(len(rows), "dataset rows")
    assert len(rows) == len(GOOD) + len(BAD)
    for rid, r in rows.items():
        if rid.startswith("good-"):
            assert r["error"] is None and r["used"] == ["poster", "plot"], r
        else:
            assert r["error"] and "\n" not in r["error"] and rid.removeprefix("bad-") in r["error"], r
    assert f"{len(BAD)} failed" in stdout


# -- through training's data path: corpus (header checks) and poster feature extraction ---------------------------
class _CountingEncoder(torch.nn.Module):
    """A stand-in backbone: 4 features (mean RGB, 1), counting the posters it encodes."""

    name, fingerprint, dim, preprocess_version = "counting", "test", 4, 1

    def __init__(self):
        super().__init__()
        self.calls = 0

    def preprocess(self, im):
        return torch.from_numpy(np.asarray(im.resize((8, 8)), np.float32)).permute(2, 0, 1) / 255

    def forward(self, x):
        self.calls += x.shape[0]
        return torch.cat([x.mean(dim=(2, 3)), torch.ones(len(x), 1)], 1)


def test_training_data_path_survives_every_bad_poster(tmp_path, write_raw_dataset):
    """Training validates with decode=False (header checks) and decodes posters during feature extraction:
    neither may crash on a bad poster (a bomb header used to raise DecompressionBombError out of train)."""
    from genrefusion.data.dataset import Dataset
    from genrefusion.encoders.extract import extract_image_features
    from genrefusion.data.corpus import load_corpus

    root = _poster_dataset(tmp_path / "ds", write_raw_dataset)
    corpus = load_corpus([Dataset(root)], genres=["Drama"])
    ids = [t.id for t in corpus.titles]
    assert len(ids) == len(GOOD) + len(BAD)  # every title kept (it has a plot)
    header_bad = {i for i, p in zip(ids, corpus.posters) if p is None}
    assert {f"bad-{n}" for n in ("empty", "text-named-jpg", "random-bytes", "bomb-png-30000x30000",
                                 "bomb-jpeg-30000x30000", "bomb-png-1x2000000000")} <= header_bad
    assert not {i for i in header_bad if i.startswith("good-")}
    enc = _CountingEncoder()
    feats = extract_image_features(corpus.posters, enc, cache=None, batch_size=4, num_workers=0, ids=ids,
                                   progress=False)
    failed = {ids[i] for i in feats.errors}
    ok = {ids[i] for i in np.flatnonzero(feats.ok)}
    # whatever passed the header check but does not decode fails here, alone, with a one-line reason
    assert failed | header_bad == {f"bad-{n}" for n in BAD}
    assert ok == {f"good-{n}" for n in GOOD} and enc.calls == len(GOOD)
    assert all("\n" not in e for e in feats.errors.values())
