"""Shared test fixtures.

Fixtures (all deterministic; nothing is ever written into the shipped data):

``shipped`` -> Path
    The shipped datasets folder (``genrefusion.paths.shipped_data_dir``, honours ``$GENREFUSION_DATA``).
    Skips the test when it is absent.

``shipped_subset(name, n=8, root=None)`` -> Path
    A *writable* copy of the first ``n`` titles (with their posters) of shipped dataset ``name``, in the
    canonical layout, under ``tmp_path``. Use it when a test needs real posters/plots but a handful only.

``tiny_dataset(root=None, n=24, genres=TINY_GENRES, name="tiny", posters=True, plots=True, seed=0,
               id_prefix="tiny", imdb_offset=0, vocab=None, poster_size=(32, 48))`` -> Path
    Writes a small canonical dataset (``titles.jsonl``, ``dataset.json``, ``posters/*.jpg``) with real
    JPEGs made with PIL. Each title has 1-2 genres; its poster colour and its plot words depend on its
    genres, so a model can learn something from either modality. ``posters``/``plots`` may be a bool or a
    float in [0, 1] (fraction of titles that get one). ``imdb_id`` is ``tt{9000000 + imdb_offset + i}``:
    two tiny datasets with the same ``imdb_offset`` share titles (for grouping tests).
    Every genre appears in at least ``n // len(genres)`` titles.

``make_jpeg(path, size=(32, 48), color=(200, 30, 30))`` -> Path
    Writes one real small JPEG (parent folders created).

``write_raw_dataset(root, records, genres=None, name=None, lines=None)`` -> Path
    Writes ``titles.jsonl`` verbatim (no checks) from dicts, plus ``dataset.json`` when ``genres`` or
    ``name`` is given; ``lines`` (str or bytes) are appended raw, to build malformed datasets.

``messy_csv(root=None)`` -> (csv_path, expected)
    A deliberately messy CSV export plus its image folder (``make_messy_csv``): genre cells with
    mixed separators, case, synonyms, JSON/Python-list cells; a TMDB-style ``/x.jpg`` path, missing,
    corrupt, 0-byte, text-named-.jpg and ``../../etc/passwd`` posters; a duplicate id, a row without
    genre, a row with neither plot nor poster, a row without id. ``expected`` describes the right
    import result: ``genres`` (id -> genres), ``poster`` (ids kept with a poster), ``no_poster``
    (id -> reason kind), ``dropped`` (id -> reason kind).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings as _hypothesis_settings
from PIL import Image
from preflight import browser_problem, in_ci, shipped_data_problem  # tests/ is on sys.path (rootdir conftest)

# Nothing of hypothesis' goes into the repository (its default is ./.hypothesis): no example database (a
# failing example is printed and can be pinned with @example), and its other caches (unicode tables) in the
# temp folder unless HYPOTHESIS_STORAGE_DIRECTORY says otherwise. No per-example deadline either (its default
# 200 ms is a wall-clock limit that a busy 2-core machine trips).
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "genrefusion-hypothesis"))
_hypothesis_settings.register_profile("genrefusion", database=None, deadline=None)
_hypothesis_settings.load_profile("genrefusion")


def pytest_configure(config):
    # CI has the data: a missing or unreadable folder is a broken CI set-up, not a reason to skip ~40 % of
    # the suite and report green. A UsageError stops the run before collection with one "ERROR: ..." line.
    if in_ci() and (why := shipped_data_problem()):
        raise pytest.UsageError(f"CI: {why}")


def pytest_collection_finish(session):
    if in_ci() and any(item.get_closest_marker("browser") for item in session.items):
        if why := browser_problem():
            raise pytest.UsageError(f"CI: browser tests selected but {why}")


TINY_GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi")

# One colour and a few plot words per genre: a learnable (but noisy) signal in each modality.
_GENRE_COLOR = {
    "Action": (220, 40, 30), "Comedy": (250, 220, 40), "Drama": (60, 60, 140), "Horror": (20, 20, 20),
    "Romance": (240, 120, 180), "Sci-Fi": (40, 200, 220), "Thriller": (90, 30, 30), "Western": (180, 120, 60),
    "Animation": (120, 220, 80), "Crime": (80, 80, 80), "Family": (250, 160, 60), "Fantasy": (150, 60, 200),
}
_GENRE_WORDS = {
    "Action": "explosions chase fight mercenary gunfire",
    "Comedy": "hilarious mishaps jokes awkward prank",
    "Drama": "family grief struggle estranged tears",
    "Horror": "haunted demon blood scream cursed",
    "Romance": "love wedding kiss heartbreak couple",
    "Sci-Fi": "spaceship alien robot future planet",
}
_FILLER = "a story about people in a town who face a problem and change over one summer".split()


def load_benchmark(name: str):
    """A script of ``benchmarks/`` imported as a module (the folder is not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_jpeg(path, size=(32, 48), color=(200, 30, 30)) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", tuple(size), tuple(color)).save(path, format="JPEG", quality=90)
    return path


def write_raw_dataset(root, records, genres=None, name=None, lines=None) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "titles.jsonl", "wb") as fh:
        for r in records:
            fh.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8"))
        for line in lines or []:
            fh.write(line if isinstance(line, bytes) else line.encode("utf-8"))
    meta = {}
    if name is not None:
        meta["name"] = name
    if genres is not None:
        meta["genres"] = list(genres)
    if meta:
        (root / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    return root


def _fraction(flag, rng: random.Random) -> bool:
    if isinstance(flag, bool):
        return flag
    return rng.random() < float(flag)


def build_tiny_dataset(root, n=24, genres=TINY_GENRES, name="tiny", posters=True, plots=True, seed=0,
                       id_prefix="tiny", imdb_offset=0, vocab=None, poster_size=(32, 48)) -> Path:
    rng = random.Random(seed)
    genres = list(genres)
    root = Path(root)
    records = []
    for i in range(n):
        first = genres[i % len(genres)]  # round-robin guarantees every genre n // len(genres) times
        gs = [first]
        if rng.random() < 0.4:
            other = rng.choice(genres)
            if other != first:
                gs.append(other)
        tid = f"{id_prefix}-{i:04d}"
        rec = {"id": tid, "imdb_id": f"tt{9000000 + imdb_offset + i}", "title": f"Tiny Title {i}",
               "year": 1980 + i % 40, "kind": "movie", "genres": gs, "plot": None, "poster": None,
               "source": name}
        if _fraction(plots, rng):
            words = []
            for g in gs:
                words += rng.sample(_GENRE_WORDS.get(g, g.lower()).split(), k=min(3, len(_GENRE_WORDS.get(g, g).split())))
            words += rng.sample(_FILLER, k=6)
            rng.shuffle(words)
            rec["plot"] = " ".join(words).capitalize() + "."
        if _fraction(posters, rng):
            base = [_GENRE_COLOR.get(g, (128, 128, 128)) for g in gs]
            color = tuple(min(255, max(0, sum(c[k] for c in base) // len(base) + rng.randint(-15, 15)))
                          for k in range(3))
            rel = f"posters/{tid}.jpg"
            make_jpeg(root / rel, poster_size, color)
            rec["poster"] = rel
        records.append(rec)
    return write_raw_dataset(root, records, genres=vocab if vocab is not None else genres, name=name)


def make_messy_csv(root) -> tuple[Path, dict]:
    root = Path(root)
    img = root / "images"
    make_jpeg(img / "alpha.jpg", (30, 45), (200, 30, 30))
    img.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA", (20, 30), (10, 200, 10, 128)).save(img / "beta.png")  # alpha channel: flattened to RGB
    make_jpeg(img / "gamma.jpg", (30, 45), (30, 30, 200))
    good = (img / "alpha.jpg").read_bytes()
    (img / "corrupt.jpg").write_bytes(good[: len(good) // 2])  # truncated JPEG
    (img / "zero.jpg").write_bytes(b"")
    (img / "text.jpg").write_text("this is not an image\n", encoding="utf-8")
    make_jpeg(img / "eta.jpg")
    make_jpeg(img / "dup.jpg")
    make_jpeg(img / "tt0000013.jpg", (24, 36), (90, 90, 20))
    P = "A plot about somebody doing something."
    rows = [
        ["movie_id", "Title", "Overview", "Genre", "Poster_Path", "Release_Date"],
        ["tt0000001", "Alpha", P, "Action|Comedy", "images/alpha.jpg", "1999-05-01"],
        ["tt0000002", "Beta", P, "action, comedy ,DRAMA", "images/beta.png", "2001"],
        ["tt0000003", "Gamma", P, '["Drama", "Science Fiction"]', "/images/gamma.jpg", ""],
        ["tt0000004", "Delta", P, "sci fi;Film Noir", "images/missing.jpg", "1950"],
        ["tt0000005", "Epsilon", P, " HORROR / thriller ", "images/corrupt.jpg", "1980"],
        ["tt0000006", "Zeta", "   ", "Romance", "images/missing2.jpg", "1970"],
        ["tt0000007", "Eta", P, "", "images/eta.jpg", "1990"],
        ["tt0000008", "Theta", P, "[{'id': 37, 'name': 'Western'}]", "../../etc/passwd", "1960"],
        ["tt0000001", "Alpha again", P, "Drama", "images/dup.jpg", "1999"],
        ["tt0000010", "Iota", P + "\x07", "Sci-Fi|Biopic|sci-fi", "images/text.jpg", "2010"],
        ["tt0000012", "Kappa", P, "documentary", "images/zero.jpg", "2012"],
        ["", "Lambda", P, "Musical ; Romance", "", "2015"],
        ["tt0000013", "Mu", P, "Animation|Family", "images/tt0000013.jpg", "2020"],
    ]
    import csv as _csv
    import io as _io

    buf = _io.StringIO()
    _csv.writer(buf, lineterminator="\n").writerows(rows[:12])
    buf.write("\n")  # a blank line in the middle
    _csv.writer(buf, lineterminator="\n").writerows(rows[12:])
    path = root / "messy export.csv"
    path.write_text(buf.getvalue(), encoding="utf-8")
    expected = {
        "genres": {
            "tt0000001": ["Action", "Comedy"], "tt0000002": ["Action", "Comedy", "Drama"],
            "tt0000003": ["Drama", "Sci-Fi"], "tt0000004": ["Sci-Fi", "Film-Noir"],
            "tt0000005": ["Horror", "Thriller"], "tt0000008": ["Western"],
            "tt0000010": ["Sci-Fi", "Biography"], "tt0000012": ["Documentary"],
            "messyexport-12": ["Musical", "Romance"], "tt0000013": ["Animation", "Family"],
        },
        "poster": {"tt0000001", "tt0000002", "tt0000003", "tt0000013"},
        "no_poster": {"tt0000004": "missing-poster", "tt0000005": "bad-poster", "tt0000008": "unsafe-path",
                      "tt0000010": "bad-poster", "tt0000012": "bad-poster"},
        "dropped": {"tt0000006": "no-input", "tt0000007": "no-genre", "tt0000001": "duplicate-id"},
    }
    return path, expected


@pytest.fixture
def messy_csv(tmp_path):
    def factory(root=None):
        return make_messy_csv(root if root is not None else tmp_path / "messy_src")

    return factory


@pytest.fixture
def shipped() -> Path:
    from genrefusion.paths import shipped_data_dir

    root = shipped_data_dir(required=False)
    if root is None:
        pytest.skip("shipped datasets not found (set GENREFUSION_DATA)")
    return root


@pytest.fixture
def tiny_dataset(tmp_path):
    counter = iter(range(10_000))

    def factory(root=None, **kw) -> Path:
        if root is None:
            root = tmp_path / f"{kw.get('name', 'tiny')}_{next(counter)}"
        return build_tiny_dataset(root, **kw)

    return factory


@pytest.fixture
def shipped_subset(shipped, tmp_path):
    def factory(name: str, n: int = 8, root=None) -> Path:
        src = shipped / name
        if not (src / "titles.jsonl").exists():
            pytest.skip(f"shipped dataset {name} not found")
        dest = Path(root) if root is not None else tmp_path / f"{name}_subset"
        return copy_shipped_titles(src, dest, n)

    return factory


@pytest.fixture(name="make_jpeg")
def make_jpeg_fixture():
    return make_jpeg


@pytest.fixture(name="write_raw_dataset")
def write_raw_dataset_fixture():
    return write_raw_dataset


# -- a tiny trained run, shared by the whole session -------------------------------------------------------
# ``tiny_run`` -> Path: a finished run dir (model bundle, metrics.json, report) trained once per session on
# 48 cornell_tmdb titles (poster + plot) plus 16 poster-only poster_genres_av titles (6 of them Biography,
# which cornell_tmdb does not label), with a few epochs and
# the MiniLM text route. Features go to a session-private cache (GENREFUSION_CACHE is set only while it
# trains). Treat it as read-only: copy it (``shutil.copytree``) before changing anything in it.
TINY_RUN_OVERRIDES = {
    "seed": 0, "text.encoder": "minilm", "data.min_genre_count": 2, "data.dev": 0.2, "data.test": 0.2,
    "train.epochs": 3, "train.fused_epochs": 2, "train.patience": 2, "train.batch_size": 16,
    "train.hidden": [32, 16], "image.num_workers": 0,
    "train.crossfit": 0,  # one train/dev run: the stages and files most tests read (tests/test_crossfit.py: folds)
}


def copy_shipped_titles(src: Path, dest: Path, n: int, skip: int = 0, with_genre: tuple[str, int] | None = None) -> Path:
    """Copy titles ``skip .. skip+n`` of a shipped dataset (and their posters) into ``dest``; with
    ``with_genre=(genre, k)`` the last ``k`` of the ``n`` are the next titles labelled ``genre``."""
    (dest / "posters").mkdir(parents=True, exist_ok=True)
    lines = []
    genre, k_genre = with_genre or (None, 0)
    with open(src / "titles.jsonl", encoding="utf-8") as fh:
        for k, line in enumerate(fh):
            if k < skip:
                continue
            if len(lines) >= n:
                break
            rec = json.loads(line)
            if len(lines) >= n - k_genre and genre not in rec.get("genres", []):
                continue
            if rec.get("poster"):
                shutil.copyfile(src / rec["poster"], dest / rec["poster"])
            lines.append(line if line.endswith("\n") else line + "\n")
    (dest / "titles.jsonl").write_text("".join(lines), encoding="utf-8")
    shutil.copyfile(src / "dataset.json", dest / "dataset.json")
    return dest


@pytest.fixture(scope="session")
def tiny_run_data(tmp_path_factory) -> list[Path]:
    from genrefusion.paths import shipped_data_dir

    root = shipped_data_dir(required=False)
    if root is None or not (root / "cornell_tmdb" / "titles.jsonl").exists():
        pytest.skip("shipped datasets not found (set GENREFUSION_DATA)")
    base = tmp_path_factory.mktemp("tiny_run_data")
    out = [copy_shipped_titles(root / "cornell_tmdb", base / "cornell_tmdb", 48)]
    if (root / "poster_genres_av" / "titles.jsonl").exists():
        # 6 Biography titles: a genre cornell_tmdb does not label, so masking is exercised
        out.append(copy_shipped_titles(root / "poster_genres_av", base / "poster_genres_av", 16,
                                       with_genre=("Biography", 6)))
    return out


@pytest.fixture(scope="session")
def tiny_run_cache(tmp_path_factory) -> Path:
    """The feature cache ``tiny_run`` trained with (warm once ``tiny_run`` has run)."""
    return tmp_path_factory.mktemp("tiny_run_cache")


@pytest.fixture(scope="session")
def tiny_run(tiny_run_data, tiny_run_cache, tmp_path_factory) -> Path:
    from genrefusion.config import load_config
    from genrefusion.train import main

    run = tmp_path_factory.mktemp("tiny_run") / "run"
    cache = tiny_run_cache
    cfg = load_config(overrides=TINY_RUN_OVERRIDES)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENREFUSION_CACHE", str(cache))
        main(tiny_run_data, run, cfg, progress=False, device="cpu")
    return run
