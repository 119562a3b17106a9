"""A fixed handful of test titles explained, for the run report: what the model relies on, right and wrong.

The titles are chosen before anything is explained, by a rule that does not look at explanations: the run's
test titles with both a poster and a plot, ordered by a hash of their key (``dataset/id``); the first
``N_FIRST``, then the next ``N_WRONG`` whose prediction is wrong (a predicted genre the title is labelled
without, or a labelled genre missed; genres its dataset does not label are not counted). Each is explained for
its predicted and its labelled genres (at most ``MAX_GENRES``). The result is cached in
``RUN_DIR/report/explanations.json``, keyed by the content of the bundle and of the explained titles, so
re-drawing a report, also of a copied run, is cheap.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..errors import GenreFusionError

N_FIRST, N_WRONG, MAX_GENRES = 4, 2, 4
CACHE = "explanations.json"


def mistakes(y, m, predicted: set[str], genres: list[str]) -> list[str]:
    """What is wrong with a prediction (empty when right), counting only genres the title's dataset labels."""
    labelled = {g for g, yy, mm in zip(genres, y, m) if mm and yy}
    known = {g for g, mm in zip(genres, m) if mm}
    extra, missed = sorted((predicted & known) - labelled), sorted(labelled - predicted)
    return ([f"predicted {', '.join(extra)} (not labelled)"] if extra else []) + \
        ([f"missed {', '.join(missed)}"] if missed else [])


def pick(keys, usable: set[str], wrong: dict[str, list[str]], n_first: int = N_FIRST,
         n_wrong: int = N_WRONG) -> list[str]:
    """The showcased keys: the first ``n_first`` usable keys in hash order, then the next ``n_wrong`` wrong."""
    order = sorted((k for k in keys if k in usable), key=lambda k: hashlib.sha1(k.encode("utf-8")).hexdigest())
    return order[:n_first] + [k for k in order[n_first:] if wrong.get(k)][:n_wrong]


def _titles(run_dir: Path) -> dict[str, tuple]:
    """``dataset/id`` -> (Title, poster path) for the run's datasets (those still where the run found them)."""
    from ..data.dataset import open_datasets
    from ..io import read_json

    paths = read_json(run_dir / "config.json", "run config").get("data") or []
    out = {}
    for ds in open_datasets([p for p in paths if Path(p).is_dir()]):
        for t in ds.titles():
            if t.plot and t.poster:
                out[f"{ds.name}/{t.id}"] = (t, ds.poster_path(t))
    return out


def _digest(*parts) -> str:
    """sha256 of ``parts``: files (their bytes), or anything JSON can write."""
    import json

    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Path):
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def _bundle_id(bundle) -> str:
    """The content of the bundle files a prediction reads, and of a backbone file it loads from elsewhere (not
    the model card, nor modification times: a copied run keeps its cache)."""
    from ..bundle import BACKBONE, CONFIG, LEXICAL, LEXICAL_INFO, VOCAB, WEIGHTS

    names = [n for n in (CONFIG, WEIGHTS, VOCAB, BACKBONE, LEXICAL, LEXICAL_INFO) if (bundle.path / n).is_file()]
    external = bundle.backbone_weights()
    external = [Path(external)] if external is not None and Path(external).is_file() else []
    return _digest(names, *[bundle.path / n for n in names], *external)


def showcase(run_dir, scores: dict, model: str) -> list[dict]:
    """Explanations of the showcased test titles (``scores``: the run's ``test_scores.npz`` arrays; ``model``:
    the bundle model the report shows). Raises GenreFusionError when they cannot be made."""
    from ..bundle import load_bundle
    from ..decision import decide
    from ..io import read_json, write_json
    from .core import BundleView, explain
    from .units import MIN_UNITS, WORD_BUDGET

    run_dir = Path(run_dir)
    bundle = load_bundle(run_dir)
    genres, keys = [str(g) for g in scores["genres"]], [str(k) for k in scores["keys"]]
    S, Y, M = scores[f"S_{model}"], scores["Y"], scores["M"]
    titles = _titles(run_dir)
    if not titles:
        raise GenreFusionError("the run's datasets are not where it found them")
    if model not in bundle.models or genres != bundle.genres:
        raise GenreFusionError(f"the test scores do not match the bundle's {model!r} model")
    view = BundleView(bundle, model)
    # the showcased titles have both inputs: decided, as their explanations are, with the set tuned for those
    # (the pooled thresholds called some titles wrong, or right, that the served decision does not)
    both = view.thresholds_for(["poster", "plot"])[0]
    predicted = {k: set(decide(S[i], genres, both)) for i, k in enumerate(keys)}
    wrong = {k: mistakes(Y[i], M[i], predicted[k], genres) for i, k in enumerate(keys)}
    todo = []
    for k in pick(keys, set(titles), wrong):
        i, (t, poster) = keys.index(k), titles[k]
        labelled = [g for g, yy, mm in zip(genres, Y[i], M[i]) if yy and mm]
        ask = list(dict.fromkeys(sorted(predicted[k], key=lambda g: -S[i][genres.index(g)]) + labelled))
        todo.append(({"key": k, "title": t.title, "labelled": labelled, "wrong": wrong[k]}, poster, t.plot,
                     ask[:MAX_GENRES] or None))
    # keyed on content, the model's and every input's (poster bytes, plot, genres asked), never on paths or
    # modification times: a copied run or dataset reuses it, a retrained model, an edited title or another
    # phrase rule (units.py) does not
    key = _digest(model, _bundle_id(bundle), [WORD_BUDGET, MIN_UNITS],
                  *[[entry, plot, ask] for entry, _, plot, ask in todo],
                  *[Path(poster) for _, poster, _, _ in todo])
    cache_path = run_dir / "report" / CACHE
    if cache_path.is_file():
        cached = read_json(cache_path, "cached explanations")
        if isinstance(cached, dict) and cached.get("key") == key:
            return cached["titles"]
    out = [{**entry, "explanation": explain(view, poster=poster, plot=plot, genres=ask)}
           for entry, poster, plot, ask in todo]
    write_json(cache_path, {"key": key, "model": model, "titles": out}, indent=None)
    return out
