"""Dataset validation: counts, and every problem by title id, so bad items can be skipped.

``validate_dataset(ds)`` parses the lines of ``titles.jsonl`` itself (``title_lines``, not
``Dataset.iter_titles``) so that a non-UTF-8 plot is reported against its title id rather than as an anonymous bad line. Posters are
checked in three steps: the path must stay inside the folder (``resolve_inside``: escaping paths are
refused and never opened), the file must exist, and (unless ``decode=False``) it must fully decode
through ``load_image`` -- the same loader training and serving use -- in a process pool over chunks,
because decoding is the slow part (about 1-2 ms per poster).

A title is *usable* when it has at least one genre in the vocabulary and at least one usable input
(poster or plot). Problems on one field only drop that field (``poster_ok`` / ``plot_ok``); unknown
genres are dropped from the label. Every copy of a duplicated id is skipped: which one is right is
ambiguous.
"""
from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BadInput, DatasetError
from ..io import resolve_inside
from .dataset import Dataset, Problem, title_lines
from .images import MAX_BYTES, MAX_PIXELS, load_image
from .records import Title

KINDS = ("bad-line", "duplicate-id", "unsafe-path", "missing-poster", "bad-poster", "empty-plot", "bad-plot",
         "unknown-genre", "no-genre", "no-input")

# C0 controls other than tab/newline/CR, DEL, C1 controls: never in a real plot, a sign of binary junk.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_INLINE_DECODE = 64  # below this many posters a process pool costs more than it saves


