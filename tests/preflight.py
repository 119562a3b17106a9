"""What the test suite needs from the machine, checked before it runs.

Outside CI a missing prerequisite skips the tests that need it (a laptop without the shipped data or
Chromium can still run the rest). In CI (``CI`` set, as every CI service does) it is a broken set-up: the run
stops at once with one line saying what is missing, so a green CI run means every test ran. ``conftest.py``
applies these checks to every pytest run; ``scripts/test.sh`` also runs this file first
(``python tests/preflight.py``), which answers in about a second instead of after pytest's start-up.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# The shipped datasets the suite reads (through ``shipped``, ``shipped_subset``, ``tiny_run`` ...).
SHIPPED_DATASETS = ("cornell_tmdb", "imdb_top250", "netflix_movies", "netflix_tv", "poster_genres_av")
CHROMIUM = "/usr/bin/chromium"


def in_ci() -> bool:
    """True in continuous integration (``CI`` set and not 0/false)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def shipped_data_problem() -> str | None:
    """Why the shipped datasets cannot be read (None when every one the suite uses is readable)."""
    from genrefusion.paths import shipped_data_dir

    root = shipped_data_dir(required=False)
    if root is None:
        where = os.environ.get("GENREFUSION_DATA") or "../shared/datasets"
        return f"shipped datasets not found at {where} (set GENREFUSION_DATA to the datasets folder)"
    for name in SHIPPED_DATASETS:
        for rel in ("dataset.json", "titles.jsonl"):
            path = root / name / rel
            try:
                with open(path, encoding="utf-8") as fh:
                    json.loads(fh.read() if rel == "dataset.json" else fh.readline())
            except (OSError, ValueError) as err:
                return f"shipped dataset file {path} unreadable: {type(err).__name__}: {err}".replace("\n", " ")
    return None


def browser_problem() -> str | None:
    """Why the headless-browser tests cannot run (None when Chromium and Playwright are there)."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} not installed (apt-get install chromium; scripts/setup.sh does it as root)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as err:
        return f"playwright not importable ({err}); pip install -e '.[all]'"
    return None


def main() -> int:
    if in_ci() and (why := shipped_data_problem()):
        print(f"error: CI: {why}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's genrefusion
    sys.exit(main())
