"""The explanation itself: modality scores, plot-unit occlusion and poster-cell occlusion, scored in one batched
pass of the model's branches and head (see the package docstring for the method and the output)."""
from __future__ import annotations

import difflib
import threading
import time
import weakref
from typing import Any, Sequence

import numpy as np

from ..decision import check_overrides, decide, shown_figures, used_inputs
from ..errors import BadInput
from .units import WORD_BUDGET, plot_units, remove_spans

DECIMALS = 4
LOCK_WORDS = 600  # plot words encoded per hold of the classifier's lock: a prediction waits for one chunk at most
_BLANK_MAPS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # image encoder -> blank poster's map


class BundleView:
    """What ``explain`` reads from a classifier (``GenreClassifier`` has the same attributes), made from a loaded
    bundle alone, for callers below the Python API (the run report)."""

    def __init__(self, bundle, model: str | None = None, text_runtime: str | None = None):
        self.bundle_ = bundle
        self.model_name_ = model or bundle.default_model
        self.genres_ = bundle.genres
        self.thresholds_ = np.asarray(bundle.thresholds[self.model_name_], dtype=np.float64)
        self.threshold_sets_ = bundle.threshold_sets[self.model_name_]
        self.text_runtime = text_runtime
        self.encoders_: dict = {}
        self._lock = threading.Lock()

    def thresholds_for(self, used: Sequence[str]):
        """As ``GenreClassifier.thresholds_for``: the set tuned on dev titles with these inputs."""
        from ..thresholds import model_reads, used_key

        return self.threshold_sets_.pick(used_key(used, model_reads(self.model_name_)))

    def input_encoders(self):
        from ..inference import bundle_encoders

        return bundle_encoders(self.bundle_, self.encoders_, text_runtime=self.text_runtime)


# -- model access -------------------------------------------------------------------------------------------
def model_reads(model) -> set[str]:
    """The inputs a bundle model uses: both for the fused model, its modality for a single one."""
    from ..models.fusion import FusedModel

    return {"poster", "plot"} if isinstance(model, FusedModel) else {model.modality}


def _word_chunks(texts: list[str], idx: list[int], words: int) -> list[list[int]]:
    """``idx`` cut into consecutive runs of about ``words`` words of ``texts`` (at least one text each)."""
    out, size = [], 0
    for i in idx:
        n = len(texts[i].split())
        if not out or size + n > words:
            out.append([])
            size = 0
        out[-1].append(i)
        size += n
    return out


def _text_inputs(encoders, spec: dict, texts: list[str | None], lock):
    """(branch input, present mask) for plot variants through the bundle's text route (as ``build_inputs`` and
    ``Batcher`` make them: stripped text for MiniLM, token ids for the LSTM); None = no plot. MiniLM encodes
    ``LOCK_WORDS`` words at a time under ``lock`` (the classifier's), so predictions run in between."""
    import torch

    present = torch.tensor([bool(t and t.strip()) for t in texts])
    if encoders.minilm is not None:
        feats = torch.zeros((len(texts), encoders.minilm.dim))
        for part in _word_chunks(texts, [i for i, ok in enumerate(present.tolist()) if ok], LOCK_WORDS):
            with lock:
                feats[part] = torch.from_numpy(encoders.minilm.encode([texts[i].strip() for i in part]))
        return feats, present
    from ..encoders.lstm import collate_ids

    ids = [encoders.vocab.numericalise(t) if ok else [0] for t, ok in zip(texts, present.tolist())]
    ids, lengths = collate_ids(ids, spec.get("lstm", {}).get("max_len", 200))
    return {"ids": ids, "lengths": lengths}, present


def _pair_logits(model, img, img_present, txt, txt_present, pairs: np.ndarray):
    """Logits ``[len(pairs), G]`` for (poster variant, plot variant) index pairs; each branch runs once per
    variant, then the fused head pairs them (row-independent in eval mode)."""
    import torch

    from ..models.fusion import FusedModel

    pi, ti = torch.as_tensor(pairs[:, 0]), torch.as_tensor(pairs[:, 1])
    if isinstance(model, FusedModel):
        a = model.poster(img, img_present) if img is not None else model.poster.missing.expand(1, -1)
        b = model.plot(txt, txt_present) if txt is not None else model.plot.missing.expand(1, -1)
        return model.fuse(a[pi if img is not None else torch.zeros_like(pi)],
                          b[ti if txt is not None else torch.zeros_like(ti)])
    if model.modality == "poster":
        out = model(img, img_present) if img is not None else model.prior_logits.unsqueeze(0)
        return out[pi if img is not None else torch.zeros_like(pi)]
    out = model(txt, txt_present) if txt is not None else model.prior_logits.unsqueeze(0)
    return out[ti if txt is not None else torch.zeros_like(ti)]


