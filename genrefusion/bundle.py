"""Model bundle: everything needed to predict, in safetensors + JSON only (never pickle).

Layout of ``RUN_DIR/model/``::

    config.json         format marker, genres, per-model thresholds (``thresholds``: the pooled set;
                        ``threshold_sets``: one set per input combination, absent in older bundles),
                        the architecture spec, encoder names + weight fingerprints, training config
    weights.safetensors tensors of every model, prefixed ``poster.`` / ``plot.`` / ``fused.``
    vocab.json          the LSTM word vocabulary (LSTM text route only)
    lexical.safetensors, lexical.json
                        the lexical blend's tf-idf logistic regression (arrays; vocabulary and C), when a model
                        blends it in (config ``lexical.weights``: model -> weight; models/lexical.py)
    image_backbone.safetensors
                        the poster backbone's weights when they came from a file the user supplied
                        (ResNet-50's ImageNet weights), so the bundle predicts on another machine

The folder is written beside the target and renamed into place, so a bundle is either complete or
absent. ``load_bundle`` checks every part and raises a one-line ``BundleError`` for a missing,
truncated or tampered bundle (bad safetensors header, genres that do not match the weight shapes,
a pickle file under the bundle's name, ...).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BundleError, GenreFusionError
from .io import atomic_dir, write_bytes, write_json

FORMAT = "genrefusion-bundle"
VERSION = 1
CONFIG, WEIGHTS, VOCAB, BACKBONE = "config.json", "weights.safetensors", "vocab.json", "image_backbone.safetensors"
LEXICAL, LEXICAL_INFO = "lexical.safetensors", "lexical.json"
MODEL_NAMES = ("poster", "plot", "fused")


@dataclass
class Bundle:
    path: Path
    config: dict
    models: dict = field(default_factory=dict)       # name -> nn.Module (eval mode)
    thresholds: dict = field(default_factory=dict)   # name -> np.ndarray [G] (the pooled set)
    vocab: object = None                             # encoders.tokenize.Vocab (LSTM route)
    threshold_sets: dict = field(default_factory=dict)  # name -> thresholds.ThresholdSets
    image_weights: Path | None = None                # load-time backbone weights file (overrides the bundle's)
    lexical: object = None                           # baselines.TfidfLogReg of the lexical blend, if any

    @property
    def genres(self) -> list[str]:
        return list(self.config["genres"])

    @property
    def spec(self) -> dict:
        return self.config["spec"]

    @property
    def default_model(self) -> str:
        return self.config["default_model"]

    def backbone_weights(self) -> Path | str | None:
        """The weights file the poster backbone loads: the one given at load time, else the bundle's own copy,
        else the path it was trained with (None: the encoder's packaged weights)."""
        if self.image_weights is not None:
            return self.image_weights
        if self.config.get("image_backbone"):
            return self.path / BACKBONE
        return self.config.get("image_weights")


def save_bundle(path, spec: dict, models: dict, thresholds: dict, meta: dict | None = None, vocab=None,
                backbone_file=None, lexical=None) -> Path:
    """Write the bundle folder atomically (temp folder + rename). ``thresholds``: per model a
    ``ThresholdSets`` or one per-genre array. ``backbone_file``: a user-supplied image backbone state dict to
    carry (as safetensors). ``lexical``: ``(TfidfLogReg, {model: weight})``, the lexical blend (a model
    without a positive weight does not blend)."""
    import hashlib

    import numpy as np
    from safetensors.torch import save

    from .thresholds import ThresholdSets

    path = Path(path)
    backbone = None
    if backbone_file is not None:
        from .encoders.resnet import read_state_dict

        backbone = save({k: v.contiguous() for k, v in read_state_dict(backbone_file, "image backbone").items()})
    names = [n for n in MODEL_NAMES if n in models]
    if not names:
        raise GenreFusionError("bundle: no model to save")
    sets = {n: t if isinstance(t, ThresholdSets) else ThresholdSets.from_json(list(t)) for n, t in thresholds.items()}
    tensors = {}
    for name in names:
        for k, v in models[name].state_dict().items():
            tensors[f"{name}.{k}"] = v.detach().contiguous().clone()
    config = {
        "format": FORMAT, "version": VERSION, "genres": list(spec["genres"]), "models": names,
        "default_model": "fused" if "fused" in names else names[0],
        # the pooled set under the old key: genrefusion versions without per-combination sets still read it
        "thresholds": {n: [float(t) for t in sets[n].pooled] for n in names},
        "spec": spec, "vocab": VOCAB if vocab is not None else None, **(meta or {}),
        # the encoders' fingerprint of that file (sha1 of its bytes): its integrity check at load
        "image_backbone": BACKBONE if backbone is not None else None,
        "image_backbone_sha": hashlib.sha1(backbone).hexdigest()[:16] if backbone is not None else None,
    }
    config["threshold_sets"] = {n: sets[n].to_json(9) for n in names}
    lex_weights = {n: float(w) for n, w in (lexical[1] if lexical else {}).items() if n in names and w > 0}
    # from the argument only: a ``meta`` copied from another bundle's config must not name files not written
    config["lexical"] = {"file": LEXICAL, "weights": lex_weights} if lex_weights else None
    with atomic_dir(path) as tmp:
        # the genres travel inside the weights file too: a config.json whose genre list was reordered or
        # renamed (same shapes) would otherwise load and silently mislabel every prediction
        write_bytes(tmp / WEIGHTS, save(tensors, metadata={"genres": json.dumps(list(spec["genres"]))}))
        if vocab is not None:
            write_json(tmp / VOCAB, vocab.to_json(), indent=None)
        if backbone is not None:
            write_bytes(tmp / BACKBONE, backbone)
        if lex_weights:
            from safetensors.numpy import save as save_np

            arrays, info = lexical[0].state()
            write_bytes(tmp / LEXICAL, save_np({k: np.ascontiguousarray(v) for k, v in arrays.items()}))
            write_json(tmp / LEXICAL_INFO, info, indent=None)
        write_json(tmp / CONFIG, config)
    return path


def _fail(path, msg) -> BundleError:
    return BundleError(f"{path}: {msg}")


def bundle_dir(path) -> Path:
    """The bundle folder of ``path``: the path itself, or the ``model/`` folder of a run dir."""
    path = Path(path)
    if (path / "model" / CONFIG).is_file() and not (path / WEIGHTS).is_file():  # a run dir: its config.json is the run's
        return path / "model"
    return path


def _read(folder: Path, name: str, missing: str) -> bytes:
    """The bytes of the bundle part ``name``; a missing or unreadable part is a one-line BundleError."""
    try:
        return (folder / name).read_bytes()
    except FileNotFoundError:
        raise _fail(folder, missing) from None
    except OSError as err:
        raise _fail(folder / name, f"cannot read ({err.strerror})") from None


def read_bundle_config(path) -> dict:
    """``config.json`` of a bundle, checked for structure (no weights read)."""
    path = bundle_dir(path)
    if not path.exists():
        raise _fail(path, "model bundle not found")
    if not path.is_dir():
        raise _fail(path, "not a model bundle folder (expected a folder with config.json and weights.safetensors)")
    cfg_path = path / CONFIG
    if (path / "titles.jsonl").is_file():  # the commonest slip: `evaluate DATASET` for `evaluate RUN --data DATASET`
        raise _fail(path, "a dataset folder, not a trained run; name the run first (e.g. genrefusion evaluate RUN "
                          "--data DATASET, genrefusion predict RUN --batch DATASET)")
    if (path / "train.log").is_file() and not (path / "model").exists():
        raise _fail(path, "a training run without a model yet (stopped before it finished?); finish it with "
                          "genrefusion train ... --out RUN --resume")
    raw = _read(path, CONFIG, f"not a model bundle ({CONFIG} missing)")
    try:
        cfg = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _fail(cfg_path, f"not valid JSON ({err}); the bundle is damaged") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise _fail(cfg_path, "not a genrefusion model bundle (format marker missing)")
    if cfg.get("version") != VERSION:
        raise _fail(cfg_path, f"unsupported bundle version {cfg.get('version')!r} (this genrefusion reads {VERSION})")
    genres = cfg.get("genres")
    if (not isinstance(genres, list) or not genres or not all(isinstance(g, str) and g for g in genres)
            or len(set(genres)) != len(genres)):
        raise _fail(cfg_path, "'genres' must be a non-empty list of distinct names")
    names = cfg.get("models")
    if not isinstance(names, list) or not names or any(n not in MODEL_NAMES for n in names):
        raise _fail(cfg_path, f"'models' must list some of {', '.join(MODEL_NAMES)}")
    if cfg.get("default_model") not in names:
        raise _fail(cfg_path, "'default_model' is not one of the bundle's models")
    spec = cfg.get("spec")
    if not isinstance(spec, dict) or spec.get("genres") != genres:
        raise _fail(cfg_path, "'spec' is missing or its genres differ from 'genres'")
    thr = cfg.get("thresholds")
    if not isinstance(thr, dict):
        raise _fail(cfg_path, "'thresholds' missing")
    for n in names:
        t = thr.get(n)
        if not _numbers(t, len(genres)):
            raise _fail(cfg_path, f"thresholds of model {n!r} must be {len(genres)} numbers (one per genre)")
    return cfg


def _numbers(t, n: int) -> bool:
    return (isinstance(t, list) and len(t) == n
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in t))


