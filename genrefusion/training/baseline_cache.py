"""A content-keyed cache of the run's fitted baselines (tf-idf logistic regression, linear probes).

The baselines are a pure function of the training and dev titles' plots, frozen features and labels, the seed
and the fitting settings, and fitting them (~85 s on the demo data: three C values for tf-idf, four for each
probe) was a third of a warm run. Training again on the same split and features (another config, another
``--out``) reuses them: the key hashes every input the fit reads plus the library versions, so any change
(a title, a label, a feature row, a C grid, the fitting code, scikit-learn) is a miss and refits. Entries live beside the
feature caches (``<cache>/baselines-v1/<key>/``, the bundle's safetensors + JSON format, never pickled) and
are published by renaming a finished folder, so a killed run leaves no half entry; an unreadable one is
refitted and replaced.

A fresh fit is scored through its stored form too (``from_state(state())``), so a cold and a warm run give
the same scores bit for bit, and the same ones the bundle serves.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from .. import baselines as B
from ..bundle import CONFIG, read_baseline_folder, write_baseline_folder
from ..errors import BundleError
from ..io import atomic_dir

log = logging.getLogger(__name__)
NAMESPACE = "baselines-v1"


def baseline_key(plots_tr, plots_dev, feats_tr: dict, feats_dev: dict, Ytr, Mtr, Ydev, Mdev, seed: int) -> str:
    """sha256 over every input of ``baselines.fit_baselines`` and the settings and libraries it depends on."""
    import sklearn

    h = hashlib.sha256()

    def add(x):
        if x is None:
            h.update(b"\x00none")
        elif isinstance(x, str):
            b = x.encode("utf-8")
            h.update(len(b).to_bytes(8, "little") + b)
        else:
            a = np.ascontiguousarray(x)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(memoryview(a).cast("B"))

    add(Path(B.__file__).read_text(encoding="utf-8"))  # the fitting code itself: an upgrade refits
    add(json.dumps({"namespace": NAMESPACE, "tfidf": B.TFIDF_PARAMS, "C": B.C_GRID, "probe_C": B.PROBE_C_GRID,
                    "probes": B.PROBES, "seed": seed, "sklearn": sklearn.__version__, "numpy": np.__version__},
                   sort_keys=True, default=str))
    for plots in (plots_tr, plots_dev):
        add(str(len(plots)))
        for p in plots:
            add("" if p is None else p)
    for feats in (feats_tr, feats_dev):
        for k in ("image", "image_ok", "text", "text_ok"):
            add(feats.get(k))
    for a in (Ytr, Mtr, Ydev, Mdev):
        add(a)
    return h.hexdigest()[:40]


def stored_form(models: dict) -> dict:
    """Each baseline rebuilt from its ``state()``: what a cache entry or a bundle gives back."""
    return {name: type(m).from_state(*m.state()) for name, m in models.items()}


def fit_baselines_cached(cache_root, plots_tr, plots_dev, feats_tr: dict, feats_dev: dict, Ytr, Mtr, Ydev, Mdev,
                         seed: int = 0):
    """``baselines.fit_baselines`` through the cache (``cache_root=None``: no cache). Returns (models, dev
    scores, fit infos) by baseline name, like ``fit_baselines``."""
    args = (plots_tr, plots_dev, feats_tr, feats_dev, Ytr, Mtr, Ydev, Mdev)
    folder = Path(cache_root) / NAMESPACE / baseline_key(*args, seed) if cache_root is not None else None
    models = infos = None
    if folder is not None and (folder / CONFIG).is_file():
        try:
            models, _, infos = read_baseline_folder(folder, "refitting")
            log.info("baselines: reused the fit cached in %s", folder)
        except BundleError as err:
            log.warning("%s", err)
    if models is None:
        models, _, infos = B.fit_baselines(*args, seed)
        models, infos = stored_form(models), json.loads(json.dumps(infos))  # as an entry reads back (str keys)
        if folder is not None:
            _publish(folder, models, infos)
    return models, B.baseline_scores(models, plots_dev, feats_dev), infos


def _publish(folder: Path, models: dict, infos: dict) -> None:
    """Write the entry whole and rename it into place (replacing a damaged one); a cache that cannot be
    written only costs the next run a refit."""
    try:
        with atomic_dir(folder) as tmp:
            write_baseline_folder(tmp, models, infos)
    except OSError as err:
        log.warning("baselines: could not cache the fit in %s (%s)", folder, err)
