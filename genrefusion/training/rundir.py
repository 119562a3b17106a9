"""The run folder: stage results and checkpoints, resume checks, leftovers of a killed run, the log file.

Layout of ``RUN_DIR``: ``config.json`` (what the run was started with; ``--resume`` must match it),
``split.json``, ``checkpoints/<stage>.pt`` (after each epoch; tensors and plain values only, loaded with
``weights_only=True``), ``stages/<stage>.safetensors`` + ``.json`` (a finished stage's best weights),
``model/`` (the bundle), ``metrics.json``, ``test_scores.npz`` and ``dev_scores.npz`` (per-title scores of every
model; the dev ones are what the thresholds were tuned on), ``report.html`` and ``train.log``.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import distributed as dist
from ..config import Config
from ..errors import BundleError, ConfigError, GenreFusionError
from ..io import atomic_open, read_json, write_json

log = logging.getLogger("genrefusion.train")

RUN_FORMAT = 1
LOGGERS = ("genrefusion.train", "genrefusion.evaluate", "genrefusion.data")  # what train.log records


class RunDir:
    """Stage results and checkpoints. Under torchrun rank 0 alone touches the folder: writes happen there
    only, reads are made there and broadcast (every rank calls them in step), so every rank resumes from
    the same checkpoint and the folder need not be shared between nodes."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.stages = self.root / "stages"
        self.ckpts = self.root / "checkpoints"

    @dist.main_reads
    def stage_info(self, stage: str) -> dict | None:
        p = self.stages / f"{stage}.json"
        if not p.exists():
            return None
        info = read_json(p, "stage record")
        return info if isinstance(info, dict) and info.get("done") else None

    @dist.main_only
    def save_stage(self, stage: str, state: dict, info: dict) -> None:
        from safetensors.torch import save

        blob = save({k: v.detach().contiguous().clone() for k, v in state.items()})
        with atomic_open(self.stages / f"{stage}.safetensors", "wb") as fh:
            fh.write(blob)
        write_json(self.stages / f"{stage}.json", {**info, "done": True})  # written last: marks completion

    @dist.main_reads
    def load_stage(self, stage: str) -> dict:
        from safetensors.torch import load

        p = self.stages / f"{stage}.safetensors"
        try:
            return load(p.read_bytes())
        except Exception as err:  # safetensors raises its own error types for truncated/garbled files
            raise BundleError(f"{p}: cannot read stage weights ({str(err).splitlines()[0][:120]}); "
                              f"delete {self.stages / (stage + '.json')} to retrain that stage") from None

    @dist.main_only
    def save_checkpoint(self, stage: str, ckpt: dict) -> None:
        with atomic_open(self.ckpts / f"{stage}.pt", "wb") as fh:
            torch.save(ckpt, fh)

    @dist.main_reads
    def load_checkpoint(self, stage: str) -> dict | None:
        p = self.ckpts / f"{stage}.pt"
        if not p.exists():
            return None
        try:
            return torch.load(p, map_location="cpu", weights_only=True)
        except Exception as err:
            # a checkpoint is written atomically, so this is tampering or disk damage: start the stage over
            log.warning("%s: unreadable checkpoint (%s); restarting stage %s", p, str(err).splitlines()[0][:100], stage)
            return None

    @dist.main_only
    def drop_checkpoint(self, stage: str) -> None:
        (self.ckpts / f"{stage}.pt").unlink(missing_ok=True)