@dataclass
class ValidationReport:
    dataset: str
    root: str
    vocab: list[str]
    declares_vocab: bool
    titles: int = 0
    with_poster: int = 0
    with_plot: int = 0
    with_both: int = 0
    usable_titles: int = 0
    per_genre: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    skipped: set[str] = field(default_factory=set)
    bad_poster_ids: set[str] = field(default_factory=set)
    bad_plot_ids: set[str] = field(default_factory=set)
    decoded: bool = True
    seconds: float = 0.0

    # -- per-title verdicts used by training ---------------------------------------------------
    @staticmethod
    def _id(t) -> str:
        return t.id if isinstance(t, Title) else str(t)

    def usable(self, t: Title | str) -> bool:
        """False for titles to skip: duplicate id, no known genre, no usable poster nor plot, bad line."""
        return self._id(t) not in self.skipped

    def poster_ok(self, t: Title) -> bool:
        return bool(t.poster) and t.id not in self.bad_poster_ids and self.usable(t)

    def plot_ok(self, t: Title) -> bool:
        return bool(t.plot and t.plot.strip()) and t.id not in self.bad_plot_ids and self.usable(t)

    @property
    def usable_flag(self) -> bool:
        """The dataset can be used at all (at least one usable title)."""
        return self.usable_titles > 0

    def by_kind(self) -> dict[str, int]:
        return dict(Counter(p.kind for p in self.problems))

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset, "root": self.root, "vocab": self.vocab, "declares_vocab": self.declares_vocab,
            "counts": {"titles": self.titles, "with_poster": self.with_poster, "with_plot": self.with_plot,
                       "with_both": self.with_both, "usable": self.usable_titles},
            "per_genre": self.per_genre, "problems_by_kind": self.by_kind(),
            "problems": [{"id": p.id, "kind": p.kind, "message": p.message} for p in self.problems],
            "skipped": sorted(self.skipped), "decoded": self.decoded, "seconds": round(self.seconds, 3),
        }

    def summary_lines(self) -> list[str]:
        lines = [
            f"dataset {self.dataset} ({self.root})",
            f"titles: {self.titles}  with poster: {self.with_poster}  with plot: {self.with_plot}  "
            f"with both: {self.with_both}  usable: {self.usable_titles}",
            f"genres ({len(self.vocab)} {'labelled' if self.declares_vocab else 'present'}):",
        ]
        width = max((len(g) for g in self.per_genre), default=5)
        for g, n in sorted(self.per_genre.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {g:<{width}}  {n}")
        kinds = self.by_kind()
        lines.append(f"problems: {len(self.problems)}" + (
            " (" + ", ".join(f"{k} {kinds[k]}" for k in KINDS if k in kinds) + ")" if kinds else ""))
        lines.append(f"skipped titles: {len(self.skipped)}")
        lines.append(f"checked in {self.seconds:.1f}s ({'posters decoded' if self.decoded else 'posters not decoded'})")
        return lines


def _plot_problem(plot) -> tuple[str, str] | None:
    if plot is None:
        return None
    if not plot.strip():
        return "empty-plot", "plot is empty or whitespace"
    if _SURROGATE.search(plot):
        return "bad-plot", "plot is not valid UTF-8"
    m = _CONTROL.search(plot)
    if m:
        return "bad-plot", f"plot contains control character U+{ord(m.group()):04X}"
    return None


def _parse_line(raw: bytes, lineno: int) -> tuple[Title | None, Problem | None]:
    """Parse one line -> (title, problem). Invalid UTF-8 is decoded with surrogate
    escapes so the record (and its id) survives; the plot is then flagged by ``_plot_problem``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="surrogateescape")
    try:
        d = json.loads(text)
    except json.JSONDecodeError as err:
        return None, Problem(f"line {lineno}", "bad-line", f"malformed JSON ({err.msg})")
    try:
        t = Title.from_dict(d, f"line {lineno}")
    except DatasetError as err:  # its message starts with the line, which the problem's id already names
        return None, Problem(f"line {lineno}", "bad-line", str(err).removeprefix(f"line {lineno}").lstrip(": "))
    # bad bytes anywhere but the plot make the record itself untrustworthy
    for name in ("id", "title", "imdb_id", "poster", "source"):
        v = getattr(t, name)
        if isinstance(v, str) and _SURROGATE.search(v):
            return None, Problem(f"line {lineno}", "bad-line", f"field '{name}' is not valid UTF-8")
    if any(_SURROGATE.search(g) for g in t.genres):
        return None, Problem(f"line {lineno}", "bad-line", "field 'genres' is not valid UTF-8")
    return t, None


def _check_chunk(items: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """Worker: fully decode each poster; return (id, reason) for the ones that fail."""
    bad = []
    for tid, path, rel in items:
        try:
            load_image(path, name=rel)
        except BadInput as err:
            bad.append((tid, str(err)))
    return bad


def _check_header(tid: str, path: Path, rel: str) -> str | None:
    """Cheap check for ``decode=False``: size limits and a recognised image header."""
    from PIL import Image, UnidentifiedImageError

    try:
        size = path.stat().st_size
        if not path.is_file():
            return f"{rel}: not a regular file"
        if size == 0:
            return f"{rel}: empty file (0 bytes)"
        if size > MAX_BYTES:
            return f"{rel}: file too large ({size / 1e6:.1f} MB > {MAX_BYTES / 1e6:.0f} MB)"
        with Image.open(path) as im:
            w, h = im.size  # header only
        if w * h > MAX_PIXELS:  # the same pixel limit load_image applies, without decoding
            return f"{rel}: image too large ({w}x{h} = {w * h / 1e6:.0f} MP > {MAX_PIXELS / 1e6:.0f} MP)"
    except Image.DecompressionBombError:
        return f"{rel}: image too large (decompression bomb refused)"
    except UnidentifiedImageError:
        return f"{rel}: not an image (unrecognised format)"
    except (OSError, SyntaxError, ValueError) as err:
        return f"{rel}: corrupt image header ({err})"
    return None


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def decode_posters(items: list[tuple[str, str, str]], workers: int | None = None) -> list[tuple[str, str]]:
    """Fully decode posters ``(id, abs path, display name)``; returns ``(id, reason)`` for failures.

    Chunks go to a process pool (decoding is CPU-bound; the GIL would serialise threads). Several
    chunks per worker keep the cores busy when some posters are much larger than others.
    """
    workers = workers or default_workers()
    if workers <= 1 or len(items) < _INLINE_DECODE:
        return _check_chunk(items)
    n_chunks = min(len(items), workers * 8)
    size = -(-len(items) // n_chunks)
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    bad: list[tuple[str, str]] = []
    with ProcessPoolExecutor(max_workers=workers) as ex:
        for part in ex.map(_check_chunk, chunks):
            bad.extend(part)
    return bad


def validate_dataset(ds: Dataset | str | os.PathLike, decode: bool = True, workers: int | None = None) -> ValidationReport:
    """Check every title of ``ds``; see the module docstring for the rules.

    Raises DatasetError only when the folder itself is unusable (missing, no ``titles.jsonl``,
    bad ``dataset.json``); everything item-level goes into the report.
    """
    if not isinstance(ds, Dataset):
        ds = Dataset(ds)
    t0 = time.perf_counter()
    problems: list[Problem] = []
    records: list[tuple[int, Title]] = []
    for lineno, raw in title_lines(ds.titles_path):
        t, prob = _parse_line(raw, lineno)
        if prob is not None:
            problems.append(prob)
        else:
            records.append((lineno, t))

    declared = ds.declares_vocab
    vocab = ds.labelled_genres if declared else sorted({g for _, t in records for g in t.genres})
    vocab_set = set(vocab)
    rep = ValidationReport(dataset=ds.name, root=str(ds.root), vocab=vocab, declares_vocab=declared, decoded=decode)

    # duplicates: every copy is skipped, each later copy reported with its line number
    first_line: dict[str, int] = {}
    for lineno, t in records:
        if t.id in first_line:
            problems.append(Problem(t.id, "duplicate-id", f"id also on line {first_line[t.id]} (line {lineno})"))
            rep.skipped.add(t.id)
        else:
            first_line[t.id] = lineno

    to_decode: list[tuple[str, str, str]] = []
    for lineno, t in records:
        _check_title(ds, t, vocab_set, decode, rep, problems, to_decode)
    for tid, reason in decode_posters(to_decode, workers) if to_decode else []:
        problems.append(Problem(tid, "bad-poster", reason))
        rep.bad_poster_ids.add(tid)

    _count(records, vocab, vocab_set, rep, problems)
    # problems in file order: bad lines by line number first, then by the title's position
    order = {t.id: i for i, (_, t) in enumerate(records)}
    rep.problems = sorted(problems, key=lambda p: (0, int(p.id.split()[-1])) if p.kind == "bad-line"
                          else (1, order.get(p.id, len(order))))
    rep.seconds = time.perf_counter() - t0
    return rep


def _check_title(ds: Dataset, t: Title, vocab_set: set[str], decode: bool, rep: ValidationReport,
                 problems: list[Problem], to_decode: list[tuple[str, str, str]]) -> None:
    """One title's labels, plot and poster path (posters to decode go to ``to_decode``)."""
    if not t.genres:
        problems.append(Problem(t.id, "no-genre", "title has no genre"))
    unknown = [g for g in t.genres if g not in vocab_set]
    if unknown:
        problems.append(Problem(t.id, "unknown-genre",
                                f"genre(s) {', '.join(map(repr, unknown))} not in the dataset vocabulary"))
    pp = _plot_problem(t.plot)
    if pp:
        problems.append(Problem(t.id, *pp))
        rep.bad_plot_ids.add(t.id)
    if t.poster is None:
        return
    # poster: path safety first, the file is never opened when the path is refused
    try:
        path = resolve_inside(ds.root, t.poster)
    except DatasetError as err:
        problems.append(Problem(t.id, "unsafe-path", f"poster {err} (not opened)"))
        rep.bad_poster_ids.add(t.id)
        return
    if not os.path.lexists(path):
        problems.append(Problem(t.id, "missing-poster", f"{t.poster}: file not found"))
        rep.bad_poster_ids.add(t.id)
    elif decode:
        to_decode.append((t.id, str(path), t.poster))
    else:
        reason = _check_header(t.id, path, t.poster)
        if reason:
            problems.append(Problem(t.id, "bad-poster", reason))
            rep.bad_poster_ids.add(t.id)


def _count(records, vocab: list[str], vocab_set: set[str], rep: ValidationReport, problems: list[Problem]) -> None:
    """Inputs per title, the titles to skip (no known genre, no usable input) and genre counts of the rest."""
    genre_counts: Counter = Counter()
    for lineno, t in records:
        has_poster = bool(t.poster) and t.id not in rep.bad_poster_ids
        has_plot = t.plot is not None and t.id not in rep.bad_plot_ids
        rep.titles += 1
        rep.with_poster += has_poster
        rep.with_plot += has_plot
        rep.with_both += has_poster and has_plot
        known = [g for g in t.genres if g in vocab_set]
        if t.genres and not known:
            rep.skipped.add(t.id)  # already reported as unknown-genre
        elif not t.genres:
            rep.skipped.add(t.id)
        if not has_poster and not has_plot:
            if t.poster is None and t.plot is None:
                problems.append(Problem(t.id, "no-input", "title has neither poster nor plot"))
            rep.skipped.add(t.id)
        if t.id not in rep.skipped:
            rep.usable_titles += 1
            genre_counts.update(known)
    rep.per_genre = {g: genre_counts.get(g, 0) for g in vocab}
