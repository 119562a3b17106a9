"""Config files and --set overrides: unknown keys named with a suggestion, wrong types, negative/out-of-range and
non-finite values, unreadable files -- each a one-line ConfigError from load_config, and from `genrefusion train`
exactly one `error:` line, exit 2, no run folder created."""
from __future__ import annotations

import pytest

from genrefusion.config import Config, load_config
from genrefusion.errors import ConfigError

from .util import assert_cli_error

# (TOML text, --set argument, words the error must contain)
UNKNOWN = [
    ("[train]\nepoch = 3", "train.epoch=3", ["'train.epoch'", "did you mean 'train.epochs'"]),
    ("[trian]\nepochs = 3", "trian.epochs=3", ["'trian'", "did you mean 'train'"]),
    ("[text.lstm]\nhiden = 64", "text.lstm.hiden=64", ["'text.lstm.hiden'", "did you mean 'text.lstm.hidden'"]),
    ("[train]\nbatchsize = 8", "train.batchsize=8", ["'train.batchsize'", "did you mean 'train.batch_size'"]),
    ("epochs = 3", "epochs=3", ["'epochs'", "did you mean 'train.epochs'"]),  # right key, wrong section
    ("[image]\nencodr = 'resnet50'", "image.encodr=resnet50", ["'image.encodr'", "did you mean 'image.encoder'"]),
    ("[train]\nfusion = 'gmuu'", "train.fusion=gmuu", ["train.fusion", "concat", "did you mean 'gmu'"]),
    ("[text]\nencoder = 'bert'", "text.encoder=bert", ["text.encoder", "minilm"]),
    ("[train.epochs]\nx = 1", "train.epochs.x=1", ["train.epochs"]),
]
WRONG_TYPE = [
    ("[train]\nepochs = 'ten'", "train.epochs=ten", ["train.epochs", "integer", "'ten'"]),
    ("[train]\nepochs = 3.5", "train.epochs=3.5", ["train.epochs", "integer"]),
    ("[train]\nepochs = true", "train.epochs=true", ["train.epochs", "integer"]),
    ("[train]\nlr = 'fast'", "train.lr=fast", ["train.lr", "number"]),
    ("[train]\nhidden = 512", "train.hidden=512", ["train.hidden", "list"]),
    ("[train]\nhidden = [512, 'wide']", "train.hidden=[512,'wide']", ["train.hidden[1]", "integer"]),
    ("[image]\nencoder = 5", "image.encoder=5", ["image.encoder", "string"]),
    ("data = 5", "data=5", ["data", "table"]),
    ("[train]\nlr = nan", "train.lr=nan", ["train.lr", "finite"]),
    ("[train]\ndropout = nan", "train.dropout=nan", ["train.dropout", "finite"]),
    ("[train]\nweight_decay = inf", "train.weight_decay=inf", ["train.weight_decay", "finite"]),
]
OUT_OF_RANGE = [
    ("[train]\nbatch_size = -8", "train.batch_size=-8", ["train.batch_size", ">= 2", "-8"]),
    ("[train]\nbatch_size = 0", "train.batch_size=0", ["train.batch_size", ">= 2"]),
    ("[image]\nbatch_size = -1", "image.batch_size=-1", ["image.batch_size", ">= 1"]),
    ("[train]\nepochs = -3", "train.epochs=-3", ["train.epochs", ">= 1"]),
    ("[train]\nhidden = [-5, 16]", "train.hidden=[-5,16]", ["train.hidden"]),
    ("[train]\nhidden = [0, 16]", "train.hidden=[0,16]", ["train.hidden"]),
    ("[train]\nhidden = [64]", "train.hidden=[64]", ["train.hidden", "2 sizes"]),
    ("[train]\nlr = -0.001", "train.lr=-0.001", ["train.lr", "> 0"]),
    ("[train]\nlr = 0", "train.lr=0", ["train.lr", "> 0"]),
    ("[train]\ndropout = 1.5", "train.dropout=1.5", ["train.dropout", "<= 0.95"]),
    ("[data]\ndev = 0", "data.dev=0", ["data.dev", "> 0"]),
    ("[data]\ntest = -0.1", "data.test=-0.1", ["data.test", "> 0"]),
    ("[data]\ntest = 0", "data.test=0", ["data.test", "> 0"]),  # was accepted: training crashed on no test title
    ("[data]\ndev = 0.45\ntest = 0.45", None, ["data.dev + data.test"]),
    ("[data]\nmin_genre_count = 0", "data.min_genre_count=0", ["data.min_genre_count", ">= 1"]),
    ("[image]\nnum_workers = -1", "image.num_workers=-1", ["image.num_workers", ">= 0"]),
    ("[text.lstm]\nlayers = 9", "text.lstm.layers=9", ["text.lstm.layers", "<= 4"]),
    ("[text.lstm]\nmax_len = -200", "text.lstm.max_len=-200", ["text.lstm.max_len", ">= 8"]),
    ("[text.lstm]\nunfreeze_epochs = [0, 0, 0]", "text.lstm.unfreeze_epochs=[0,0,0]", ["unfreeze_epochs"]),
    ("[text.lstm]\nunfreeze_epochs = [1, -1, 2]", "text.lstm.unfreeze_epochs=[1,-1,2]", ["unfreeze_epochs"]),
    ("seed = -1", "seed=-1", ["seed", ">= 0"]),
    ("seed = 99999999999999", "seed=99999999999999", ["seed", "<="]),
]
CASES = [("unknown", *c) for c in UNKNOWN] + [("type", *c) for c in WRONG_TYPE] + [("range", *c) for c in OUT_OF_RANGE]
IDS = [f"{kind}-{(s or t).split('=')[0].strip()}" for kind, t, s, _ in CASES]


