"""Where things live: the shipped demo data, the feature cache, protected folders.

The shipped datasets (``../shared/datasets`` beside the repository) are read-only for us: nothing
(splits, caches, runs) is ever written into them. ``GENREFUSION_DATA`` overrides their location,
``GENREFUSION_CACHE`` the feature-cache root.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError, GenreFusionError

_REPO = Path(__file__).resolve().parent.parent


def shipped_data_dir(required: bool = True) -> Path | None:
    env = os.environ.get("GENREFUSION_DATA")
    candidates = [Path(env)] if env else [Path.cwd() / "../shared/datasets", _REPO / "../shared/datasets"]
    for c in candidates:
        if (c / "README.md").exists() or any(c.glob("*/titles.jsonl")):
            return c.resolve()
    if required:
        raise GenreFusionError(
            "shipped datasets not found: set GENREFUSION_DATA to the folder holding the datasets "
            f"(looked in {', '.join(str(c) for c in candidates)})")
    return None


def shipped_datasets() -> list[Path]:
    root = shipped_data_dir()
    return sorted(p.parent for p in root.glob("*/titles.jsonl"))


def cache_dir() -> Path:
    env = os.environ.get("GENREFUSION_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "genrefusion"


def is_protected(path: str | os.PathLike) -> bool:
    """True for folders we must never write into: the shipped data, or anything not writable."""
    p = Path(path).resolve()
    root = shipped_data_dir(required=False)
    if root is not None and (p == root or root in p.parents):
        return True
    probe = p if p.is_dir() else p.parent
    return probe.exists() and not os.access(probe, os.W_OK)


def check_writable_target(path: str | os.PathLike, what: str) -> Path:
    """Refuse to write ``what`` at ``path`` when it lies in a protected folder."""
    p = Path(path)
    if is_protected(p if p.exists() and p.is_dir() else p.parent):
        raise GenreFusionError(
            f"{p}: refusing to write {what} into a read-only/shipped dataset folder; pass --out elsewhere")
    return p


def check_file_target(path: str | os.PathLike, what: str, option: str) -> Path:
    """``check_writable_target`` for a file given as ``option``; a folder there is refused too, up front (found
    when the file is written, it failed a job whose work was done)."""
    p = check_writable_target(path, what)
    if p.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; name a file (e.g. {p / 'report.json'})")
    return p
