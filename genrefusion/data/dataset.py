"""Reader/writer for the canonical dataset layout (``titles.jsonl`` + ``posters/`` + ``dataset.json``).

Reading streams line by line and never opens posters; a malformed line is reported with its line
number and the rest is kept. Writing is atomic: ``titles.jsonl`` appears only when complete.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

from ..errors import DatasetError
from ..io import AtomicStream, atomic_dir, read_json, resolve_inside, write_json
from .images import load_image, save_jpeg
from .records import GenreVocab, Title

TITLES = "titles.jsonl"
META = "dataset.json"
SPLIT = "split.json"


class BadLine(DatasetError):
    """A ``titles.jsonl`` line that is not JSON in UTF-8; the message is the reason alone (no location)."""


def title_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """The non-blank lines of a ``titles.jsonl`` as (line number, raw bytes): what every reader of the file
    starts from (``Dataset.iter_titles``, ``validate_dataset``, batch prediction)."""
    try:
        fh = open(path, "rb")
    except OSError as err:
        raise DatasetError(f"{path}: cannot read ({err.strerror})") from None
    with fh:
        for lineno, raw in enumerate(fh, 1):
            if raw.strip():
                yield lineno, raw


def parse_title(raw: bytes, where: str) -> Title:
    """One line -> ``Title``. Raises ``BadLine`` (not UTF-8, malformed JSON) or ``DatasetError`` naming
    ``where`` (a JSON value that is no valid title)."""
    try:
        d = json.loads(raw.decode("utf-8-sig"))  # utf-8-sig: a BOM (an editor's, on line 1) is no JSON error
    except UnicodeDecodeError:
        raise BadLine("not valid UTF-8") from None
    except json.JSONDecodeError as err:
        raise BadLine(f"malformed JSON ({err.msg})") from None
    return Title.from_dict(d, where)


@dataclass
class Problem:
    """One problem found in a dataset, by title id (or line number when the id is unknown)."""

    id: str
    kind: str
    message: str
    located: bool = False  # ``id`` is where the record is ("row 4", "line 7"): it had no id

    def __str__(self) -> str:
        return f"{self.id}: {self.kind}: {self.message}"

    def named(self) -> str:
        """``id 17`` or ``row 4``: a bare numeric id would read as a count ("dropped 1: ...")."""
        return self.id if self.located else f"id {self.id}"


class Dataset:
    """A canonical dataset folder. Cheap to open; titles are read lazily and streamed."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.exists():
            raise DatasetError(f"{self.root}: dataset folder not found")
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: not a folder (a dataset is a folder with {TITLES})")
        self.titles_path = self.root / TITLES
        if not self.titles_path.is_file():
            raise DatasetError(f"{self.root}: no {TITLES} in the dataset folder")
        meta_path = self.root / META
        self.meta: dict = read_json(meta_path, "dataset.json") if meta_path.exists() else {}
        if not isinstance(self.meta, dict):
            raise DatasetError(f"{meta_path}: expected a JSON object")
        labelled = self.meta.get("genres")
        if labelled is not None and (not isinstance(labelled, list) or not all(isinstance(g, str) for g in labelled)):
            raise DatasetError(f"{meta_path}: 'genres' must be a list of strings")
        self._labelled: list[str] | None = labelled
        self.name: str = str(self.meta.get("name") or self.root.resolve().name)
        self._titles: list[Title] | None = None
        self.problems: list[Problem] = []

    def __repr__(self) -> str:
        return f"Dataset({str(self.root)!r})"

    # -- reading -------------------------------------------------------------------------
    def iter_titles(self, problems: list[Problem] | None = None) -> Iterator[Title]:
        """Stream titles; malformed lines go to ``problems`` (line number + reason) and are skipped."""
        for lineno, raw in title_lines(self.titles_path):
            try:
                t = parse_title(raw, f"line {lineno}")
            except DatasetError as err:  # its message starts with the line, which the problem's id already names
                self._report(problems, f"line {lineno}", "bad-line",
                             str(err).removeprefix(f"line {lineno}").lstrip(": "))
                continue
            yield t

    @staticmethod
    def _report(problems, id_, kind, msg):
        if problems is not None:
            problems.append(Problem(id_, kind, msg))

    def titles(self) -> list[Title]:
        """All titles (records only, no images), cached; line problems land in ``self.problems``."""
        if self._titles is None:
            self.problems = []
            self._titles = list(self.iter_titles(self.problems))
        return self._titles

    def __len__(self) -> int:
        return len(self.titles())

    @property
    def labelled_genres(self) -> list[str]:
        """The genres this dataset labels: ``dataset.json`` genres, else the genres present."""
        if self._labelled is not None:
            return list(self._labelled)
        return sorted({g for t in self.titles() for g in t.genres})

    @property
    def declares_vocab(self) -> bool:
        return self._labelled is not None

    def vocab(self) -> GenreVocab:
        return GenreVocab(self.labelled_genres)

    def poster_path(self, t: Title) -> Path:
        """Absolute poster path for ``t``; refuses paths escaping the folder (DatasetError)."""
        if not t.poster:
            raise DatasetError(f"{t.id}: no poster")
        try:
            return resolve_inside(self.root, t.poster)
        except DatasetError as err:
            raise DatasetError(f"{t.id}: {err}") from None

    def load_poster(self, t: Title):
        """RGB PIL image of ``t``'s poster; BadInput/DatasetError name the title on failure."""
        path = self.poster_path(t)
        return load_image(path, name=f"{t.id} ({t.poster})")

    @property
    def split_path(self) -> Path:
        return self.root / SPLIT


