"""Model bundles: truncated/garbled safetensors, edited config.json, genre lists not matching the weights, and
pickles named like a bundle (refused, never unpickled: their payload would create a marker file) -- through
load_bundle, GenreClassifier.load, create_app and the predict/serve/evaluate/export CLIs."""
from __future__ import annotations

import json
import pickle
import shutil
import struct

import pytest
import torch

from genrefusion.bundle import load_bundle
from genrefusion.errors import BundleError, GenreFusionError

from .util import assert_cli_error


class Payload:
    """Unpickling this creates ``marker`` (what an attacker's ``os.system`` would do, made observable)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def bundle(tiny_run, tmp_path):
    dest = tmp_path / "run"
    dest.mkdir()
    shutil.copytree(tiny_run / "model", dest / "model")
    return dest / "model"


def _cfg(b):
    return json.loads((b / "config.json").read_text())


def _set_cfg(b, cfg):
    (b / "config.json").write_text(json.dumps(cfg))


# -- damage: name -> (function(bundle, tmp_path) applying it, words the one-line error must contain) ----------------
def _truncate(frac):
    def f(b, _):
        w = b / "weights.safetensors"
        data = w.read_bytes()
        w.write_bytes(data[: int(len(data) * frac)])
    return f


def _header_len(n):
    def f(b, _):
        w = b / "weights.safetensors"
        w.write_bytes(struct.pack("<Q", n) + w.read_bytes()[8:])
    return f


def _edit(fn):
    def f(b, _):
        cfg = _cfg(b)
        fn(cfg)
        _set_cfg(b, cfg)
    return f


def _add_genre(cfg):
    cfg["genres"].append("Polka")
    cfg["spec"]["genres"] = cfg["genres"]
    for t in cfg["thresholds"].values():
        t.append(0.5)


def _drop_genre(cfg):
    cfg["genres"].pop()
    cfg["spec"]["genres"] = cfg["genres"]
    for t in cfg["thresholds"].values():
        t.pop()


def _reorder_genres(cfg):  # same shapes: only the weights' own genre record can tell
    cfg["genres"] = cfg["genres"][1:] + cfg["genres"][:1]
    cfg["spec"]["genres"] = cfg["genres"]


def _rename_genre(cfg):
    cfg["genres"][0] = "Polka"
    cfg["spec"]["genres"] = cfg["genres"]


def _retensor(fn, keep_meta=True):
    """Rewrite weights.safetensors (a valid file) with its tensors changed by ``fn``."""
    def f(b, _):
        from safetensors.torch import load, save

        w = b / "weights.safetensors"
        raw = w.read_bytes()
        n = int.from_bytes(raw[:8], "little")
        meta = json.loads(raw[8:8 + n]).get("__metadata__")
        w.write_bytes(save(fn(dict(load(raw))), metadata=meta if keep_meta else None))
    return f


def _rename_key(t):
    k = sorted(t)[0]
    t["poster.bogus"] = t.pop(k)
    return t


def _transpose(t):
    k = next(k for k, v in sorted(t.items()) if v.ndim == 2 and v.shape[0] != v.shape[1])
    t[k] = t[k].t().contiguous()
    return t


def _drop_model(t):
    return {k: v for k, v in t.items() if not k.startswith("fused.")}


DAMAGE = {
    "weights-empty": (_truncate(0), "not a valid safetensors"),
    "weights-4-bytes": (_truncate(4 / 1e9), "not a valid safetensors"),
    "weights-half-header": (_truncate(0.001), "not a valid safetensors"),
    "weights-half": (_truncate(0.5), "not a valid safetensors"),
    "weights-last-byte-missing": (lambda b, _: (b / "weights.safetensors").write_bytes(
        (b / "weights.safetensors").read_bytes()[:-1]), "not a valid safetensors"),
    "weights-header-len-huge": (_header_len(1 << 62), "not a valid safetensors"),
    "weights-header-len-past-end": (_header_len(10 ** 9), "not a valid safetensors"),
    "weights-random": (lambda b, _: (b / "weights.safetensors").write_bytes(bytes(range(256)) * 64), "safetensors"),
    "weights-missing": (lambda b, _: (b / "weights.safetensors").unlink(), "weights.safetensors missing"),
    "weights-folder": (lambda b, _: ((b / "weights.safetensors").unlink(), (b / "weights.safetensors").mkdir()),
                       "weights.safetensors"),
    "tensor-renamed": (_retensor(_rename_key), "do not match"),
    "tensor-transposed": (_retensor(_transpose), "do not match"),
    "model-weights-missing": (_retensor(_drop_model), "no weights for model 'fused'"),
    "config-not-json": (lambda b, _: (b / "config.json").write_text('{"format": "genrefusion-bundle", '),
                        "not valid JSON"),
    "config-latin1": (lambda b, _: (b / "config.json").write_bytes(b'{"x": "caf\xe9"}'), "not valid JSON"),
    "config-missing": (lambda b, _: (b / "config.json").unlink(), "config.json missing"),
    "config-list": (lambda b, _: (b / "config.json").write_text("[]"), "format marker"),
    "config-no-marker": (_edit(lambda c: c.pop("format")), "format marker"),
    "config-version": (_edit(lambda c: c.update(version=99)), "version 99"),
    "config-genres-str": (_edit(lambda c: c.update(genres="Drama")), "'genres'"),
    "config-genres-dup": (_edit(lambda c: c["genres"].__setitem__(1, c["genres"][0])), "distinct"),
    "config-models-evil": (_edit(lambda c: c["models"].append("evil")), "'models'"),
    "config-default-bogus": (_edit(lambda c: c.update(default_model="bogus")), "default_model"),
    "config-thresholds-short": (_edit(lambda c: c["thresholds"]["fused"].pop()), "thresholds of model 'fused'"),
    "config-thresholds-nan": (_edit(lambda c: c["thresholds"]["poster"].__setitem__(0, float("nan"))),
                              "thresholds of model 'poster'"),
    "config-thresholds-str": (_edit(lambda c: c["thresholds"]["plot"].__setitem__(0, "0.5")),
                              "thresholds of model 'plot'"),
    "config-spec-genres": (_edit(lambda c: c["spec"].update(genres=c["genres"][:-1])), "'spec'"),
    "config-spec-hidden": (_edit(lambda c: c["spec"].update(hidden=[8, 4])), "do not match"),
    "config-spec-garbage": (_edit(lambda c: c["spec"].update(hidden="wide")), "'spec' cannot build"),
    "genre-added": (_edit(_add_genre), "do not match"),
    "genre-dropped": (_edit(_drop_genre), "do not match"),
    # bundles written before the weights recorded their genres: the shapes still give it away
    "old-bundle-genre-added": (lambda b, t: (_retensor(lambda x: x, keep_meta=False)(b, t), _edit(_add_genre)(b, t)),
                               "do not match"),
    "old-bundle-genre-dropped": (lambda b, t: (_retensor(lambda x: x, keep_meta=False)(b, t),
                                               _edit(_drop_genre)(b, t)), "do not match"),
    "genre-reordered": (_edit(_reorder_genres), "genre list"),
    "genre-renamed": (_edit(_rename_genre), "genre list"),
}


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_damaged_bundle_refused(bundle, tmp_path, name):
    damage, needle = DAMAGE[name]
    damage(bundle, tmp_path)
    for target in (bundle, bundle.parent):  # the bundle folder, and the run dir holding it
        with pytest.raises(BundleError) as err:
            load_bundle(target)
        msg = str(err.value)
        assert "\n" not in msg and needle in msg and str(bundle.parent) in msg, msg


@pytest.mark.parametrize("name", ["weights-half", "config-no-marker", "old-bundle-genre-added", "genre-reordered",
                                  "weights-header-len-huge"])
def test_damaged_bundle_every_entry_point(bundle, tmp_path, name, capsys):
    from genrefusion.predict import GenreClassifier
    from genrefusion.serve.app import create_app

    damage, needle = DAMAGE[name]
    damage(bundle, tmp_path)
    run = bundle.parent
    with pytest.raises(BundleError, match=needle):
        GenreClassifier.load(run)
    with pytest.raises(BundleError, match=needle):
        create_app(run)
    assert_cli_error(["predict", run, "--plot", "A haunted ship."], capsys, needle)
    assert_cli_error(["serve", run, "--port", "0", "--no-warmup"], capsys, needle)
    assert_cli_error(["export", run, "--out", tmp_path / "m.onnx"], capsys, needle)
    assert not (tmp_path / "m.onnx").exists()


# -- pickles named like a bundle ---------------------------------------------------------------------------------
def _payloads(marker):
    """Ways a pickle can pose as model weights: raw pickle protocols 0-5 and torch.save's zip."""
    import io

    out = {f"pickle-p{p}": pickle.dumps(Payload(marker), protocol=p) for p in range(6)}
    buf = io.BytesIO()
    torch.save({"poster.weight": Payload(marker)}, buf)
    out["torch-zip"] = buf.getvalue()
    return out


