"""Evaluation of trained models: on the run's own test split or on any other canonical dataset.

Genres are matched by name. A genre the model knows but the evaluated dataset does not label is
masked (neither positive nor negative) and listed; a genre the dataset labels but the model does
not know cannot be predicted and is listed too. Thresholds are the ones the training run tuned (on
its dev split, or its out-of-fold scores with cross-fitting; never re-tuned on the data being
evaluated), each title decided with the set of the inputs it has. Every baseline the run stored
(tf-idf, linear probes) is scored beside the models, and every figure is broken down by input
combination and by kind (movie / tv). ``score_models`` is the scoring both this module and training
use.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from .baselines import always_negative, baseline_scores, probe_for
from .encoders.inputs import both_rows  # noqa: F401 - re-exported: the old home of both_rows
from .errors import ConfigError, DatasetError, GenreFusionError
from .io import read_json, write_json
from .metrics import BOOTSTRAP_DRAWS, CI_LEVEL, bootstrap_draws, interval, multilabel_metrics, resampled_f1
from .thresholds import (COMBINATIONS, ThresholdSets, combination_keys, model_reads, served_combinations,
                         tune_threshold_sets)

log = logging.getLogger("genrefusion.evaluate")


def predictions(S, thresholds) -> np.ndarray:
    """0/1 decisions ``S >= thresholds``, thresholds per genre ``[G]`` or per title ``[N, G]``."""
    T = np.asarray(thresholds, dtype=np.float64)
    return (np.asarray(S, dtype=np.float64) >= (T if T.ndim == 2 else T[None, :])).astype(np.int64)


def score_model(Y, S, M, thresholds, genres) -> dict:
    """All metrics of one model from its scores and thresholds: per genre ``[G]`` or per title ``[N, G]``."""
    return multilabel_metrics(Y, predictions(S, thresholds), M, np.asarray(S, dtype=np.float64), genres)


def tune_model_thresholds(name: str, Yd, Sd, Md, image_ok, text_ok, genres, rule: str = "auto"):
    """(ThresholdSets, info) of model/baseline ``name`` from its dev scores: one set per input combination it
    serves, tuned on the dev titles that have exactly those of its inputs (see ``thresholds``)."""
    reads = model_reads(name)
    if not reads:  # always-negative: nothing to tune
        return ThresholdSets(np.full(len(genres), 0.5)), {"rule": "fixed 0.5"}
    keys = combination_keys(image_ok, text_ok, reads)
    return tune_threshold_sets(Yd, Sd, Md, keys, served_combinations(reads), rule, genres)


def cross_validated_f1(name: str, Y, S, M, image_ok, text_ok, genres, rule: str = "auto", folds: int = 5,
                       repeats: int = 3, seed: int = 0, rescore=None, decide=None) -> dict:
    """Micro-/macro-F1 of model ``name`` on its dev titles, each title decided with thresholds tuned, as a run
    tunes them, on the other ``folds - 1`` folds of dev; the mean over ``repeats`` random fold assignments, over
    all titles (``"all"``) and per input combination. What a model choice can rest on without the test split:
    F1 with thresholds tuned on the very titles it is read on flatters the model (most on ~120-140 titles with both
    inputs), and mAP does not see the cut points, which move the most between models.

    For a second stage read the same way (``benchmarks/posthoc.py``): ``rescore(fit)`` gives every title's scores
    from what was fitted on the ``fit`` titles only (default: ``S``); ``decide(S, T, M, P)`` changes the
    decisions ``P`` of the held-out titles after their thresholds ``T``."""
    Y, S, M = np.asarray(Y), np.asarray(S, dtype=np.float64), np.asarray(M)
    if len(Y) < folds:
        raise DatasetError(f"cross-validated F1 needs at least {folds} dev titles, got {len(Y)}")
    image_ok, text_ok = np.asarray(image_ok, bool), np.asarray(text_ok, bool)
    combo = combination_keys(image_ok, text_ok)
    parts = {"all": np.ones(len(Y), bool), **{c: combo == c for c in COMBINATIONS if (combo == c).any()}}
    sums = {p: np.zeros(2) for p in parts}
    for r in range(repeats):
        fold = np.random.default_rng([seed, r]).permutation(len(Y)) % folds  # equal-sized folds
        P = np.zeros(Y.shape, np.int64)
        for f in range(folds):
            fit, held = fold != f, fold == f
            Sf = S if rescore is None else np.asarray(rescore(fit), dtype=np.float64)
            sets, _ = tune_model_thresholds(name, Y[fit], Sf[fit], M[fit], image_ok[fit], text_ok[fit], genres, rule)
            T = sets.rows(combination_keys(image_ok[held], text_ok[held], model_reads(name)))  # as score_models
            P[held] = predictions(Sf[held], T)
            if decide is not None:
                P[held] = decide(Sf[held], T, M[held].astype(bool), P[held])
        for p, sel in parts.items():
            m = multilabel_metrics(Y[sel], P[sel], M[sel])
            sums[p] += [m["micro_f1"] or 0.0, m["macro_f1"] or 0.0]
    return {p: {"n_titles": int(parts[p].sum()), "micro_f1": round(float(v[0] / repeats), 5),
                "macro_f1": round(float(v[1] / repeats), 5)} for p, v in sums.items()}


def kind_of(title) -> str:
    return title.kind if getattr(title, "kind", None) in ("movie", "tv") else "unknown"


def score_models(Y, M, scores: dict, thresholds: dict, image_ok, text_ok, kinds, genres) -> dict:
    """Every model's metrics on the evaluated titles, each title decided with the threshold set of its inputs,
    broken down by input combination (what the title has: both, poster, plot) and by kind (movie / tv /
    unknown), with the verdict of each model against its linear probe. Every micro-/macro-F1 gets a 95 %
    bootstrap interval (``ci95``; titles resampled, the same draws for every model, so each verdict gets a paired
    interval of the difference). ``scores``: name -> ``[N, G]``; ``thresholds``: name -> ``ThresholdSets``."""
    image_ok, text_ok, kinds = np.asarray(image_ok, bool), np.asarray(text_ok, bool), np.asarray(kinds)
    combo = combination_keys(image_ok, text_ok)
    groups = {"by_combination": {c: combo == c for c in COMBINATIONS if (combo == c).any()},
              "by_kind": {k: kinds == k for k in ("movie", "tv", "unknown") if (kinds == k).any()},
              # for the verdicts only: a single-input model meets its probe on the titles with its input
              "with_input": {p: ok for p, ok in (("with_poster", image_ok), ("with_plot", text_ok)) if ok.any()}}
    parts = [("models", None, np.ones(len(Y), bool))] + [(by, part, sel) for by, ps in groups.items()
                                                         for part, sel in ps.items()]
    out = {"models": {}, **{by: {part: {} for part in ps} for by, ps in groups.items()}}
    draws = {(by, part): bootstrap_draws(int(sel.sum())) for by, part, sel in parts}
    micro_draws = {}  # (part, model) -> resampled micro-F1, for the paired verdict intervals
    for name, S in scores.items():
        S = np.asarray(S, dtype=np.float64)
        P = predictions(S, thresholds[name].rows(combination_keys(image_ok, text_ok, model_reads(name))))
        for by, part, sel in parts:  # the same decisions for the figures and their bootstrap draws
            m = multilabel_metrics(Y[sel], P[sel], M[sel], S[sel], genres)
            micro, macro = resampled_f1(draws[by, part], Y[sel], P[sel], M[sel])
            m["ci95"] = {"micro_f1": interval(micro), "macro_f1": interval(macro)}
            micro_draws[part or "all", name] = micro
            if part is None:
                out["models"][name] = m
            else:
                out[by][part][name] = m
    out["models_both"] = out["by_combination"].get("both", {})
    out["n_by_combination"] = {c: int(sel.sum()) for c, sel in groups["by_combination"].items()}
    out["n_by_kind"] = {k: int(sel.sum()) for k, sel in groups["by_kind"].items()}
    out["bootstrap"] = {"draws": BOOTSTRAP_DRAWS, "level": CI_LEVEL, "method": "percentile; titles resampled"}
    out["probe_verdicts"] = probe_verdicts(out, micro_draws, out.pop("with_input"))
    return out


def probe_verdicts(scored: dict, micro_draws: dict | None = None, with_input: dict | None = None) -> list[dict]:
    """Does each model beat the linear probe on its own inputs (micro-F1), overall and per combination?
    With ``micro_draws`` ((titles, model) -> bootstrap micro-F1 on the same draws), each verdict carries the 95 %
    interval of the difference (model - probe): an interval that holds 0 means the test titles cannot tell them
    apart. ``with_input`` ('with_poster' / 'with_plot' -> model -> metrics): a single-input model's overall verdict
    is read on the titles with its input instead of all titles: on the others neither it nor its probe reads
    anything, so neither predicts anything (``ThresholdSets.pick``), and they would only dilute the comparison."""
    needs = {"both": {"poster", "plot"}, "poster": {"poster"}, "plot": {"plot"}}
    rows = []
    for name in scored["models"]:
        probe = probe_for(name) if not name.startswith(("linear_probe_", "tfidf", "always")) else None
        if probe is None or probe not in scored["models"]:
            continue
        reads = model_reads(name)
        overall = [("all", scored["models"])]
        if len(reads) == 1 and with_input is not None:  # no title with its input: nothing to compare
            key = f"with_{reads[0]}"
            overall = [(key, with_input[key])] if key in with_input else []
        # the titles where the model reads an input (a poster model reads nothing of a plot-only title); a
        # combination holding all of the overall titles would repeat the overall verdict
        n_overall = overall[0][1][name]["n_titles"] if overall else None
        parts = overall + [(c, m) for c, m in scored["by_combination"].items()
                           if set(reads) & needs[c] and m[name]["n_titles"] != n_overall]
        for part, models in parts:
            ours, theirs = models[name].get("micro_f1"), models[probe].get("micro_f1")
            if ours is None or theirs is None:
                continue
            row = {"model": name, "probe": probe, "titles": part, "n": models[name]["n_titles"],
                   "micro_f1": ours, "probe_micro_f1": theirs, "beats": ours > theirs}  # rounded when shown
            if micro_draws and (part, name) in micro_draws and (part, probe) in micro_draws:
                row["difference_ci95"] = interval(micro_draws[part, name] - micro_draws[part, probe])
            rows.append(row)
    return rows


def evaluate_run(run_dir, data=None, split: str = "test", cache_dir=None, progress: bool = True,
                 models: list[str] | None = None, image_weights=None, part: str = "all") -> dict:
    """Metrics of every model of ``run_dir``'s bundle.

    ``data=None``: the run's own datasets and its ``split.json`` part ``split``. With ``data`` (dataset
    folders): all their titles, or with ``part`` (train / dev / test) those of that part of each dataset's own
    ``split.json``, except that titles of the run's training/dev parts are left out when a dataset was one of
    the run's own (grouped by imdb_id, so no memorised title is scored).
    """
    import torch

    from .bundle import load_baselines, load_bundle
    from .data.split import PARTS
    from .encoders.inputs import build_inputs
    from .inference import Batcher, bundle_encoders, predict_rows

    if part not in (*PARTS, "all"):  # checked before the model loads
        raise ConfigError(f"--part must be train, dev, test or all, got {part!r}")
    if data is None and part != "all":
        raise ConfigError("--part goes with --data (a part of those datasets' own split.json); for the run's own "
                          "split use --split")
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    bundle = load_bundle(run_dir, models, image_weights=image_weights)
    corpus, rows, where = _evaluation_rows(run_dir, bundle.genres, data, split, part)
    inputs = build_inputs([corpus.posters[i] for i in rows], [corpus.plots[i] for i in rows],
                          bundle_encoders(bundle, {}), cache_root=cache_dir, ids=[corpus.keys[i] for i in rows],
                          progress=progress)
    Y, M = corpus.Y[rows], corpus.M[rows]
    local = np.arange(len(rows))
    batcher = Batcher.for_spec(bundle.spec, inputs, Y, M)
    with torch.no_grad():
        scores = {name: predict_rows(model, local, batcher) for name, model in bundle.models.items()}
    thresholds = dict(bundle.threshold_sets)
    baselines, base_thr = load_baselines(run_dir)
    if not baselines:
        log.warning("%s: the run stored no baselines (trained by an older version); only always-negative is "
                    "reported beside the models", run_dir)
    plots = [corpus.plots[i] for i in rows]
    scores.update(baseline_scores(baselines, plots, _baseline_features(baselines, inputs, plots, cache_dir, progress)))
    thresholds.update(base_thr)
    scores["always_negative"] = always_negative(len(rows), len(bundle.genres))
    thresholds["always_negative"] = ThresholdSets(np.full(len(bundle.genres), 0.5))
    scored = score_models(Y, M, scores, thresholds, inputs.image_ok.numpy(), inputs.text_ok.numpy(),
                          [kind_of(corpus.titles[i]) for i in rows], bundle.genres)
    return {"evaluated_on": where, "part": part if data is not None else None,  # of the --data datasets' own split
            "n_titles": int(len(rows)), "n_with_both": scored["n_by_combination"].get("both", 0),
            "n_by_combination": scored["n_by_combination"], "n_by_kind": scored["n_by_kind"],
            "genres": bundle.genres, "left_out": corpus.left_out,
            **{k: scored[k] for k in ("models", "models_both", "by_combination", "by_kind", "probe_verdicts",
                                      "bootstrap")},
            "unknown_genre_titles": _unknown_genre_titles(corpus, rows, bundle.genres),
            "input_errors": {corpus.keys[rows[i]]: e for i, e in list(inputs.errors.items())[:50]},
            "seconds": round(time.perf_counter() - t0, 2)}


def _unknown_genre_titles(corpus, rows, genres) -> dict[str, dict[str, int]]:
    """dataset -> {genre: evaluated titles labelled with it} for the genres the model does not know (ignored in
    every figure): whether ``left_out``'s ``unknown_to_model`` cost any label of the titles scored here."""
    known, out = set(genres), {}
    for i in rows:
        counts = out.setdefault(corpus.datasets[corpus.ds_index[i]].name, {})
        for g in corpus.titles[i].genres:
            if g not in known:
                counts[g] = counts.get(g, 0) + 1
    return {ds: dict(sorted(c.items())) for ds, c in out.items() if c}