def _check_threshold_sets(cfg: dict, cfg_path) -> None:
    """``threshold_sets`` is optional (bundles before per-combination thresholds have none)."""
    from .thresholds import COMBINATIONS

    sets = cfg.get("threshold_sets")
    if sets is None:
        return
    n = len(cfg["genres"])
    for name in cfg["models"]:
        entry = sets.get(name) if isinstance(sets, dict) else None
        if entry is None:
            continue
        if (not isinstance(entry, dict) or not _numbers(entry.get("pooled"), n)
                or not isinstance(entry.get("sets", {}), dict)
                or any(k not in COMBINATIONS or not _numbers(v, n) for k, v in entry.get("sets", {}).items())):
            raise _fail(cfg_path, f"threshold_sets of model {name!r} must be a pooled set and sets named "
                                  f"{'/'.join(COMBINATIONS)}, each {n} numbers")


def _weights_genres(blob: bytes) -> list | None:
    """The genre list recorded in a (valid) safetensors header's metadata; None for older bundles."""
    try:
        n = int.from_bytes(blob[:8], "little")
        meta = json.loads(blob[8:8 + n]).get("__metadata__") or {}
        return json.loads(meta["genres"]) if "genres" in meta else None
    except (ValueError, TypeError, AttributeError):
        return None