def test_payload_would_really_run(tmp_path):
    """Positive control: unpickling the payload does create the marker, so its absence below means something."""
    marker = tmp_path / "control"
    for name, blob in _payloads(marker).items():
        marker.unlink(missing_ok=True)
        if name == "torch-zip":
            import io

            torch.load(io.BytesIO(blob), weights_only=False)
        else:
            pickle.loads(blob)
        assert marker.exists(), name


@pytest.mark.parametrize("kind", [f"pickle-p{p}" for p in range(6)] + ["torch-zip"])
def test_pickle_as_weights_never_unpickled(bundle, tmp_path, kind, capsys):
    marker = tmp_path / "PWNED"
    (bundle / "weights.safetensors").write_bytes(_payloads(marker)[kind])
    with pytest.raises(BundleError) as err:
        load_bundle(bundle)
    msg = str(err.value)
    assert "\n" not in msg and ("pickle" in msg or "not a valid safetensors" in msg), msg
    assert_cli_error(["predict", bundle.parent, "--plot", "A plot."], capsys, "weights.safetensors")
    assert not marker.exists()


@pytest.mark.parametrize("name", ["model.pkl", "model.pt", "model"])
def test_pickle_file_given_as_bundle(tmp_path, name, capsys):
    marker = tmp_path / "PWNED"
    f = tmp_path / name
    f.write_bytes(_payloads(marker)["pickle-p4"])
    with pytest.raises(BundleError, match="not a model bundle"):
        load_bundle(f)
    assert_cli_error(["predict", f, "--plot", "A plot."], capsys, "not a model bundle")
    # a run dir whose model/ is a pickle file
    run = tmp_path / "run"
    run.mkdir()
    shutil.copyfile(f, run / "model")
    assert_cli_error(["predict", run, "--plot", "A plot."], capsys, str(run))
    assert not marker.exists()


