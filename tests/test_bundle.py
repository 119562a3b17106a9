"""Model bundle: round trip, and every kind of damage refused with a one-line BundleError."""
from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch

from genrefusion.bundle import load_bundle, read_bundle_config, save_bundle
from genrefusion.errors import BundleError


@pytest.fixture
def bundle_dir(tiny_run, tmp_path):
    dest = tmp_path / "model"
    shutil.copytree(tiny_run / "model", dest)
    return dest


def _one_line(err):
    assert "\n" not in str(err.value)
    return str(err.value)


def test_round_trip_same_scores(bundle_dir, tmp_path):
    b = load_bundle(bundle_dir)
    assert b.default_model == "fused" and set(b.models) == {"poster", "plot", "fused"}
    G, Di = len(b.genres), b.spec["image_dim"]
    torch.manual_seed(0)
    img, txt = torch.randn(5, Di), torch.randn(5, b.spec["text_dim"])
    img_present, txt_present = torch.tensor([True, True, False, True, True]), torch.ones(5, dtype=torch.bool)
    ref = b.models["fused"](img, img_present, txt, txt_present)
    assert ref.shape == (5, G)
    again = save_bundle(tmp_path / "copy", b.spec, b.models, b.thresholds, {k: v for k, v in b.config.items()
                        if k not in ("format", "version", "genres", "models", "default_model", "thresholds",
                                     "spec", "vocab")},
                        lexical=(b.lexical, b.config["lexical"]["weights"]) if b.lexical is not None else None)
    b2 = load_bundle(again)
    assert torch.allclose(b2.models["fused"](img, img_present, txt, txt_present), ref)
    if b.lexical is not None:  # the lexical blend travels: same tf-idf probabilities, same weights
        plots = ["A detective hunts a killer in a haunted house.", ""]
        np.testing.assert_array_equal(b2.lexical.predict_proba(plots), b.lexical.predict_proba(plots))
        assert {n: getattr(m, "lexical_weight", 0) for n, m in b2.models.items()} == \
            {n: getattr(m, "lexical_weight", 0) for n, m in b.models.items()}
    for n in b.models:
        np.testing.assert_array_equal(b2.thresholds[n], b.thresholds[n])
    assert b2.genres == b.genres
    # a run dir (the folder holding model/) is accepted in place of its model/ folder
    assert load_bundle(bundle_dir.parent).genres == b.genres


def test_only_some_models(bundle_dir):
    b = load_bundle(bundle_dir, models=["poster"])
    assert set(b.models) == {"poster"} and set(b.thresholds) == {"poster"}


def test_truncated_weights(bundle_dir):
    w = bundle_dir / "weights.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(BundleError) as err:
        load_bundle(bundle_dir)
    assert "truncated or damaged" in _one_line(err)


