"""Config: configs/default.toml is the defaults, strict checking, dotted overrides, --set parsing."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from genrefusion.config import Config, load_config
from genrefusion.errors import ConfigError

DEFAULT_TOML = Path(__file__).resolve().parent.parent / "configs" / "default.toml"


def _keys(obj, prefix=""):
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            yield from _keys(v, prefix + f.name + ".")
        else:
            yield prefix + f.name, v


def test_default_toml_loads_to_exactly_the_defaults():
    assert load_config(DEFAULT_TOML).to_dict() == Config().to_dict()


def test_default_toml_documents_every_key():
    text = DEFAULT_TOML.read_text(encoding="utf-8")
    section = ""
    present = set()
    for line in text.splitlines():
        m = re.match(r"^\[([\w.]+)\]\s*$", line)
        if m:
            section = m.group(1) + "."
            continue
        m = re.match(r"^#?\s*(\w+)\s*=", line)  # a set key, or an optional one shown commented out
        if m:
            present.add(section + m.group(1))
    for key, value in _keys(Config()):
        assert key in present, f"{key} missing from configs/default.toml"
        if value is None:  # TOML has no null: optional keys appear commented out
            assert re.search(rf"^# {key.split('.')[-1]} = ", text, re.M), key


def test_partial_file_and_overrides(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('seed = 3\n[train]\nepochs = 5\nhidden = [64, 32]\n[text.lstm]\nmax_len = 40\n')
    cfg = load_config(p, {"train.epochs": 7, "text.encoder": "lstm", "train.lr": 1})
    assert (cfg.seed, cfg.train.epochs, cfg.train.hidden, cfg.text.lstm.max_len) == (3, 7, [64, 32], 40)
    assert cfg.text.encoder == "lstm" and cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.train.batch_size == Config().train.batch_size  # untouched keys keep their default


@pytest.mark.parametrize("content, needle", [
    ("[train]\nepoch = 3\n", "did you mean 'train.epochs'"),  # named in full, as --set takes it
    ("[train]\nepochs = \"3\"\n", "train.epochs must be an integer"),
    ("[train]\nepochs = 0\n", "train.epochs must be >= 1"),
    ("[train]\nhidden = [64]\n", "train.hidden must have 2 sizes"),
    ("[text]\nencoder = \"lstn\"\n", "did you mean 'lstm'"),
    ("[data]\ndev = 0.5\ntest = 0.45\n", "data.dev + data.test"),
    ("[text.lstm]\nunfreeze_epochs = [0, 0, 0]\n", "unfreeze_epochs"),
    ("train = 3\n", "must be a table"),
    ("[train\n", "not valid TOML"),
])
def test_bad_files_give_one_line_errors(tmp_path, content, needle):
    p = tmp_path / "bad.toml"
    p.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_missing_file_and_bad_override(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="unknown key 'train.nope'"):
        load_config(overrides={"train.nope": 1})
    with pytest.raises(ConfigError, match="did you mean 'text.lstm.max_len'"):
        load_config(overrides={"text.lstm.max_lenn": 1})
    with pytest.raises(ConfigError, match="is a value, not a section"):
        load_config(overrides={"seed.x": 1})


def test_set_arguments_are_toml_values_or_words():
    from genrefusion.commands.train import parse_set

    got = parse_set(["train.epochs=3", "train.hidden=[8, 4]", "text.encoder=lstm", "train.lr=1e-4",
                     "image.weights=\"/x y.pth\""])
    assert got == {"train.epochs": 3, "train.hidden": [8, 4], "text.encoder": "lstm", "train.lr": 1e-4,
                   "image.weights": "/x y.pth"}
    assert load_config(overrides=got).train.hidden == [8, 4]
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_set(["train.epochs"])


def test_pretrained_lstm_keys_go_together():
    with pytest.raises(ConfigError, match="go together"):
        load_config(overrides={"text.lstm.pretrained": "wt103.pth"})
    with pytest.raises(ConfigError, match="emb_dim must be <= 300"):
        load_config(overrides={"text.lstm.emb_dim": 400})
    cfg = load_config(overrides={"text.lstm.pretrained": "wt103.pth", "text.lstm.pretrained_vocab": "itos.json",
                                 "text.lstm.emb_dim": 400, "text.lstm.hidden": 1152, "text.lstm.layers": 3})
    assert cfg.text.lstm.emb_dim == 400