def clone_state(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# -- starting, resuming, finishing ------------------------------------------------------------------------
# Config keys added with a default that trains differently from before they existed: a run folder from before
# the key holds a run trained with this value (train.crossfit: one train/dev run).
LEGACY_VALUES = {"train": {"crossfit": 0}}


def check_resume(out: Path, stored: dict, resume: bool) -> None:
    """Refuse to train into a folder holding another run, or to resume with other arguments."""
    cfg_path = out / "config.json"
    if not cfg_path.exists():
        return
    if not resume:
        raise GenreFusionError(f"{out}: already holds a run; pass --resume to continue it, or choose another --out")
    prev = read_json(cfg_path, "run config")
    if isinstance(prev.get("config"), dict):
        # a run started before a config key existed resumes as if it had that key's default, or, for a key whose
        # default changed what training does, the value that reproduces how the run was trained
        legacy = {f"{sec}.{k}": v for sec, keys in LEGACY_VALUES.items() for k, v in keys.items()
                  if k not in (prev["config"].get(sec) or {})}
        try:
            prev["config"] = Config.from_dict(prev["config"], str(cfg_path)).replace(legacy).to_dict()
        except ConfigError:
            pass  # keys this version does not know: the comparison below names the difference
    for key in ("config", "data", "models"):
        if prev.get(key) != stored[key]:
            a, b, diff = prev.get(key), stored[key], key
            while isinstance(a, dict) and isinstance(b, dict):  # down to the first differing leaf key
                k = next((k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)), None)
                if k is None:
                    break
                a, b, diff = a.get(k), b.get(k), f"{diff}.{k}"
            raise ConfigError(f"{out}: --resume with a different {diff} than the interrupted run; "
                              "resume with the same arguments, or train into a new --out")


def remove_stale_temps(out: Path) -> None:
    """Remove what a killed run left half-done: atomic writes' temp files (``.NAME.*.tmp``) and bundle temp
    folders (``.model.*``). They were never renamed into place, so nothing reads them; resuming rewrites them."""
    for p in sorted(out.rglob(".*"), reverse=True):
        if p.name.startswith(".model.") and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.endswith(".tmp") and p.is_file():
            p.unlink(missing_ok=True)


def prepare(out: Path, stored: dict, resume: bool) -> None:
    """Create (or check and tidy, on resume) the run folder; rank 0 only."""
    check_resume(out, stored, resume)
    if (out / "config.json").is_file():
        remove_stale_temps(out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "config.json").exists():
        write_json(out / "config.json", stored)


def finished_run(out: Path, write_report: bool = True, progress: bool = False) -> dict | None:
    """The metrics of a run that already finished (its config was checked against this call's), else None.

    ``metrics.json`` is written after the model bundle, so its presence means training and evaluation
    are complete; only the report may be missing (killed while drawing it): it is redrawn."""
    mpath = out / "metrics.json"
    if not mpath.is_file() or not (out / "model" / "config.json").is_file():
        return None
    result = read_json(mpath, "run metrics")
    log.info("%s: run already finished; nothing to train", out)
    if write_report and not (out / "report.html").is_file():
        from ..report import write_report as _write_report

        _write_report(out, progress=progress)
    return result


# -- outputs ----------------------------------------------------------------------------------------------
def setup_log(path: Path, tag: str = "") -> logging.Handler:
    """``train.log``: what the training and evaluation loggers say, with timestamps (each line after ``tag``:
    a fold worker appends to its run's log too)."""
    h = logging.FileHandler(path, encoding="utf-8")
    h.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s %(name)s: {tag}%(message)s"))
    for name in LOGGERS:
        lg = logging.getLogger(name)
        lg.addHandler(h)
        lg.setLevel(logging.INFO)
    return h


def close_log(handler: logging.Handler) -> None:
    for name in LOGGERS:
        logging.getLogger(name).removeHandler(handler)
    handler.close()


def save_scores(path: Path, corpus, rows, scores: dict[str, np.ndarray], combination=None) -> None:
    """Per-title scores of every model on ``rows`` (the test or the dev split) as plain arrays
    (``np.load(..., allow_pickle=False)`` reads them): ``keys``, ``genres``, ``Y``, ``M``, ``combination`` (both /
    poster / plot: the inputs each title has) and one ``S_<model>`` array per model and baseline."""
    arrays = {"keys": np.asarray([corpus.keys[i] for i in rows], dtype=str),
              "genres": np.asarray(corpus.genres, dtype=str),
              "Y": corpus.Y[rows].astype(np.uint8), "M": corpus.M[rows].astype(np.uint8)}
    if combination is not None:
        arrays["combination"] = np.asarray(combination, dtype=str)
    for name, S in scores.items():
        arrays[f"S_{name}"] = np.asarray(S, dtype=np.float32)
    with atomic_open(path, "wb", encoding=None) as fh:
        np.savez(fh, **arrays)
