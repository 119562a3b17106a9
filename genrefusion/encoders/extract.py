"""Batch feature extraction with the on-disk cache: posters through an image backbone, plots through MiniLM.

Cache hits cost a hash and a memmap read; misses are decoded + preprocessed in DataLoader worker processes
(overlapping JPEG decode with the backbone), run in batches and appended to the cache as each batch finishes, so an
interrupted run keeps its work. A bad item (corrupt poster, unreadable file) is reported in ``Features.errors`` and
never aborts the run. A missing poster/plot (None, empty text) is ``ok=False`` without an error: it is a missing
modality, not a failure.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from .. import distributed as dist
from ..errors import BadInput, GenreFusionError
from ..progress import progress_bar
from .cache import FeatureCache, content_key


@dataclass
class Features:
    values: np.ndarray                 # [N,D] float32, zeros where not ok
    ok: np.ndarray                     # [N] bool
    errors: dict[int, str] = field(default_factory=dict)  # index -> one-line reason
    cache_hits: int = 0                # how many came from the cache (for logs / benchmarks)

    def __len__(self) -> int:
        return len(self.ok)


def cache_namespace(encoder) -> str:
    """Encoder name + weights fingerprint + preprocessing version: features of different setups never mix."""
    fp = getattr(encoder, "fingerprint", "") or "nofp"
    tag = getattr(encoder, "runtime_tag", "")
    return f"{encoder.name}-{fp}-p{getattr(encoder, 'preprocess_version', 1)}" + (f"-{tag}" if tag else "")


def feature_cache_for(encoder, root: str | os.PathLike | None = None) -> FeatureCache:
    from ..paths import cache_dir

    root = Path(root) if root is not None else cache_dir() / "features"
    return FeatureCache(root, cache_namespace(encoder), encoder.dim)


# -- posters -----------------------------------------------------------------------------------------------
def _poster_key(p, name: str) -> tuple[str | None, str | None]:
    """(content key, error). Paths are read once here for hashing; decoding happens in the workers."""
    try:
        if isinstance(p, (str, os.PathLike)):
            with open(p, "rb") as fh:
                return content_key(fh.read()), None
        if isinstance(p, (bytes, bytearray, memoryview)):
            return content_key(bytes(p)), None
        if isinstance(p, torch.Tensor):  # already preprocessed (GenreClassifier.preprocess_poster)
            return hashlib.sha1(p.detach().cpu().contiguous().numpy().tobytes()).hexdigest(), None
        if isinstance(p, Image.Image):
            h = hashlib.sha1(f"{p.mode}{p.size}".encode())
            h.update(p.tobytes())
            return h.hexdigest(), None
        return None, f"{name}: unsupported poster type {type(p).__name__}"
    except FileNotFoundError:
        return None, f"{name}: file not found"
    except OSError as err:
        return None, f"{name}: cannot read ({err.strerror or err})"


class _PosterSet(torch.utils.data.Dataset):
    def __init__(self, items: list[tuple[int, object, str, int | None]], encoder):
        self.items = items  # (row, source, name, seed of the augmented view or None for the poster itself)
        self.encoder = encoder

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, j: int):
        from ..data.images import load_image

        i, src, name, seed = self.items[j]
        if isinstance(src, torch.Tensor):
            want = (3, self.encoder.input_size, self.encoder.input_size)
            if tuple(src.shape) != want or src.dtype != torch.float32:
                return i, None, f"{name}: preprocessed poster must be a float32 tensor of shape {list(want)}"
            if seed is not None:
                return i, None, f"{name}: a preprocessed poster has no augmented views"
            return i, src, None
        try:
            im = load_image(src, name=name)
            if seed is not None:
                from .augment import poster_view

                im = poster_view(im, seed)
            return i, self.encoder.preprocess(im), None
        except BadInput as err:
            return i, None, str(err)
        except Exception as err:  # any decoder surprise becomes this item's error, never the run's
            return i, None, f"{name}: cannot preprocess image ({type(err).__name__}: {err})".splitlines()[0]


def _collate(batch):
    good = [(i, x) for i, x, e in batch if e is None]
    bad = [(i, e) for i, x, e in batch if e is not None]
    xs = torch.stack([x for _, x in good]) if good else None
    return [i for i, _ in good], xs, bad


def _worker_init(_):
    # decode workers must not compete with the backbone's intra-op threads on a 2-core box
    torch.set_num_threads(1)


def _name(i: int, p, ids) -> str:
    if ids is not None and ids[i] is not None:
        return f"poster of {ids[i]}"
    if isinstance(p, (str, os.PathLike)):
        return str(p)
    return f"poster #{i}"


def _empty(fn: str, n: int, ids, what: str, dim: int) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """(values, ok, errors) for ``n`` items before any is computed; ``ids`` must name each item if given."""
    if ids is not None and len(ids) != n:
        raise GenreFusionError(f"{fn}: {len(ids)} ids for {n} {what}")
    return np.zeros((n, dim), np.float32), np.zeros(n, bool), {}


def _from_cache(cache: FeatureCache | None, by_key: dict[str, list[int]], values, ok) -> tuple[int, list[str]]:
    """Fill the rows whose content key the cache holds; returns (rows filled, keys still to compute)."""
    hits = 0
    todo = list(by_key)
    if cache is not None and todo:
        rows = cache.lookup(todo)
        hit_keys = [k for k, r in zip(todo, rows) if r >= 0]
        if hit_keys:
            for k, f in zip(hit_keys, cache.read(rows[rows >= 0])):
                values[by_key[k]] = f
                ok[by_key[k]] = True
                hits += len(by_key[k])
        todo = [k for k, r in zip(todo, rows) if r < 0]
    return hits, todo


def extract_image_features(posters: Sequence, encoder, cache: FeatureCache | None = None, batch_size: int = 32,
                           num_workers: int = 1, ids: Sequence[str] | None = None,
                           progress: bool = True, view: int = 0) -> Features:
    """Pooled backbone features for each poster (Path, bytes, PIL image or None).

    ``view`` > 0: features of that augmented view of each poster instead (``encoders.augment``), cached under
    a key of their own."""
    from .augment import view_key, view_seed

    n = len(posters)
    values, ok, errors = _empty("extract_image_features", n, ids, "posters", encoder.dim)
    keys: list[str | None] = [None] * n
    for i, p in enumerate(posters):
        if p is None:
            continue
        keys[i], err = _poster_key(p, _name(i, p, ids))
        if err:
            errors[i] = err
        elif view:
            keys[i] = view_key(keys[i], view)

    # identical posters (the shipped datasets share titles) are computed once and copied
    by_key: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        if k is not None:
            by_key.setdefault(k, []).append(i)
    hits, todo_keys = _from_cache(cache, by_key, values, ok)
    # under torchrun each rank encodes its share of rank 0's misses (merged back below)
    todo_keys = dist.share_work(todo_keys)

    if todo_keys:
        items = [(by_key[k][0], posters[by_key[k][0]], _name(by_key[k][0], posters[by_key[k][0]], ids),
                  view_seed(k) if view else None) for k in todo_keys]
        loader = torch.utils.data.DataLoader(
            _PosterSet(items, encoder), batch_size=batch_size, shuffle=False, num_workers=num_workers,
            collate_fn=_collate, worker_init_fn=_worker_init if num_workers > 0 else None,
            prefetch_factor=4 if num_workers > 0 else None, persistent_workers=False)
        was_training = encoder.training
        encoder.eval()
        desc = f"poster features ({encoder.name}{f', view {view}' if view else ''})"
        bar = progress_bar(len(items), desc, "img", progress, mininterval=2.0)
        try:
            with torch.inference_mode():
                for idx, xs, bad in loader:
                    for i, e in bad:
                        for j in by_key[keys[i]]:
                            errors[j] = e
                    if xs is not None:
                        if hasattr(encoder, "encode"):  # image.FrozenImageFeatures: ONNX Runtime where it can
                            f = encoder.encode(xs)
                        else:  # any other image module
                            f = encoder(xs.to(dist.model_device(encoder))).float().cpu().numpy()
                        for i, row in zip(idx, f):
                            values[by_key[keys[i]]] = row
                            ok[by_key[keys[i]]] = True
                        if cache is not None:
                            cache.append([keys[i] for i in idx], f,
                                         ids=None if ids is None else [ids[i] for i in idx])
                    bar.update(len(idx) + len(bad))
        finally:
            bar.close()
            encoder.train(was_training)
    values, ok, errors, hits = dist.merge_shared_work(values, ok, errors, hits, by_key, todo_keys, cache, ids)
    return Features(values, ok, errors, hits)


# -- plots -------------------------------------------------------------------------------------------------
def extract_text_features(texts: Sequence[str | None], encoder, cache: FeatureCache | None = None,
                          batch_size: int = 32, ids: Sequence[str] | None = None,
                          progress: bool = True) -> Features:
    """Frozen sentence features for each plot; None/empty/whitespace plots are ok=False (missing modality)."""
    values, ok, errors = _empty("extract_text_features", len(texts), ids, "texts", encoder.dim)
    by_key: dict[str, list[int]] = {}
    clean: dict[str, str] = {}
    usable: dict[int, str] = {}
    for i, t in enumerate(texts):
        if t is None:
            continue
        if not isinstance(t, str):
            errors[i] = f"plot of {ids[i] if ids else f'#{i}'}: expected text, got {type(t).__name__}"
            continue
        t = t.strip()
        if t:
            usable[i] = t
    # the encoder may key a text by more than its content (MiniLM: long texts are chunk averages)
    key_fn = getattr(encoder, "feature_keys", None) or (lambda ts: [content_key(t) for t in ts])
    for (i, t), k in zip(usable.items(), key_fn(list(usable.values()))):
        by_key.setdefault(k, []).append(i)
        clean[k] = t
    hits, todo = _from_cache(cache, by_key, values, ok)
    todo = dist.share_work(todo)  # under torchrun: this rank's share of rank 0's misses (merged back below)
    if todo:
        # length-sorted batches waste little on padding (MiniLM cost grows with the longest text in a batch)
        todo.sort(key=lambda k: len(clean[k]))
        bar = progress_bar(len(todo), f"plot features ({encoder.name})", "plot", progress, mininterval=2.0)
        try:
            for s in range(0, len(todo), batch_size):
                chunk = todo[s:s + batch_size]
                f = np.asarray(encoder.encode([clean[k] for k in chunk], batch_size=batch_size), np.float32)
                for k, row in zip(chunk, f):
                    values[by_key[k]] = row
                    ok[by_key[k]] = True
                if cache is not None:
                    cache.append(chunk, f, ids=None if ids is None else [ids[by_key[k][0]] for k in chunk])
                bar.update(len(chunk))
        finally:
            bar.close()
    values, ok, errors, hits = dist.merge_shared_work(values, ok, errors, hits, by_key, todo, cache, ids)
    return Features(values, ok, errors, hits)
