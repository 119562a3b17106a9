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

On a cold cache, ``BackgroundFit`` fits the entry in another process while the networks train: training runs on
one thread by default, so on a 2-core machine the baselines (~100 s on the demo data) use the idle core instead
of running after training. The parent then reads the entry like any warm run; if the child failed, it fits here.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .. import baselines as B
from ..bundle import CONFIG, read_baseline_folder, write_baseline_folder
from ..errors import BundleError
from ..io import atomic_dir

log = logging.getLogger("genrefusion.train")  # into the run's train.log
NAMESPACE = "baselines-v1"
# below this many training titles a fit takes less than starting a Python process with scikit-learn (~3 s)
BACKGROUND_MIN_TITLES = 2000


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
    folder = entry_folder(cache_root, *args, seed=seed)
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


def entry_folder(cache_root, *args, seed: int) -> Path | None:
    """Where the fit of these inputs is (or will be) cached; None without a cache."""
    return Path(cache_root) / NAMESPACE / baseline_key(*args, seed) if cache_root is not None else None


def is_cached(cache_root, *args, seed: int) -> bool:
    """Whether the fit of these inputs (``baseline_key``'s arguments) is in the cache already."""
    folder = entry_folder(cache_root, *args, seed=seed)
    return folder is not None and (folder / CONFIG).is_file()


class BackgroundFit:
    """``fit_baselines_cached`` run by a child process (``python -m genrefusion.training.baseline_cache``) on
    one thread; its inputs travel through a temporary folder (npz without pickles + JSON). ``wait()`` before
    reading the cache; ``stop()`` ends the child early (the run failed). ``start`` returns None when there is
    nothing to gain: no cache, an entry already there, or a small training set."""

    def __init__(self, proc: subprocess.Popen, tmp: tempfile.TemporaryDirectory):
        self.proc, self.tmp, self.t0 = proc, tmp, time.perf_counter()

    @classmethod
    def start(cls, cache_root, plots_tr, plots_dev, feats_tr: dict, feats_dev: dict, Ytr, Mtr, Ydev, Mdev,
              seed: int = 0) -> BackgroundFit | None:
        args = (plots_tr, plots_dev, feats_tr, feats_dev, Ytr, Mtr, Ydev, Mdev)
        if cache_root is None or is_cached(cache_root, *args, seed=seed) or len(plots_tr) < BACKGROUND_MIN_TITLES:
            return None
        tmp = tempfile.TemporaryDirectory(prefix="genrefusion-baselines-")
        try:
            arrays = {"Ytr": Ytr, "Mtr": Mtr, "Ydev": Ydev, "Mdev": Mdev}
            for part, feats in (("tr", feats_tr), ("dev", feats_dev)):
                arrays.update({f"{part}.{k}": v for k, v in feats.items() if v is not None})
            np.savez(Path(tmp.name) / "arrays.npz", **arrays)
            (Path(tmp.name) / "inputs.json").write_text(json.dumps(
                {"cache_root": str(cache_root), "seed": seed, "plots_tr": plots_tr, "plots_dev": plots_dev,
                 "feature_keys": sorted(feats_tr)}))
            env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            with open(Path(tmp.name) / "stderr.txt", "wb") as errfile:  # a file: a pipe could fill and block the child
                proc = subprocess.Popen([sys.executable, "-m", __name__, tmp.name], env=env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errfile)
        except OSError as err:  # no room for the inputs, no process: the run fits them itself, later
            tmp.cleanup()
            log.warning("baselines: cannot fit in the background (%s); they will be fitted after training", err)
            return None
        log.info("baselines: fitting in a background process while the networks train")
        return cls(proc, tmp)

    def wait(self) -> bool:
        """Block until the child is done; True when it cached the fit."""
        try:
            self.proc.wait()
            err = (Path(self.tmp.name) / "stderr.txt").read_text(errors="replace")
        finally:
            self.tmp.cleanup()
        if self.proc.returncode == 0:
            log.info("baselines: the background fit finished (%.0f s after it started)", time.perf_counter() - self.t0)
            return True
        last = (err.strip().splitlines() or [f"exit code {self.proc.returncode}"])[-1]
        log.warning("baselines: the background fit failed (%s); fitting them here", last[:200])
        return False

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.tmp.cleanup()


def _fit_from_folder(folder: Path) -> None:
    spec = json.loads((folder / "inputs.json").read_text())
    with np.load(folder / "arrays.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for name in ("inputs.json", "arrays.npz"):  # read: should the parent be killed, only stderr.txt is left behind
        (folder / name).unlink()
    feats = {part: {k: arrays.get(f"{part}.{k}") for k in spec["feature_keys"]} for part in ("tr", "dev")}
    fit_baselines_cached(spec["cache_root"], spec["plots_tr"], spec["plots_dev"], feats["tr"], feats["dev"],
                         arrays["Ytr"], arrays["Mtr"], arrays["Ydev"], arrays["Mdev"], spec["seed"])


def _publish(folder: Path, models: dict, infos: dict) -> None:
    """Write the entry whole and rename it into place (replacing a damaged one); a cache that cannot be
    written only costs the next run a refit."""
    try:
        with atomic_dir(folder) as tmp:
            write_baseline_folder(tmp, models, infos)
    except OSError as err:
        log.warning("baselines: could not cache the fit in %s (%s)", folder, err)


if __name__ == "__main__":  # the child of BackgroundFit (one thread: OMP/BLAS variables set by the parent)
    _fit_from_folder(Path(sys.argv[1]))