def _poster_variants(enc, image):
    """Pooled features ``[1 + h*w, C]``: the poster's, then one per occluded cell, and the map's ``(h, w)``."""
    import torch

    x = enc.preprocess(image).unsqueeze(0)
    blank = _BLANK_MAPS.get(enc)
    with torch.inference_mode():
        if blank is None:
            blank = _BLANK_MAPS[enc] = enc.feature_map(enc.channels_last(torch.zeros_like(x)))[0]
        fmap = enc.feature_map(enc.channels_last(x))[0]
    c, h, w = fmap.shape
    pooled = fmap.mean((1, 2))
    delta = (blank - fmap).reshape(c, h * w).T / (h * w)
    return torch.cat([pooled.unsqueeze(0), pooled.unsqueeze(0) + delta]), (h, w)


# -- genres -------------------------------------------------------------------------------------------------
def resolve_genres(names, known: Sequence[str]) -> list[str]:
    """Model genre names for user-given ones (any case, common synonyms); BadInput naming an unknown one."""
    from ..genres import canonical_genre

    if isinstance(names, str):
        names = [names]
    by_key = {g.casefold(): g for g in known}
    out = []
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise BadInput(f"genre {name!r}: expected a genre name")
        g = by_key.get(name.strip().casefold()) or by_key.get((canonical_genre(name) or "").casefold())
        if g is None:
            near = difflib.get_close_matches(name.strip().title(), list(known), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f" (it knows {', '.join(known)})"
            raise BadInput(f"genre {name!r}: not a genre of this model{hint}")
        if g not in out:
            out.append(g)
    return out


# -- the explanation ----------------------------------------------------------------------------------------
def _prepare(clf, poster, plot, word_budget: int) -> dict[str, Any]:
    """Decode and encode everything one explanation needs (under the classifier's lock, as predict does; the plot
    variants a chunk at a time)."""
    import torch

    from ..data.images import load_image

    if isinstance(poster, torch.Tensor):
        raise BadInput("poster: explain needs the image itself (path, bytes or PIL image), not a tensor")
    model = clf.bundle_.models[clf.model_name_]
    reads = model_reads(model)
    image = load_image(poster) if poster is not None else None  # a bad poster fails here, named
    units = plot_units(plot, word_budget) if plot is not None and "plot" in reads else None
    out: dict[str, Any] = {"model": model, "image": image, "units": units, "img": None, "img_present": None,
                           "txt": None, "txt_present": None, "grid": None, "lexical": None}
    with clf._lock:
        encoders = clf.input_encoders()
        enc = encoders.image
        if image is not None and "poster" in reads and enc is not None:
            feats, out["grid"] = _poster_variants(enc, image)
            out["img"] = torch.cat([feats, torch.zeros_like(feats[:1])])  # last row: no poster
            out["img_present"] = torch.tensor([True] * len(feats) + [False])
            out["crop"] = enc.crop_box(*image.size)
    if units is not None:  # the text route takes the lock per chunk: a long plot does not stall predictions
        texts = [plot] + [remove_spans(plot, [units.span(u)]) for u in range(len(units.units))] + [None]
        out["txt"], out["txt_present"] = _text_inputs(encoders, clf.bundle_.spec, texts, clf._lock)
        if encoders.lexical is not None and getattr(model, "lexical_weight", 0.0):
            with clf._lock:
                out["lexical"] = encoders.lexical.predict_proba([t or "" for t in texts]).astype(np.float64)
    return out


def _rows(p: dict) -> tuple[np.ndarray, dict[str, Any]]:
    """(poster variant, plot variant) pairs to score, and where each group of rows sits."""
    # variants: the full input, then one per occluded cell / unit (each branch input also has a last 'absent' row)
    n_img = 0 if p["img"] is None else len(p["img_present"]) - 1
    n_txt = 0 if p["txt"] is None else len(p["txt_present"]) - 1
    img_full, img_none = (0, n_img) if n_img else (0, 0)
    txt_full, txt_none = (0, n_txt) if n_txt else (0, 0)
    both = (img_full if n_img else img_none, txt_full if n_txt else txt_none)
    pairs = [both, (img_full, txt_none), (img_none, txt_full), (img_none, txt_none)]
    where = {"cells": slice(len(pairs), len(pairs) + max(0, n_img - 1))}
    pairs += [(c, both[1]) for c in range(1, n_img)]
    where["units"] = slice(len(pairs), len(pairs) + max(0, n_txt - 1))
    pairs += [(both[0], u) for u in range(1, n_txt)]
    return np.asarray(pairs, dtype=np.int64), where


def explain(clf, poster=None, plot: str | None = None, genres=None, top_k: int | None = None,
            top_words: int = 5, overlays: bool = True, word_budget: int = WORD_BUDGET,
            threshold: float | None = None) -> dict:
    """Explain one title's prediction (output: the package docstring). ``clf``: a loaded ``GenreClassifier``
    or a ``BundleView``; ``poster``: path, bytes or PIL image; ``plot``: text. ``genres``: names to explain
    (default: the predicted ones, else the 3 most probable); ``top_k``, ``threshold``: as in ``predict_one``;
    ``top_words``: units listed per genre; ``overlays``: add the poster overlay PNGs."""
    import torch

    t0 = time.perf_counter()
    check_overrides(top_k, threshold)
    if isinstance(top_words, bool) or not isinstance(top_words, int) or top_words < 0:
        raise BadInput(f"top_words: must be a non-negative integer, got {top_words!r}")
    if plot is not None and not isinstance(plot, str):
        raise BadInput(f"plot must be text, got {type(plot).__name__}")
    plot = plot if plot is not None and plot.strip() else None
    if poster is None and plot is None:
        raise BadInput("give a poster, a plot, or both")
    from ..thresholds import check_reads

    check_reads(clf.model_name_, used_inputs(poster, plot))
    wanted = resolve_genres(genres, clf.genres_) if genres else None
    p = _prepare(clf, poster, plot, word_budget)
    pairs, where = _rows(p)
    with torch.inference_mode():
        logits = _pair_logits(p["model"], p["img"], p["img_present"], p["txt"], p["txt_present"], pairs)
    logits = logits.double().numpy()
    probs = 1 / (1 + np.exp(-logits))
    if p.get("lexical") is not None:  # the lexical blend, as predict applies it (models/lexical.py)
        from ..models.lexical import blend

        ti = pairs[:, 1]
        probs = blend(probs, p["lexical"][ti], p["txt_present"].numpy()[ti], p["model"].lexical_weight)
        probs = np.clip(probs, 1e-12, 1 - 1e-12)
        logits = np.log(probs) - np.log1p(-probs)  # word and cell weights stay log-odds differences
    def set_for(used):  # the set tuned on dev titles with these inputs, or the caller's threshold for every genre
        return clf.thresholds_for(used)[0] if threshold is None else np.full(len(clf.genres_), float(threshold))

    thr = set_for(used_inputs(poster, plot))
    # what the poster or the plot alone would be cut at (the web page's "Why?" rows): a set of its own
    alone = {k: set_for([k]) for k in ("poster", "plot")} if p["img"] is not None and p["txt"] is not None else {}
    predicted = decide(probs[0], clf.genres_, thr)
    if wanted is None:
        wanted = (decide(probs[0], clf.genres_, thr, top_k, threshold)
                  or [clf.genres_[i] for i in np.argsort(-probs[0], kind="stable")[:3]])
    return _assemble(clf, p, logits, probs, where, predicted, wanted, top_words, overlays, t0, thr, alone)


def _r(v) -> float:
    return round(float(v), DECIMALS)


def _w(v) -> float:
    """Weights keep 4 significant digits: a weak model's are small, and their order matters."""
    return float(f"{float(v):.4g}")


def _assemble(clf, p, logits, probs, where, predicted, chosen, top_words, overlays, t0, thr, alone) -> dict:
    units, has_img, has_txt = p["units"], p["img"] is not None, p["txt"] is not None
    used = (["poster"] if has_img else []) + (["plot"] if has_txt else [])
    unit_w = logits[0][None, :] - logits[where["units"]] if has_txt else None   # [U, G]
    cell_w = logits[0][None, :] - logits[where["cells"]] if has_img else None   # [h*w, G]
    out_genres = []
    score, shown_thr = shown_figures(clf.genres_, probs[0], thr)  # never a score shown equal to its threshold
    if has_img and has_txt:  # each input alone, cut at its own set
        one = {k: shown_figures(clf.genres_, probs[row], alone[k]) for k, row in (("poster", 1), ("plot", 2))}
    else:  # one input given: its row is the decision itself
        one = {used[0]: (score, shown_thr)} if used else {}
    for g in chosen:
        j = clf.genres_.index(g)
        e = {"genre": g, "score": score[g],
             "poster_only": one["poster"][0][g] if "poster" in one else None,
             "plot_only": one["plot"][0][g] if "plot" in one else None,
             "poster_only_threshold": one["poster"][1][g] if "poster" in one else None,
             "plot_only_threshold": one["plot"][1][g] if "plot" in one else None,
             "no_input": _r(probs[3, j]), "threshold": shown_thr[g], "predicted": g in predicted,
             "word_weights": None, "top_words": [], "poster_grid": None, "overlay_png": None}
        if has_txt:
            w = unit_w[:, j]
            per_word = np.zeros(len(units.words))
            for u, (a, b) in enumerate(units.units):
                per_word[a:b] = w[u] / (b - a)
            e["word_weights"] = [_w(v) for v in per_word]
            order = [u for u in np.argsort(-w, kind="stable") if w[u] > 0][:top_words]
            e["top_words"] = [{"text": units.unit_text(u), "weight": _w(w[u])} for u in order]
        if has_img:
            grid = cell_w[:, j].reshape(p["grid"])
            e["poster_grid"] = [[_w(v) for v in row] for row in grid]
            if overlays:
                from .render import overlay_png_base64

                e["overlay_png"] = overlay_png_base64(p["image"], grid, p["crop"])
        out_genres.append(e)
    return {"model": clf.model_name_, "used": used, "predicted": predicted, "weights": "log-odds",
            "plot": None if not has_txt else {
                "text": units.text, "granularity": units.granularity,
                "words": [list(s) for s in units.words], "units": [list(u) for u in units.units]},
            "poster": None if not has_img else {
                "size": list(p["image"].size), "crop": [round(v, 1) for v in p["crop"]],
                "grid_shape": list(p["grid"])},
            "genres": out_genres, "seconds": round(time.perf_counter() - t0, 3)}
