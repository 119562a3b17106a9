"""Evaluation of trained models: on the run's own test split or on any other canonical dataset.

Genres are matched by name. A genre the model knows but the evaluated dataset does not label is
masked (neither positive nor negative) and listed; a genre the dataset labels but the model does
not know cannot be predicted and is listed too. Thresholds are the ones tuned on the training run's
dev split (never re-tuned on the data being evaluated). ``score_models`` is the scoring both this
module and training use.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from .baselines import always_negative
from .encoders.inputs import both_rows  # noqa: F401 - re-exported: the old home of both_rows
from .errors import ConfigError, DatasetError, GenreFusionError
from .io import read_json, write_json
from .metrics import multilabel_metrics

log = logging.getLogger("genrefusion.evaluate")


def score_model(Y, S, M, thresholds, genres) -> dict:
    """All metrics of one model from its scores and per-genre thresholds."""
    S = np.asarray(S, dtype=np.float64)
    P = (S >= np.asarray(thresholds, dtype=np.float64)[None, :]).astype(np.int64)
    return multilabel_metrics(Y, P, M, S, genres)


def score_models(scores: dict, Y, M, thresholds: dict, genres, both=None) -> tuple[dict, dict]:
    """``(metrics, metrics_both)``: every model's metrics from its scores ``[N, G]`` and its thresholds, in
    ``scores`` order, and the same on the rows ``both`` (titles with a poster and a plot; empty if none)."""
    metrics, metrics_both = {}, {}
    for name, S in scores.items():
        metrics[name] = score_model(Y, S, M, thresholds[name], genres)
        if both is not None and len(both):
            metrics_both[name] = score_model(Y[both], S[both], M[both], thresholds[name], genres)
    return metrics, metrics_both


def always_negative_scores(n: int, genres) -> tuple[np.ndarray, np.ndarray]:
    """The always-negative baseline's scores and thresholds (every metric is reported beside it)."""
    return always_negative(n, len(genres)), np.full(len(genres), 0.5)


def evaluate_run(run_dir, data=None, split: str = "test", cache_dir=None, progress: bool = True,
                 models: list[str] | None = None, image_weights=None) -> dict:
    """Metrics of every model of ``run_dir``'s bundle.

    ``data=None``: the run's own datasets and its ``split.json`` part ``split``. With ``data`` (dataset
    folders): all their titles, except that titles of the run's training/dev parts are left out when a
    dataset was one of the run's own (grouped by imdb_id, so no memorised title is scored).
    """
    import torch

    from .bundle import load_bundle
    from .encoders.inputs import build_inputs
    from .inference import Batcher, bundle_encoders, predict_rows

    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    bundle = load_bundle(run_dir, models, image_weights=image_weights)
    corpus, rows, where = _evaluation_rows(run_dir, bundle.genres, data, split)
    inputs = build_inputs([corpus.posters[i] for i in rows], [corpus.plots[i] for i in rows],
                          bundle_encoders(bundle, {}), cache_root=cache_dir, ids=[corpus.keys[i] for i in rows],
                          progress=progress)
    Y, M = corpus.Y[rows], corpus.M[rows]
    local = np.arange(len(rows))
    batcher = Batcher.for_spec(bundle.spec, inputs, Y, M)
    both = both_rows(inputs, local)
    with torch.no_grad():
        scores = {name: predict_rows(model, local, batcher) for name, model in bundle.models.items()}
    metrics, metrics_both = score_models(scores, Y, M, bundle.thresholds, bundle.genres, both)
    # the baseline is listed on every title (not on the poster-and-plot subset) here
    Z, half = always_negative_scores(len(rows), bundle.genres)
    metrics.update(score_models({"always_negative": Z}, Y, M, {"always_negative": half}, bundle.genres)[0])
    return {"evaluated_on": where, "n_titles": int(len(rows)), "n_with_both": int(len(both)),
            "genres": bundle.genres, "left_out": corpus.left_out, "models": metrics, "models_both": metrics_both,
            "input_errors": {corpus.keys[rows[i]]: e for i, e in list(inputs.errors.items())[:50]},
            "seconds": round(time.perf_counter() - t0, 2)}


def _evaluation_rows(run_dir: Path, genres, data, split: str):
    """``(corpus, rows, where)``: the titles to score over the model's ``genres``, and how to name them."""
    from .data.corpus import load_corpus
    from .data.dataset import open_datasets
    from .data.split import Split

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
        corpus = load_corpus(open_datasets(paths), Split.load(split_path), genres=genres)
        if split == "all":  # includes training titles: a fit measure, not a generalisation one
            rows, where = np.flatnonzero(corpus.part != ""), "all titles of the run's datasets (train, dev and test)"
        else:
            rows, where = corpus.rows(split), f"{split} split of the run"
    else:
        datasets = open_datasets(data)
        sp = Split.load(split_path) if split_path.is_file() else None
        corpus = load_corpus(datasets, sp, genres=genres)
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
    return corpus, rows, where


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