def open_datasets(paths: Iterable[str | os.PathLike]) -> list[Dataset]:
    out = [Dataset(p) for p in paths]
    if not out:
        raise DatasetError("no dataset given")
    return out


class DatasetWriter(AtomicStream):
    """Write a canonical dataset atomically.

    Posters are written as they come (each atomically, under ``posters/``); ``titles.jsonl`` is
    written to a temp file and renamed into place only on a clean ``close()``, after ``dataset.json``,
    so an interrupted import never leaves a dataset that looks complete. Temp files a killed writer left
    in ``root`` are removed.

    ``stage=True`` writes the whole dataset into a temp folder beside ``root`` that replaces ``root`` on
    ``close()`` (the old folder, if any, is moved aside, then deleted), so overwriting keeps the old dataset whole
    until the new one is complete and leaves none of its posters. What the old dataset did not own (files a user
    keeps there, posters its titles did not name) is carried across first.
    """

    def __init__(self, root: str | os.PathLike, name: str | None = None, genres: list[str] | None = None,
                 source: str | None = None, overwrite: bool = False, max_side: int | None = None,
                 stage: bool = False):
        self.root = Path(root)
        if (self.root / TITLES).exists() and not overwrite:
            raise DatasetError(f"{self.root}: already holds a dataset (use --force to overwrite)")
        self._stage = atomic_dir(self.root) if stage else None
        self.dir = self._stage.__enter__() if stage else self.root  # where the files are written
        for stale in [*self.dir.glob(f".{TITLES}.*.tmp"), *self.dir.glob("posters/.*.tmp")]:
            stale.unlink(missing_ok=True)
        (self.dir / "posters").mkdir(parents=True, exist_ok=True)
        self.name = name or self.root.name
        self.genres = genres
        self.source = source
        self.max_side = max_side
        self._ids: set[str] = set()
        self._open(self.dir / TITLES)
        self.count = 0

    def add(self, t: Title, poster=None, poster_file: str | None = None) -> Title:
        """Add a title. ``poster`` (path, bytes or PIL image) is decoded, checked and re-encoded as
        JPEG into ``posters/<id>.jpg``; BadInput propagates so the caller can report and skip.
        ``poster_file`` instead names a poster already saved under the root (e.g. by a worker
        process via ``poster_name`` + ``save_jpeg``); it must exist inside the folder."""
        if t.id in self._ids:
            raise DatasetError(f"{t.id}: duplicate id")
        if poster_file is not None:
            if not resolve_inside(self.dir, poster_file).is_file():
                raise DatasetError(f"{t.id}: poster file {poster_file!r} not found in {self.dir}")
            t = t.replace(poster=poster_file)
        elif poster is not None:
            im = load_image(poster, name=f"{t.id} poster")
            rel = poster_name(t.id)
            save_jpeg(im, self.dir / rel, max_side=self.max_side)
            t = t.replace(poster=rel)
        else:
            t = t.replace(poster=None)
        self._ids.add(t.id)
        self._fh.write(json.dumps(t.to_dict(), ensure_ascii=False) + "\n")
        self.count += 1
        return t

    def close(self, extra_meta: dict | None = None) -> None:
        meta = {"name": self.name}
        if self.genres is not None:
            meta["genres"] = list(self.genres)
        if self.source:
            meta["source"] = self.source
        meta.update(extra_meta or {})
        try:
            write_json(self.dir / META, meta)  # first: titles.jsonl is what marks a dataset complete
            super().close()
            if self._stage is not None:
                self._carry_over()
        except BaseException as err:
            self.abort(err)
            raise
        if self._stage is not None:
            self._stage.__exit__(None, None, None)

    def _carry_over(self) -> None:
        """Link (else copy) into the staged folder what ``root`` holds beyond its dataset: everything but
        ``titles.jsonl``, ``dataset.json``, ``split.json`` (it splits the old titles) and the posters they name."""
        if not self.root.is_dir():
            return
        listed = listed_posters(self.root)
        for src in self.root.iterdir():
            if src.name in (TITLES, META, SPLIT) or src.name.startswith("."):  # dot-files: temp files
                continue
            if src.name == "posters" and src.is_dir():
                for p in src.iterdir():
                    if p.name not in listed and not p.name.startswith("."):
                        _link_or_copy(p, self.dir / "posters" / p.name)
            else:
                _link_or_copy(src, self.dir / src.name)

    def abort(self, exc: BaseException | None = None) -> None:
        super().abort(exc)
        if self._stage is not None:
            exc = exc or RuntimeError("aborted")
            with contextlib.suppress(BaseException):  # the staged folder is removed either way
                self._stage.__exit__(type(exc), exc, None)


