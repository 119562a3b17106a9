"""Model inputs for a list of titles: frozen poster features, MiniLM plot features, LSTM token ids and the
lexical blend's tf-idf probabilities.

``build_inputs`` is the one place features are built, for a training corpus (encoders from the config,
the feature cache on) and for a trained bundle (its encoders, no cache unless asked).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .. import distributed as dist
from .extract import extract_image_features, extract_text_features, feature_cache_for


@dataclass
class Inputs:
    image: torch.Tensor | None = None        # [N, Di]
    image_ok: torch.Tensor | None = None     # [N] bool
    text_ok: torch.Tensor | None = None      # [N] bool (a usable plot)
    minilm: torch.Tensor | None = None       # [N, 384]
    ids: list[list[int]] | None = None       # LSTM token ids per row
    lexical: torch.Tensor | None = None      # [N, G] tf-idf logistic regression probabilities (models/lexical.py)
    image_loader: Callable | None = None     # posters decoded per batch instead of ``image`` (finetune "all")
    image_views: torch.Tensor | None = None  # [V, K, Di] augmented views of K training posters (add_poster_views)
    view_index: torch.Tensor | None = None   # [N] long: row -> its posters' index in image_views, -1 for none
    errors: dict[int, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class InputEncoders:
    """What turns posters and plots into inputs; None where the model takes no such input."""

    image: torch.nn.Module | None = None     # a frozen poster backbone (encoders.image), or a view of it
    minilm: torch.nn.Module | None = None    # MiniLM (encoders.text), the ``minilm`` text route
    vocab: object = None                     # encoders.tokenize.Vocab, the ``lstm`` text route
    lexical: object = None                   # baselines.TfidfLogReg of the lexical blend (a bundle's)


def effective_workers(n: int) -> int:
    """DataLoader decode workers: 0 inside daemonic processes (no children allowed) or when n is 0."""
    import multiprocessing as mp

    return 0 if mp.current_process().daemon else max(0, int(n))


def _extract(extract, items, encoder, cache_root, **kw):
    # rank 0 is the cache's only reader and writer; other ranks get their share of its misses (extract.py)
    cacheable = cache_root is not None and dist.is_main() and getattr(encoder, "cacheable", True)
    cache = feature_cache_for(encoder, cache_root) if cacheable else None
    try:
        return extract(items, encoder, cache, **kw)
    finally:
        if cache is not None:
            cache.close()


def build_inputs(posters, plots, encoders: InputEncoders, cache_root=None, ids=None, image_batch_size: int = 32,
                 text_batch_size: int = 32, num_workers: int = 0, progress: bool = True,
                 lazy_pixels: bool = False) -> Inputs:
    """Features / token ids for rows given by poster sources (path/bytes/PIL/None) and plots (str/None).

    ``cache_root``: the feature cache folder (None: no cache). ``ids`` name the rows in errors and the
    cache index. A poster that fails to decode, or a plot the text encoder rejects, is recorded in
    ``errors`` and treated as a missing modality for that row. ``lazy_pixels`` (training with finetune
    "all"): posters are decoded per batch (``PosterLoader``), not held in memory as pixels."""
    n = len(posters)
    inp = Inputs()
    t0 = time.perf_counter()
    if encoders.image is not None and lazy_pixels and not getattr(encoders.image, "cacheable", True):
        from .image import PosterLoader

        inp.image_loader = PosterLoader(posters, encoders.image.base, [f"poster of {i}" for i in ids] if ids else None)
        inp.image_ok = torch.tensor([p is not None for p in posters], dtype=torch.bool)
    elif encoders.image is not None:
        f = _extract(extract_image_features, posters, encoders.image, cache_root, batch_size=image_batch_size,
                     num_workers=effective_workers(num_workers), ids=ids, progress=progress)
        inp.image, inp.image_ok = torch.from_numpy(f.values), torch.from_numpy(f.ok)
        inp.errors.update(f.errors)
    inp.timings["image_s"] = round(time.perf_counter() - t0, 2)
    text_ok = np.array([isinstance(p, str) and bool(p.strip()) for p in plots], dtype=bool)
    t0 = time.perf_counter()
    if encoders.minilm is not None:
        f = _extract(extract_text_features, plots, encoders.minilm, cache_root, batch_size=text_batch_size, ids=ids,
                     progress=progress)
        inp.minilm = torch.from_numpy(f.values)
        text_ok &= f.ok
        inp.errors.update(f.errors)
    if encoders.vocab is not None:
        inp.ids = [encoders.vocab.numericalise(p) if ok else [] for p, ok in zip(plots, text_ok)]
    if encoders.lexical is not None:
        inp.lexical = torch.from_numpy(encoders.lexical.predict_proba([p if ok else "" for p, ok in zip(plots, text_ok)]))
    inp.timings["text_s"] = round(time.perf_counter() - t0, 2)
    inp.text_ok = torch.from_numpy(text_ok)
    if inp.image_ok is None:
        inp.image_ok = torch.zeros(n, dtype=torch.bool)
    return inp


def add_poster_views(inputs: Inputs, posters, rows, encoder, views: int, cache_root=None, ids=None,
                     batch_size: int = 32, num_workers: int = 0, progress: bool = True) -> None:
    """Features of ``views`` augmented views (``encoders.augment``) of the posters of ``rows`` (training rows),
    cached under keys of their own, into ``inputs.image_views`` / ``view_index``. A view that fails to
    decode keeps its poster's own features, so every indexed row has all its views."""
    rows = np.asarray(rows)
    rows = rows[inputs.image_ok.numpy()[rows]]
    if not views or not len(rows):
        return
    clean = inputs.image[torch.as_tensor(rows)]
    out = torch.empty((views, len(rows), clean.shape[1]), dtype=clean.dtype)
    for v in range(1, views + 1):
        f = _extract(extract_image_features, [posters[i] for i in rows], encoder, cache_root, batch_size=batch_size,
                     num_workers=effective_workers(num_workers), ids=[ids[i] for i in rows] if ids else None,
                     progress=progress, view=v)
        out[v - 1] = torch.where(torch.from_numpy(f.ok)[:, None], torch.from_numpy(f.values), clean)
    index = torch.full((len(inputs.image_ok),), -1, dtype=torch.long)
    index[torch.as_tensor(rows)] = torch.arange(len(rows))
    inputs.image_views, inputs.view_index = out, index


def both_rows(inputs: Inputs, rows) -> np.ndarray:
    """The subset of ``rows`` with a usable poster and a usable plot."""
    img = inputs.image_ok.numpy() if inputs.image_ok is not None else np.zeros(0, bool)
    txt = inputs.text_ok.numpy() if inputs.text_ok is not None else np.zeros(0, bool)
    rows = np.asarray(rows)
    if not len(img) or not len(txt):
        return rows[:0]
    return rows[img[rows] & txt[rows]]


def feature_rows(inputs: Inputs, rows) -> dict:
    """The frozen features of ``rows`` as numpy arrays, for the linear probes: ``{"image", "image_ok", "text",
    "text_ok"}`` (features None where there are none: no poster encoder, or a text route without MiniLM)."""
    idx = torch.as_tensor(np.asarray(rows), dtype=torch.long)

    def take(t):
        return None if t is None else t[idx].numpy()

    n = len(idx)
    ok = lambda t: take(t) if t is not None else np.zeros(n, bool)  # noqa: E731
    return {"image": take(inputs.image), "image_ok": ok(inputs.image_ok), "text": take(inputs.minilm),
            "text_ok": ok(inputs.text_ok)}