def _baseline_features(baselines: dict, inputs, plots, cache_dir, progress: bool) -> dict:
    """The frozen features the linear probes read: the bundle's poster features, and MiniLM plot features
    (computed here when the bundle's text route is not MiniLM)."""
    from .encoders.inputs import InputEncoders, build_inputs, feature_rows

    feats = feature_rows(inputs, np.arange(len(plots)))
    if any(n in baselines for n in ("linear_probe_plot", "linear_probe_fused")) and feats["text"] is None:
        from .encoders.text import MiniLMEncoder

        extra = build_inputs([None] * len(plots), plots, InputEncoders(minilm=MiniLMEncoder()), cache_root=cache_dir,
                             progress=progress)
        feats["text"] = extra.minilm.numpy()
    return feats


def _evaluation_rows(run_dir: Path, genres, data, split: str, part: str = "all"):
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
        keep = range(len(corpus.titles))
        if part != "all":  # the datasets' own split, e.g. MM-IMDb's published test part
            own = [_own_split(ds, part) for ds in datasets]
            keep = [i for i in keep if own[corpus.ds_index[i]].part_of(datasets[corpus.ds_index[i]].name,
                                                                        corpus.titles[i].id) == part]
        # titles the model saw in training or model selection (by imdb_id group, in any dataset) are left out
        seen = _seen_groups(run_cfg, sp) if sp is not None and split != "all" else set()
        rows = np.asarray([i for i in keep if corpus.titles[i].group_key not in seen], dtype=np.int64)
        excluded = len(keep) - len(rows)
        where = ", ".join(ds.name for ds in datasets)
        if part != "all":
            where += f" ({part} part of {'its' if len(datasets) == 1 else 'their'} split.json)"
        notes = [f"minus {excluded} titles seen in the run's train/dev parts"] if excluded else []
        unusable = sum(i.get("skipped", 0) for i in corpus.data_info)
        if unusable:  # neither poster nor plot usable: not in any figure, so said where the count is
            notes.append(f"minus {unusable} unusable title{'s' if unusable != 1 else ''}: "
                         f"`genrefusion validate` lists {'them' if unusable != 1 else 'it'}")
        if notes:
            where += f" ({'; '.join(notes)})"
    if len(rows) == 0 and data is not None and excluded:
        raise DatasetError(f"nothing to evaluate: all {excluded} usable titles of {', '.join(ds.name for ds in datasets)} "
                           "were in the run's train/dev parts (same imdb_id); --split all scores them anyway (how "
                           "well the run fits them, not how it generalises)")
    if len(rows) == 0:
        raise DatasetError(f"nothing to evaluate: no usable title in the {where}")
    return corpus, rows, where


def _own_split(ds, part: str):
    """``ds``'s own split.json (as training reads it), which must have a ``part``; DatasetError naming ``ds``."""
    from .data.split import given_split

    sp, source, warnings = given_split([ds])
    if sp is None:
        raise DatasetError(f"{ds.name}: no split.json in {ds.root} to take the {part} part from "
                           f"(genrefusion split {ds.root} writes one)")
    if not sp.ids(part):
        raise DatasetError(f"{ds.name}: its split.json places no title in the {part} part ({source})")
    for w in warnings:
        log.warning("%s: %s", ds.name, w)
    return sp


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