def test_pickled_checkpoint_and_user_weights_never_unpickled(tmp_path, caplog):
    """Training checkpoints and user-supplied state dicts go through torch.load(weights_only=True)."""
    from genrefusion.encoders.resnet import read_state_dict
    from genrefusion.errors import ConfigError
    from genrefusion.training.rundir import RunDir

    marker = tmp_path / "PWNED"
    blobs = _payloads(marker)
    run = RunDir(tmp_path / "run")
    run.ckpts.mkdir(parents=True)
    for kind in ("pickle-p2", "pickle-p5", "torch-zip"):
        (run.ckpts / "poster.pt").write_bytes(blobs[kind])
        assert run.load_checkpoint("poster") is None  # unreadable: the stage restarts
        f = tmp_path / f"resnet-{kind}.pth"
        f.write_bytes(blobs[kind])
        with pytest.raises(ConfigError) as err:
            read_state_dict(f, "ResNet-50 weights")
        assert str(f) in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


def test_intact_copy_still_loads(bundle, tiny_run):
    """The checks refuse only damage: an untouched copy loads and predicts like the original."""
    from genrefusion.predict import GenreClassifier

    a, b = GenreClassifier.load(tiny_run), GenreClassifier.load(bundle.parent)
    t = [{"plot": "A haunted spaceship drifts toward a cursed planet."}]
    assert a.genres_ == b.genres_ and (a.predict_proba(t) == b.predict_proba(t)).all()