def test_garbage_header(bundle_dir):
    (bundle_dir / "weights.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(BundleError, match="not a valid safetensors"):
        load_bundle(bundle_dir)


def test_pickle_named_like_a_bundle_is_refused(bundle_dir):
    marker = bundle_dir.parent / "pwned"

    class Evil:  # would create ``marker`` if it were ever unpickled
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (bundle_dir / "weights.safetensors").write_bytes(pickle.dumps(Evil(), protocol=4))
    with pytest.raises(BundleError) as err:
        load_bundle(bundle_dir)
    assert "pickle" in _one_line(err) and not marker.exists()
    buf = bundle_dir / "weights.safetensors"
    torch.save({"x": torch.zeros(2)}, buf)  # torch.save's zip format
    with pytest.raises(BundleError, match="pickle/zip"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize("edit, needle", [
    (lambda c: c.update(format="other"), "format marker"),
    (lambda c: c.update(version=99), "unsupported bundle version"),
    (lambda c: c.update(genres=c["genres"] + ["Extra"]), "genres differ"),
    (lambda c: c["thresholds"].update(fused=c["thresholds"]["fused"][:-1]), "thresholds of model 'fused'"),
    (lambda c: c["thresholds"]["poster"].__setitem__(0, "high"), "thresholds of model 'poster'"),
    (lambda c: c.update(default_model="nope"), "default_model"),
    (lambda c: c.update(models=["poster", "ghost"]), "'models' must list"),
])
def test_edited_json_refused(bundle_dir, edit, needle):
    p = bundle_dir / "config.json"
    cfg = json.loads(p.read_text())
    edit(cfg)
    p.write_text(json.dumps(cfg))
    with pytest.raises(BundleError) as err:
        load_bundle(bundle_dir)
    assert needle in _one_line(err)


def test_genre_count_mismatch_with_weights(bundle_dir):
    p = bundle_dir / "config.json"
    cfg = json.loads(p.read_text())
    # consistent JSON (genres, spec, thresholds all agree) but one genre fewer than the weights hold
    cfg["genres"] = cfg["genres"][:-1]
    cfg["spec"]["genres"] = cfg["genres"]
    cfg["thresholds"] = {k: v[:-1] for k, v in cfg["thresholds"].items()}
    cfg["threshold_sets"] = {k: {"pooled": v["pooled"][:-1], "sets": {c: t[:-1] for c, t in v["sets"].items()}}
                             for k, v in cfg["threshold_sets"].items()}
    p.write_text(json.dumps(cfg))
    read_bundle_config(bundle_dir)  # the JSON alone is fine
    with pytest.raises(BundleError) as err:
        load_bundle(bundle_dir)
    # caught by the genre list recorded in the weights file, or (older bundles) by the tensor shapes
    msg = _one_line(err)
    assert "genre list in config.json differs" in msg or "do not match config.json" in msg


def test_threshold_sets_checked_and_optional(bundle_dir):
    p = bundle_dir / "config.json"
    cfg = json.loads(p.read_text())
    sets = cfg["threshold_sets"]["fused"]["sets"]
    assert set(sets) <= {"both", "poster", "plot"} and sets
    name = next(iter(sets))
    sets[name] = sets[name][:-1]  # one threshold short
    p.write_text(json.dumps(cfg))
    with pytest.raises(BundleError, match="threshold_sets of model 'fused'"):
        load_bundle(bundle_dir)
    cfg["threshold_sets"]["fused"]["sets"] = {"trailer": cfg["thresholds"]["fused"]}  # not an input combination
    p.write_text(json.dumps(cfg))
    with pytest.raises(BundleError, match="threshold_sets"):
        load_bundle(bundle_dir)
    del cfg["threshold_sets"]  # a bundle from before per-combination thresholds: its single set is the pooled one
    p.write_text(json.dumps(cfg))
    b = load_bundle(bundle_dir)
    assert b.threshold_sets["fused"].sets == {}
    np.testing.assert_array_equal(b.threshold_sets["fused"].pooled, cfg["thresholds"]["fused"])


def test_not_json_and_missing_parts(bundle_dir, tmp_path):
    (bundle_dir / "config.json").write_bytes(b"{\"format\": ")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle_dir)
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BundleError, match="config.json missing"):
        load_bundle(empty)


def test_dataset_or_unfinished_run_given_for_a_model_says_so(tmp_path):
    """`evaluate DATASET` (for `evaluate RUN --data DATASET`) and a run stopped before its model are named."""
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "titles.jsonl").write_text("{}\n")
    with pytest.raises(BundleError, match="a dataset folder, not a trained run.*--data DATASET"):
        read_bundle_config(ds)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"format": 1, "config": {}}))
    (run / "train.log").write_text("stage poster epoch 1/30\n")
    with pytest.raises(BundleError, match="without a model yet.*--resume"):
        load_bundle(run)


def test_missing_weights(bundle_dir):
    (bundle_dir / "weights.safetensors").unlink()
    with pytest.raises(BundleError, match="missing"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize("damage", ["truncate", "remove", "bad_json", "wrong_genres"])
def test_damaged_lexical_blend_is_one_line_error(bundle_dir, damage):
    """The lexical blend's tf-idf model is part of the bundle: damage to it is named, never a traceback."""
    import json

    cfg = json.loads((bundle_dir / "config.json").read_text())
    assert cfg["lexical"]["weights"], "the tiny run blends the tf-idf model in (text.lexical = auto)"
    lex, info = bundle_dir / "lexical.safetensors", bundle_dir / "lexical.json"
    if damage == "truncate":
        lex.write_bytes(lex.read_bytes()[: lex.stat().st_size // 2])
    elif damage == "remove":
        lex.unlink()
    elif damage == "bad_json":
        info.write_text("{not json")
    else:  # a tf-idf model for other genres than the networks'
        from safetensors.numpy import load, save

        arrays = load(lex.read_bytes())
        arrays["coef"], arrays["intercept"] = arrays["coef"][:-1], arrays["intercept"][:-1]
        lex.write_bytes(save(arrays))
    with pytest.raises(BundleError) as err:
        load_bundle(bundle_dir)
    msg = _one_line(err)
    assert "lexical" in msg and str(bundle_dir) in msg
