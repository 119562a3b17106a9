"""Batch prediction: input readers, streaming block-wise inference, CSV/JSONL writers, shards.

Inputs (``open_input``): a canonical dataset folder (``titles.jsonl`` + posters, paths confined to
the folder), a CSV/TSV (columns guessed or named exactly as for ``genrefusion import csv``; genres not
needed), or any JSON-lines file (fields guessed or mapped as for ``import jsonl``). Each record
becomes a ``BatchItem`` with its 0-based ``index`` in the input; a record that cannot be used
(malformed line, missing/unsafe poster file and no plot) is still an item, carrying its ``error``. A CSV/JSONL
record whose poster cell cannot be used (a URL, a missing file, an unsafe path), or a dataset title whose poster file
is missing, but which has a plot is predicted from the plot, with the poster problem in its ``warning``.

Outputs (``open_output``, by extension): ``.jsonl``/``.ndjson`` or ``.csv``/``.tsv``, one row per
input record in input order, written through a temp file renamed into place at the end (an
interrupted run leaves nothing behind the final name). A failed title is a row with ``error`` set; a title
predicted without its poster has ``warning`` set.

Sharding (``--shard K/N``): the input is cut into consecutive blocks of ``block_size`` records
(``--batch-size``); block ``j`` (0-based) belongs to shard ``(j mod N) + 1``. Because an unsharded
run infers exactly the same blocks, each title's scores are computed from bit-identical batches
whichever way the job is split, so ``genrefusion merge`` of the N shard files reproduces the
unsharded output byte for byte (same machine, same batch size). Each shard writes a manifest
``OUT.shard.json`` that ``merge`` uses to check that the shards are complete and consistent.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

# decide and check_overrides moved to decision.py; re-exported here, their old home
from .decision import check_overrides, decide, per_genre, used_inputs  # noqa: F401
from .errors import BadInput, ConfigError, DatasetError, GenreFusionError
from .io import AtomicStream

SCORE_DECIMALS = 6
MANIFEST_SUFFIX = ".shard.json"
JSONL_EXTS = (".jsonl", ".ndjson")
CSV_EXTS = (".csv", ".tsv")


@dataclass
class BatchItem:
    index: int
    id: str
    poster: Path | None = None
    plot: str | None = None
    error: str | None = None
    warning: str | None = None  # predicted, but an input was unusable (its poster cell)


# -- shards -----------------------------------------------------------------------------------
def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``"K/N"`` -> (K, N) with 1 <= K <= N; None -> None."""
    if spec is None:
        return None
    try:
        k, n = (int(x) for x in str(spec).split("/"))
    except ValueError:
        raise ConfigError(f"--shard: expected K/N (e.g. 2/8), got {spec!r}") from None
    if n < 1 or not 1 <= k <= n:
        raise ConfigError(f"--shard: need 1 <= K <= N, got {spec!r}")
    return k, n


def block_in_shard(block: int, shard: tuple[int, int] | None) -> bool:
    return shard is None or block % shard[1] == shard[0] - 1


def manifest_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + MANIFEST_SUFFIX)


def file_digest(path: Path) -> str:
    """sha1 of a file (16 hex): ties shard outputs to the exact input they were computed from."""
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


# -- inputs -----------------------------------------------------------------------------------
class BatchInput:
    """An input file/folder: ``kind``, ``count()`` (records, for the progress bar) and iteration."""

    def __init__(self, path: Path, kind: str, records: Callable[[], Iterator[BatchItem]], digest_of: Path,
                 info: dict | None = None):
        self.path, self.kind, self._records, self.digest_of, self.info = path, kind, records, digest_of, info or {}

    def __iter__(self) -> Iterator[BatchItem]:
        return self._records()

    def count(self) -> int:
        return sum(1 for _ in self._records())

    def digest(self) -> str:
        return file_digest(self.digest_of)


