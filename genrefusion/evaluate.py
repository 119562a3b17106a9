"""Evaluation of trained models: on the run's own test split or on any other canonical dataset.

Genres are matched by name. A genre the model knows but the evaluated dataset does not label is
masked (neither positive nor negative) and listed; a genre the dataset labels but the model does
not know cannot be predicted and is listed too. Thresholds are the ones tuned on the training run's
dev split (never re-tuned on the data being evaluated).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from .errors import ConfigError, DatasetError, GenreFusionError
from .io import read_json, write_json
from .metrics import multilabel_metrics

log = logging.getLogger("genrefusion.evaluate")


def score_model(Y, S, M, thresholds, genres) -> dict:
    """All metrics of one model from its scores and per-genre thresholds."""
    S = np.asarray(S, dtype=np.float64)
    P = (S >= np.asarray(thresholds, dtype=np.float64)[None, :]).astype(np.int64)
    return multilabel_metrics(Y, P, M, S, genres)


def both_rows(inputs, rows) -> np.ndarray:
    """The subset of ``rows`` with a usable poster and a usable plot."""
    img = inputs.image_ok.numpy() if inputs.image_ok is not None else np.zeros(0, bool)
    txt = inputs.text_ok.numpy() if inputs.text_ok is not None else np.zeros(0, bool)
    rows = np.asarray(rows)
    if not len(img) or not len(txt):
        return rows[:0]
    return rows[img[rows] & txt[rows]]


def evaluate_run(run_dir, data=None, split: str = "test", cache_dir=None, progress: bool = True,
                 models: list[str] | None = None) -> dict:
    """Metrics of every model of ``run_dir``'s bundle.

    ``data=None``: the run's own datasets and its ``split.json`` part ``split``. With ``data`` (dataset
    folders): all their titles, except that titles of the run's training/dev parts are left out when a
    dataset was one of the run's own (grouped by imdb_id, so no memorised title is scored).
    """
    import torch

    from .bundle import load_bundle
    from .data.dataset import open_datasets
    from .data.split import Split
    from .train import Batcher, load_corpus, make_inputs, predict_rows

    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    bundle = load_bundle(run_dir, models)
    run_cfg = read_json(run_dir / "config.json", "run config") if (run_dir / "config.json").is_file() else {}
    split_path = run_dir / "split.json"
    if data is None:
        if split not in ("train", "dev", "test", "all"):
            raise ConfigError(f"--split must be train, dev, test or all, got {split!r}")
        paths = run_cfg.get("data") or []
        if not paths:
            raise GenreFusionError(f"{run_dir}: the run records no datasets; pass --data DIR")
        if not split_path.is_file():
            raise GenreFusionError(f"{split_path}: the run's split is missing; pass --data DIR")
        datasets = open_datasets(paths)
        sp = Split.load(split_path)
        corpus = load_corpus(datasets, sp, genres=bundle.genres)
        if split == "all":  # includes training titles: a fit measure, not a generalisation one
            rows = np.flatnonzero(corpus.part != "")
            where = "all titles of the run's datasets (train, dev and test)"
        else:
            rows = corpus.rows(split)
            where = f"{split} split of the run"
    else:
        datasets = open_datasets(data)
        sp = Split.load(split_path) if split_path.is_file() else None
        corpus = load_corpus(datasets, sp, genres=bundle.genres)
        # titles the model saw in training or model selection (by imdb_id group, in any dataset) are left out
        seen = _seen_groups(run_cfg, sp) if sp is not None and split != "all" else set()
        keep = [i for i, t in enumerate(corpus.titles) if t.group_key not in seen]
        excluded = len(corpus.titles) - len(keep)
        rows = np.asarray(keep, dtype=np.int64)
        where = ", ".join(ds.name for ds in datasets)
        if excluded:
            where += f" (minus {excluded} titles seen in the run's train/dev parts)"
    if len(rows) == 0:
        raise DatasetError(f"nothing to evaluate: no usable title in the {where}")

    inputs = make_inputs([corpus.posters[i] for i in rows], [corpus.plots[i] for i in rows], bundle,
                         cache_dir=cache_dir, ids=[corpus.keys[i] for i in rows], progress=progress)
    Y, M = corpus.Y[rows], corpus.M[rows]
    local = np.arange(len(rows))
    batcher = Batcher(inputs, Y, M, bundle.spec.get("text_route"), bundle.spec.get("lstm", {}).get("max_len", 200))
    both = both_rows(inputs, local)
    result = {"evaluated_on": where, "n_titles": int(len(rows)), "n_with_both": int(len(both)),
              "genres": bundle.genres, "left_out": corpus.left_out, "models": {}, "models_both": {},
              "input_errors": {corpus.keys[rows[i]]: e for i, e in list(inputs.errors.items())[:50]}}
    torch.set_grad_enabled(False)
    try:
        for name, model in bundle.models.items():
            S = predict_rows(model, local, batcher)
            result["models"][name] = score_model(Y, S, M, bundle.thresholds[name], bundle.genres)
            if len(both):
                result["models_both"][name] = score_model(Y[both], S[both], M[both], bundle.thresholds[name],
                                                          bundle.genres)
    finally:
        torch.set_grad_enabled(True)
    from .baselines import always_negative

    Z = always_negative(len(rows), len(bundle.genres))
    result["models"]["always_negative"] = score_model(Y, Z, M, np.full(len(bundle.genres), 0.5), bundle.genres)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    return result


def _seen_groups(run_cfg: dict, sp) -> set[str]:
    """imdb-id groups of the run's train and dev parts (entries are "<dataset>/<id>" or ids)."""
    from .data.dataset import Dataset

    groups = set()
    for p in run_cfg.get("data", []):
        try:
            ds = Dataset(p)
        except GenreFusionError:
            continue
        for t in ds.titles():
            if sp.part_of(ds.name, t.id) in ("train", "dev"):
                groups.add(t.group_key)
    return groups


def write_evaluation(result: dict, out) -> Path:
    from .paths import check_writable_target

    out = check_writable_target(Path(out), "the evaluation")
    write_json(out, result)
    return out