def load_bundle(path, models: list[str] | None = None, image_weights=None) -> Bundle:
    """Load and check a bundle (a ``model/`` folder or a run dir holding one). ``image_weights``: a backbone
    weights file to use instead of the bundle's own copy or its training-time path."""
    import numpy as np
    from safetensors import SafetensorError
    from safetensors.torch import load

    from .models.build import build_models

    path = bundle_dir(path)
    cfg = read_bundle_config(path)
    names = list(cfg["models"]) if models is None else [n for n in models if n in cfg["models"]]
    wpath = path / WEIGHTS
    blob = _read(path, WEIGHTS, f"{WEIGHTS} missing; the bundle is incomplete")
    try:
        # parsing safetensors never runs code, so it goes first: a valid file whose 8-byte header length
        # happens to start with 0x80 must not be taken for a pickle
        tensors = load(blob)
    except (SafetensorError, ValueError, OSError, RuntimeError) as err:
        if blob[:1] == b"\x80" or blob[:2] == b"PK":  # pickle protocol 2+ / torch.save zip
            raise _fail(wpath, "is a pickle/zip file, not safetensors; refusing to load it (pickles can run code)") from None
        raise _fail(wpath, f"not a valid safetensors file ({str(err).splitlines()[0][:120]}); "
                           "the bundle is truncated or damaged") from None

    spec = cfg["spec"]
    vocab = _load_vocab(path, spec) if spec.get("text_route") == "lstm" else None
    try:
        built = build_models(spec, names)
    except (KeyError, TypeError, ValueError, GenreFusionError) as err:
        raise _fail(path / CONFIG, f"'spec' cannot build the models ({type(err).__name__}: {err})") from None
    for name in names:
        prefix = name + "."
        sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not sd:
            raise _fail(wpath, f"holds no weights for model {name!r}")
        try:
            built[name].load_state_dict(sd, strict=True)
        except RuntimeError as err:
            first = " ".join(str(err).split())[:200]
            raise _fail(path, f"weights of model {name!r} do not match config.json "
                              f"({len(cfg['genres'])} genres): {first}") from None
        built[name].eval()
    # same shapes, other genres (reordered/renamed in config.json): only the weights' record tells
    trained_for = _weights_genres(blob)
    if trained_for is not None and trained_for != cfg["genres"]:
        raise _fail(path, f"the genre list in {CONFIG} differs from the one the weights were trained for "
                          f"(order or names edited); refusing to mislabel predictions")
    # after the weights: a genre list edited in config.json is named as such, not as a threshold-set length
    _check_threshold_sets(cfg, path / CONFIG)
    if cfg.get("image_backbone") and image_weights is None and not (path / BACKBONE).is_file():
        raise _fail(path, f"{BACKBONE} missing (the poster backbone's weights); the bundle is incomplete, "
                          "or pass the weights file at load time (--image-weights)")
    from .thresholds import ThresholdSets

    thresholds = {n: np.asarray(cfg["thresholds"][n], dtype=np.float64) for n in names}
    stored = cfg.get("threshold_sets") or {}
    sets = {n: ThresholdSets.from_json(stored[n]) if n in stored else ThresholdSets(thresholds[n]) for n in names}
    lexical = _load_lexical(path, cfg, built)
    return Bundle(path, cfg, built, thresholds, vocab, sets, Path(image_weights) if image_weights is not None else None,
                  lexical)