def open_input(path: str | os.PathLike, *, columns: dict[str, str] | None = None, sep: str | None = None,
               encoding: str = "utf-8-sig", field_map: dict[str, str] | None = None,
               images: str | os.PathLike | None = None) -> BatchInput:
    """Open a batch input by what it is: a dataset folder, a ``.csv``/``.tsv`` or a JSON-lines file."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: batch input not found")
    if path.is_dir():
        from .data.dataset import TITLES

        if not (path / TITLES).is_file():
            raise DatasetError(f"{path}: not a dataset folder (no {TITLES}); give a dataset folder, a CSV or a JSONL file")
        return BatchInput(path, "dataset", lambda: _dataset_items(path), path / TITLES)
    if path.suffix.lower() in CSV_EXTS:
        from .data import importers as imp

        # parse once up front so a bad header / unknown column fails before any work
        _, info = imp.read_csv(path, images=images, columns=columns, sep=sep, encoding=encoding,
                               genre_columns="none", require_genres=False)

        def records():
            raws, _ = imp.read_csv(path, images=images, columns=columns, sep=sep, encoding=encoding,
                                   genre_columns="none", require_genres=False)
            return _raw_items(raws)

        return BatchInput(path, "csv", records, path, info)
    if path.suffix.lower() in JSONL_EXTS + (".json",):
        from .data import importers as imp

        return BatchInput(path, "jsonl", lambda: _raw_items(imp.read_jsonl(path, field_map=field_map, images=images)),
                          path)
    raise BadInput(f"{path}: unknown batch input type (expected a dataset folder, .csv/.tsv or .jsonl)")


def _dataset_items(root: Path) -> Iterator[BatchItem]:
    """A canonical dataset's titles by line, keeping each title's own id; a malformed line or a
    poster path escaping the folder is an item with an error, not a skipped line."""
    from .data.dataset import TITLES, BadLine, Dataset, parse_title, title_lines

    ds = Dataset(root)
    for index, (lineno, raw) in enumerate(title_lines(root / TITLES)):
        where = f"line {lineno}"
        item = BatchItem(index, where)
        try:
            t = parse_title(raw, where)
            item.id, item.plot = t.id, t.plot
            item.poster = ds.poster_path(t) if t.poster else None
            if item.poster is not None and not item.poster.is_file() and t.plot and t.plot.strip():
                # as for CSV/JSONL (and as evaluate reads it): predicted from the plot, the missing poster said
                item.poster, item.warning = None, f"{t.id}: poster {t.poster}: file not found"
        except BadLine as err:
            item.error = f"{TITLES} {where}: {err}"
        except DatasetError as err:
            item.error = str(err)
        yield item


def _raw_items(raws) -> Iterator[BatchItem]:
    """Importer records (``RawTitle``) -> items. A poster the importer could not resolve (missing
    file, unsafe path, URL) is the title's ``warning`` when it has a plot to predict from (the row says so:
    nothing is hidden), else its ``error``."""
    from .data.importers import clean_text

    for index, r in enumerate(raws):
        # the id as the input wrote it: the importer's canonical id (an IMDb id found in it) would not join back
        item = BatchItem(index, r.source_id or r.id or r.where)
        note = r.poster_note and f"{r.poster_note.id}: {r.poster_note.message}"
        if r.drop is not None:
            item.error = f"{r.drop.id}: {r.drop.message}"
        elif r.plot is not None and not isinstance(r.plot, (str, list)):
            item.error = f"{item.id}: plot must be text, got {type(r.plot).__name__}"
        elif note and clean_text(r.plot) is None:
            item.error = note
        else:
            item.poster, item.plot, item.warning = r.poster, clean_text(r.plot), note
        yield item


# -- inference over blocks --------------------------------------------------------------------------
@dataclass
class Prepared:
    item: BatchItem
    title: dict | None  # {"poster": PIL image | None, "plot": str | None} ready for predict_proba
    used: list[str]


def prepare(item: BatchItem, clf=None) -> Prepared:
    """Decode the poster (size limits, corrupt files -> the item's error), preprocess it for ``clf``'s image
    backbone when given, and check there is input."""
    from .data.images import load_image

    if item.error is not None:
        return Prepared(item, None, [])
    poster = None
    if item.poster is not None:
        try:
            poster = load_image(item.poster, name=f"{item.id}: poster {item.poster.name}")
            if clf is not None:
                x = clf.preprocess_poster(poster)
                poster = poster if x is None else x
        except GenreFusionError as err:
            item.error = str(err)
            return Prepared(item, None, [])
        except Exception as err:  # noqa: BLE001 - a decoder surprise fails this title, never the batch
            if os.environ.get("GENREFUSION_DEBUG"):
                raise
            item.error = f"{item.id}: poster {item.poster.name}: cannot preprocess ({type(err).__name__})"
            return Prepared(item, None, [])
    plot = item.plot if isinstance(item.plot, str) and item.plot.strip() else None
    if poster is None and plot is None:
        item.error = f"{item.id}: neither a poster nor a plot to predict from"
        return Prepared(item, None, [])
    return Prepared(item, {"poster": poster, "plot": plot}, used_inputs(poster, plot))


def _one_line(err: BaseException) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0]


def infer_block(clf, block: list[Prepared]) -> list[np.ndarray | None]:
    """Scores for each prepared item (None for failed ones). One ``predict_proba`` call for the
    whole block; if it fails, each title is retried alone so only the bad one fails."""
    todo = [p for p in block if p.title is not None]
    out: dict[int, np.ndarray] = {}
    if todo:
        try:
            probs = np.asarray(clf.predict_proba([p.title for p in todo]))
            out = {p.item.index: probs[i] for i, p in enumerate(todo)}
        except Exception:  # noqa: BLE001 - isolate the culprit below
            if os.environ.get("GENREFUSION_DEBUG"):
                raise
            for p in todo:
                try:
                    out[p.item.index] = np.asarray(clf.predict_proba([p.title]))[0]
                except GenreFusionError as err:
                    p.item.error = _one_line(err)
                except Exception as err:  # noqa: BLE001 - the batch never aborts on one title
                    if os.environ.get("GENREFUSION_DEBUG"):
                        raise
                    p.item.error = f"{p.item.id}: prediction failed ({type(err).__name__}: {_one_line(err)})"
    return [out.get(p.item.index) for p in block]


def iter_blocks(items: Iterable[BatchItem], size: int) -> Iterator[tuple[int, list[BatchItem]]]:
    block: list[BatchItem] = []
    for it in items:
        block.append(it)
        if len(block) == size:
            yield it.index // size, block
            block = []
    if block:
        yield block[0].index // size, block


@dataclass
class BatchStats:
    rows: int = 0
    ok: int = 0
    errors: int = 0
    warnings: int = 0  # predicted rows with a warning
    seen: int = 0  # input records read (all shards)


def run_batch(clf, inp: Iterable[BatchItem], writer, *, batch_size: int = 32, shard=None, top_k=None,
              threshold=None, progress=None, on_error=None) -> BatchStats:
    """Stream ``inp`` through ``clf`` block by block into ``writer``. Posters of the next block are decoded
    and preprocessed in a background thread while the current block is inferred (PIL and numpy release the GIL)."""
    genres = list(clf.genres_)
    stats = BatchStats()

    def blocks():
        for j, block in iter_blocks(inp, batch_size):
            stats.seen += len(block)
            if block_in_shard(j, shard):
                yield block
            elif progress is not None:
                progress(len(block), skipped=True)

    # two decode threads: the first block (nothing to overlap with yet) is ready twice as fast; later
    # blocks are decoded while the backbone runs
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode") as pool:
        def submit(block):
            return None if block is None else [pool.submit(prepare, item, clf) for item in block]

        it = blocks()
        futs = submit(next(it, None))
        while futs is not None:
            block = [f.result() for f in futs]
            futs = submit(next(it, None))
            scores = infer_block(clf, block)
            for p, s in zip(block, scores):
                if s is None:
                    row = {"index": p.item.index, "id": p.item.id, "genres": None, "scores": None, "used": None,
                           "threshold_set": None, "error": p.item.error or f"{p.item.id}: no prediction",
                           "warning": p.item.warning}
                    stats.errors += 1
                    if on_error is not None:
                        on_error(row["error"])
                else:
                    s = np.asarray(s, np.float64)
                    thresholds, set_name = clf.thresholds_for(p.used)  # the set of this title's inputs
                    row = {"index": p.item.index, "id": p.item.id,
                           "genres": decide(s, genres, thresholds, top_k, threshold),
                           "scores": per_genre(genres, s, SCORE_DECIMALS),
                           "used": p.used, "threshold_set": set_name, "error": None, "warning": p.item.warning}
                    stats.ok += 1
                    stats.warnings += p.item.warning is not None
                writer.write(row)
                stats.rows += 1
            if progress is not None:
                progress(len(block))
    return stats


# -- outputs ----------------------------------------------------------------------------------------
def output_format(path: str | os.PathLike) -> str:
    ext = Path(path).suffix.lower()
    if ext in JSONL_EXTS:
        return "jsonl"
    if ext in CSV_EXTS:
        return "csv"
    raise BadInput(f"{path}: unknown output type {ext or '(no extension)'!r}; use .jsonl or .csv")


def csv_header(genres: Sequence[str]) -> list[str]:
    return ["index", "id", "genres", "used", "threshold_set", "error", "warning"] + [f"score_{g}" for g in genres]


class BatchWriter(AtomicStream):
    """Rows -> ``path`` as JSONL or CSV (by extension), via a temp file renamed on ``close``."""

    def __init__(self, path: str | os.PathLike, genres: Sequence[str]):
        from .paths import check_writable_target

        self.path = check_writable_target(path, "batch predictions")
        self.format = output_format(self.path)
        self.genres = list(genres)
        self._open(self.path)
        if self.format == "csv":
            delim = "\t" if self.path.suffix.lower() == ".tsv" else ","
            self._csv = csv.writer(self._fh, delimiter=delim, lineterminator="\n")
            self._csv.writerow(csv_header(self.genres))

    def write(self, row: dict) -> None:
        if self.format == "jsonl":
            self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            return
        ok = row["error"] is None
        self._csv.writerow(
            [row["index"], row["id"], "|".join(row["genres"]) if ok else "", "|".join(row["used"]) if ok else "",
             row.get("threshold_set") or "", row["error"] or "", row.get("warning") or ""]
            + ([f"{row['scores'][g]:.{SCORE_DECIMALS}f}" for g in self.genres] if ok else [""] * len(self.genres)))




# -- merging shards -----------------------------------------------------------------------------------
def _read_rows(path: Path, fmt: str) -> tuple[str | None, list[tuple[int, str]]]:
    """(CSV header line or None, [(index, row text)]) of one shard output. Rows come back exactly as
    ``BatchWriter`` wrote them: JSONL lines verbatim, CSV records re-serialised with the same dialect
    (the csv module round-trips its own output, quoted newlines included)."""
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise BadInput(f"{path}: shard output not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise BadInput(f"{path}: cannot read ({err})") from None
    rows: list[tuple[int, str]] = []
    if fmt == "csv":
        header, nl, body = text.partition("\n")
        if not nl:
            raise BadInput(f"{path}: empty shard output (no CSV header)")
        delim = "\t" if path.suffix.lower() == ".tsv" else ","
        reader = csv.reader(io.StringIO(body, newline=""), delimiter=delim)
        try:
            for rec in reader:
                buf = io.StringIO()
                csv.writer(buf, delimiter=delim, lineterminator="\n").writerow(rec)
                rows.append((int(rec[0]), buf.getvalue()))
        except (ValueError, IndexError, csv.Error):
            raise BadInput(f"{path}: line {reader.line_num + 1}: not a predict output row") from None
        return header + nl, rows
    # split on "\n" only: str.splitlines would also cut at U+2028 etc. inside JSON strings
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            idx = json.loads(line)["index"]
            if not isinstance(idx, int) or isinstance(idx, bool):
                raise TypeError
        except (json.JSONDecodeError, KeyError, TypeError):
            raise BadInput(f"{path}: line {n}: not a predict output row") from None
        rows.append((idx, line + "\n"))
    return None, rows


def merge_shards(paths: Sequence[str | os.PathLike], out: str | os.PathLike) -> dict:
    """Check the shard manifests (same input, model, batch size and N; every shard once) and write
    the rows in input order to ``out``: byte-identical to the unsharded output."""
    from .io import atomic_open, read_json
    from .paths import check_writable_target

    if not paths:
        raise BadInput("merge: no shard outputs given")
    out = check_writable_target(out, "merged predictions")
    fmt = output_format(out)
    manifests = []
    for p in map(Path, paths):
        if Path(os.path.realpath(p)) == Path(os.path.realpath(out)):
            raise BadInput(f"{out}: the merged output would overwrite shard output {p}")
        if output_format(p) != fmt or p.suffix.lower() != Path(out).suffix.lower():
            raise BadInput(f"{p}: shard format differs from the output {out} ({p.suffix} vs {Path(out).suffix})")
        mp = manifest_path(p)
        if not mp.is_file():
            raise BadInput(f"{p}: shard manifest {mp.name} not found (written beside OUT by predict --shard)")
        m = read_json(mp, "shard manifest")
        if not isinstance(m, dict) or not {"shard", "of", "block_size", "input_digest", "input_rows", "rows"} <= set(m):
            raise BadInput(f"{mp}: not a shard manifest")
        manifests.append((p, m))
    first = manifests[0][1]
    for p, m in manifests[1:]:
        for key in ("of", "block_size", "input_digest", "input_rows", "model", "top_k", "threshold"):
            if m.get(key) != first.get(key):
                raise BadInput(f"{p}: {key} {m.get(key)!r} differs from {manifests[0][0]}'s {first.get(key)!r}; "
                               "shards must come from one input, model and batch size")
    n = first["of"]
    ks = sorted(m["shard"] for _, m in manifests)
    dup = sorted({k for k in ks if ks.count(k) > 1})
    if dup:
        raise BadInput(f"merge: shard {dup[0]}/{n} given more than once")
    missing = [k for k in range(1, n + 1) if k not in ks]
    if missing:
        raise BadInput(f"merge: missing shard(s) {', '.join(f'{k}/{n}' for k in missing)}")

    header = None
    rows: list[tuple[int, str]] = []
    for p, m in manifests:
        h, r = _read_rows(p, fmt)
        if len(r) != m["rows"]:
            raise BadInput(f"{p}: holds {len(r)} rows but its manifest says {m['rows']} (truncated or edited?)")
        if header is not None and h != header:
            raise BadInput(f"{p}: CSV header differs from the other shards (another model?)")
        header = h
        rows += r
    rows.sort(key=lambda x: x[0])
    total = first["input_rows"]
    idx = [i for i, _ in rows]
    if idx != list(range(total)):
        seen = set(idx)
        gap = next((i for i in range(total) if i not in seen), None)
        raise BadInput(f"merge: rows do not cover the input's {total} records exactly"
                       + (f" (index {gap} missing)" if gap is not None else " (duplicate or extra rows)"))
    with atomic_open(out, "w", encoding="utf-8") as fh:
        if header is not None:
            fh.write(header)
        for _, line in rows:
            fh.write(line)
    return {"rows": len(rows), "shards": n, "errors": sum(m.get("errors", 0) for _, m in manifests)}


def progress_bar(total: int | None, desc: str, enabled: bool):
    """tqdm on stderr; the callable returned advances it (skipped records count as done)."""
    from .progress import progress_bar as _bar

    bar = _bar(total, desc, "title", enabled)

    def advance(n: int, skipped: bool = False) -> None:
        bar.update(n)

    advance.close = bar.close  # type: ignore[attr-defined]
    return advance