def listed_posters(root: Path) -> set[str]:
    """The file names under ``posters/`` that ``root``'s titles.jsonl (if any) names."""
    names: set[str] = set()
    if not (root / TITLES).is_file():
        return names
    for lineno, raw in title_lines(root / TITLES):
        try:
            parts = PurePosixPath(parse_title(raw, f"line {lineno}").poster or "").parts
        except DatasetError:
            continue
        if len(parts) == 2 and parts[0] == "posters" and parts[1] != "..":
            names.add(parts[1])
    return names


def _link_or_copy(src: Path, dest: Path) -> None:
    """``src`` (a file or a folder) at ``dest`` as hard links, copies where linking fails; ``dest`` kept if it
    exists (the new dataset's file wins)."""
    def link(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    if dest.exists() or dest.is_symlink():
        return
    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, dest, symlinks=True, copy_function=link)
    elif src.is_symlink():
        os.symlink(os.readlink(src), dest)
    else:
        link(src, dest)


def poster_name(tid: str) -> str:
    """Relative path the writer uses for a title's poster; distinct ids always get distinct files."""
    safe = _safe_name(tid)
    if safe != tid:  # characters were replaced/stripped: "a/b" and "a_b", "0" and "0." must not share a file
        safe = f"{safe}-{hashlib.sha1(tid.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}"
    return f"posters/{safe}.jpg"


def _safe_name(tid: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in tid).strip(".")
    # no ".." anywhere: harmless inside one name, but tools that scan paths for traversal would refuse it
    keep = re.sub(r"\.{2,}", ".", keep)
    return keep or "title"