def _load_lexical(path: Path, cfg: dict, models: dict):
    """The lexical blend's tf-idf model (None when no model blends it), each model's weight set on the model
    (``lexical_weight``, read by ``inference.score_loader``)."""
    from safetensors.numpy import load

    from .baselines import TfidfLogReg

    weights = (cfg.get("lexical") or {}).get("weights") or {}
    if not any(n in models for n in weights):
        return None
    try:
        arrays = load(_read(path, LEXICAL, f"{LEXICAL} missing (the lexical blend's weights); the bundle is incomplete"))
        info = json.loads(_read(path, LEXICAL_INFO, f"{LEXICAL_INFO} missing; the bundle is incomplete"))
        lexical = TfidfLogReg.from_state(arrays, info)
        if lexical.coef_.shape[0] != len(cfg["genres"]):
            raise ValueError(f"{lexical.coef_.shape[0]} genres, the models have {len(cfg['genres'])}")
        ws = {n: float(weights[n]) for n in models if n in weights}
        if any(not 0 < w <= 1 for w in ws.values()):
            raise ValueError(f"blend weights must be in (0, 1], got {ws}")
    except BundleError:
        raise
    except Exception as err:  # noqa: BLE001 - any damage (safetensors, JSON, keys, shapes): one line naming it
        first = (str(err).splitlines() or [""])[0][:120]
        raise _fail(path / LEXICAL, f"cannot read the lexical blend ({type(err).__name__}: {first}); "
                                    "the bundle is damaged") from None
    for n, w in ws.items():
        models[n].lexical_weight = w
    return lexical