@pytest.mark.parametrize("kind,toml,setarg,needles", CASES, ids=IDS)
def test_load_config_file(tmp_path, kind, toml, setarg, needles):
    f = tmp_path / "bad.toml"
    f.write_text(toml + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    msg = str(err.value)
    assert "\n" not in msg and all(n in msg for n in needles), msg
    if kind != "range":  # parse-time errors name the file; range checks run on the merged config
        assert str(f) in msg


@pytest.mark.parametrize("kind,toml,setarg,needles", [c for c in CASES if c[2]],
                         ids=[i for i, c in zip(IDS, CASES) if c[2]])
def test_train_cli_set(tmp_path, kind, toml, setarg, needles, capsys):
    out = tmp_path / "run"
    assert_cli_error(["train", tmp_path / "nodata", "--out", out, "--set", setarg], capsys, *needles)
    assert not out.exists()


@pytest.mark.parametrize("kind,toml,setarg,needles", CASES[::3], ids=IDS[::3])
def test_train_cli_config_file(tmp_path, kind, toml, setarg, needles, capsys):
    f = tmp_path / "bad.toml"
    f.write_text(toml + "\n", encoding="utf-8")
    out = tmp_path / "run"
    assert_cli_error(["train", tmp_path / "nodata", "--out", out, "--config", f], capsys, *needles)
    assert not out.exists()


def _bad_files(tmp_path):
    (tmp_path / "nottoml.toml").write_text("[train\nepochs = 3\n")
    (tmp_path / "latin1.toml").write_bytes(b"# caf\xe9\n[train]\nepochs = 3\n")
    (tmp_path / "dup.toml").write_text("[train]\nepochs = 3\nepochs = 4\n")
    (tmp_path / "adir.toml").mkdir()
    (tmp_path / "binary.toml").write_bytes(bytes(range(256)))
    return {"missing": (tmp_path / "nope.toml", "not found"), "nottoml": (tmp_path / "nottoml.toml", "not valid TOML"),
            "latin1": (tmp_path / "latin1.toml", "UTF-8"), "dup": (tmp_path / "dup.toml", "not valid TOML"),
            "adir": (tmp_path / "adir.toml", "folder"), "binary": (tmp_path / "binary.toml", "binary.toml")}


@pytest.mark.parametrize("case", ["missing", "nottoml", "latin1", "dup", "adir", "binary"])
def test_unreadable_config_file(tmp_path, case, capsys):
    path, needle = _bad_files(tmp_path)[case]
    with pytest.raises(ConfigError, match=needle):
        load_config(path)
    assert_cli_error(["train", tmp_path / "nodata", "--out", tmp_path / "run", "--config", path], capsys,
                     str(path), needle)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("arg", ["train.epochs", "=3", " =3"])
def test_malformed_set(tmp_path, arg, capsys):
    assert_cli_error(["train", tmp_path / "nodata", "--out", tmp_path / "run", "--set", arg], capsys, "KEY=VALUE")


def test_good_overrides_still_work(tmp_path):
    """The checks refuse only what is wrong: file + overrides, ints for floats, the documented extremes."""
    f = tmp_path / "ok.toml"
    f.write_text("seed = 4294967295\n[train]\nepochs = 2\nlr = 1\nhidden = [8, 4]\n[data]\ndev = 0.5\ntest = 0.01\n")
    cfg = load_config(f, {"train.batch_size": 2, "text.lstm.unfreeze_epochs": [0, 0, 1], "image.num_workers": 0})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float) and cfg.train.hidden == [8, 4]
    assert cfg.seed == 2**32 - 1 and cfg.train.batch_size == 2 and cfg.data.test == 0.01
    assert Config.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()