def _load_vocab(path: Path, spec: dict):
    """The LSTM route's word vocabulary (``vocab.json``), checked against the model's embedding size."""
    from .encoders.tokenize import Vocab

    vpath = path / VOCAB
    try:
        vobj = json.loads(vpath.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _fail(path, f"{VOCAB} missing (the LSTM text model needs it)") from None
    except (UnicodeDecodeError, json.JSONDecodeError, OSError) as err:
        raise _fail(vpath, f"not valid JSON ({err})") from None
    try:
        vocab = Vocab.from_json(vobj)
    except GenreFusionError as err:
        raise _fail(vpath, str(err)) from None
    if len(vocab) != spec.get("lstm", {}).get("vocab_size"):
        raise _fail(vpath, f"has {len(vocab)} tokens but the model was built for "
                           f"{spec.get('lstm', {}).get('vocab_size')}")
    return vocab


# -- the run's fitted baselines (``RUN_DIR/baselines/``): ``evaluate --data`` scores them beside the models ------
BASELINES_DIR = "baselines"


def save_baselines(run_dir, baselines: dict, thresholds: dict, infos: dict) -> Path:
    """Fitted baselines (``baselines.TfidfLogReg`` / ``LinearProbe``) and their threshold sets, as safetensors
    + JSON (never pickled), written beside the run's bundle."""
    return write_baseline_folder(Path(run_dir) / BASELINES_DIR, baselines, infos, thresholds)


def load_baselines(run_dir) -> tuple[dict, dict]:
    """(baselines, threshold sets) by name, as ``save_baselines`` wrote them; empty for runs made before
    baselines were stored. Damage raises a one-line BundleError naming the folder."""
    root = Path(run_dir) / BASELINES_DIR
    if not (root / CONFIG).is_file():
        return {}, {}
    models, thresholds, _ = read_baseline_folder(root, "retrain, or delete the folder to evaluate without them")
    return models, thresholds


def write_baseline_folder(root: Path, baselines: dict, infos: dict, thresholds: dict | None = None) -> Path:
    """``root/weights.safetensors`` (every baseline's arrays) + ``root/config.json`` (type, state, fit info and,
    when given, threshold sets), the config written last: its presence means the weights are complete."""
    import numpy as np
    from safetensors.numpy import save

    tensors, config = {}, {"format": "genrefusion-baselines", "version": 1, "baselines": {}}
    for name, model in baselines.items():
        arrays, info = model.state()
        tensors.update({f"{name}.{k}": np.ascontiguousarray(v) for k, v in arrays.items()})
        entry = {"type": type(model).__name__, "state": info, "fit": infos.get(name)}
        if thresholds is not None:
            entry["thresholds"] = thresholds[name].to_json(9)
        config["baselines"][name] = entry
    write_bytes(root / WEIGHTS, save(tensors))
    write_json(root / CONFIG, config, indent=None)
    return root


def read_baseline_folder(root: Path, advice: str) -> tuple[dict, dict, dict]:
    """(baselines, threshold sets, fit infos) by name from a folder ``write_baseline_folder`` wrote; damage
    raises a one-line BundleError naming the folder and ending with ``advice``."""
    from safetensors.numpy import load

    from .baselines import LinearProbe, TfidfLogReg
    from .thresholds import ThresholdSets

    try:
        config = json.loads((root / CONFIG).read_text(encoding="utf-8"))
        tensors = load((root / WEIGHTS).read_bytes())
        models, thresholds, infos = {}, {}, {}
        for name, entry in config["baselines"].items():
            cls = {"TfidfLogReg": TfidfLogReg, "LinearProbe": LinearProbe}[entry["type"]]
            arrays = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
            models[name] = cls.from_state(arrays, entry["state"])
            infos[name] = entry.get("fit")
            if "thresholds" in entry:
                thresholds[name] = ThresholdSets.from_json(entry["thresholds"])
    except Exception as err:  # noqa: BLE001 - any damage (JSON, safetensors, missing keys): one line naming it
        first = (str(err).splitlines() or [""])[0][:120]
        raise _fail(root, f"cannot read the baselines ({type(err).__name__}: {first}); {advice}") from None
    return models, thresholds, infos
