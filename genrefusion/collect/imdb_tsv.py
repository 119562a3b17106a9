"""Join IMDb's non-commercial ``title.basics.tsv.gz`` to titles: authoritative genres, kind and year.

The file (https://datasets.imdbws.com/, ~1 GB unzipped) is streamed line by line through gzip and
only the wanted tt-ids are kept, so memory stays at the size of the id set. The reading stops as
soon as every wanted id has been seen.
"""
from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

from ..data.dataset import Dataset
from ..data.importers import parse_imdb_id
from ..data.records import Title
from ..errors import BadInput, DatasetError
from ..genres import IMDB_GENRES, parse_genre_cell
from .common import Candidate, Report, read_imdb_ids, write_dataset
from .imdb_pages import TITLE_TYPE_KIND

REQUIRED = ("tconst", "titleType", "primaryTitle", "startYear", "genres")


def _open_text(path: Path):
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise BadInput(f"{path}: file not found") from None
    except OSError as err:
        raise BadInput(f"{path}: cannot read ({err.strerror})") from None
    magic = fh.read(2)
    fh.seek(0)
    raw = gzip.GzipFile(fileobj=fh) if magic == b"\x1f\x8b" else fh  # a plain .tsv works too
    # utf-8-sig: a file re-saved by an editor may start with a BOM, which would hide the "tconst" column
    return fh, io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="\n")


def _field(v: str) -> str | None:
    return None if v in ("\\N", "") else v


def scan_basics(path: str | Path, wanted: set[str]) -> dict[str, dict]:
    """{tconst: {"title", "kind", "year", "genres", "title_type"}} for the wanted ids found in the file."""
    path = Path(path)
    fh, text = _open_text(path)
    found: dict[str, dict] = {}
    lineno = 1
    try:
        with fh, text:
            header = text.readline().rstrip("\r\n").split("\t")
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise DatasetError(f"{path}: not an IMDb title.basics file (missing column(s) {', '.join(missing)}; "
                                   f"header {header[:9]!r})")
            col = {c: header.index(c) for c in REQUIRED}
            width = max(col.values()) + 1
            for lineno, line in enumerate(text, 2):
                tab = line.find("\t")
                if line[:tab] not in wanted:  # cheap test first: most of the ~10M lines are skipped
                    continue
                cells = line.rstrip("\r\n").split("\t")  # IMDb's TSV has no quoting: quotes are literal
                if len(cells) < width:
                    raise DatasetError(f"{path} line {lineno}: {len(cells)} columns, expected {len(header)}")
                tt = cells[col["tconst"]]
                ttype = _field(cells[col["titleType"]])
                year = _field(cells[col["startYear"]])
                found[tt] = {"title": _field(cells[col["primaryTitle"]]), "title_type": ttype,
                             "kind": TITLE_TYPE_KIND.get(ttype or ""),
                             "year": int(year) if year and year.isdigit() else None,
                             "genres": parse_genre_cell((_field(cells[col["genres"]]) or "").split(","))}
                if len(found) == len(wanted):
                    break
    except (EOFError, OSError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise DatasetError(f"{path}: corrupt or truncated gzip near line {lineno} ({err})") from None
    return found


def check_distinct(out: str | Path, dataset: str | Path) -> None:
    if Path(out).resolve() == Path(dataset).resolve():
        raise BadInput(f"{out}: --out must differ from --dataset (the source is read while writing)")


def _imdb_id(t: Title) -> str | None:
    """``t``'s tt-id in IMDb's own spelling (``tt`` + at least 7 digits), from its imdb_id or a tt-like id."""
    tt = parse_imdb_id(t.imdb_id) or parse_imdb_id(t.id)
    return f"tt{int(tt[2:]):07d}" if tt else None


def collect_tsv(tsv: str | Path, out: Path, *, ids_file: str | Path | None = None, dataset: str | Path | None = None,
                name: str | None = None, force: bool = False, require=(), report: Report | None = None):
    """``genrefusion collect imdb-tsv``: titles from an ids file (records only) or an existing dataset
    (posters and plots kept, genres/kind/year replaced by IMDb's). Titles missing from the file or
    without IMDb genres are reported and skipped. Returns (titles written, report)."""
    report = report or Report()
    if (ids_file is None) == (dataset is None):
        raise BadInput("imdb-tsv: give exactly one of --ids FILE or --dataset DIR")
    base: list[tuple[Title, Path | None]] = []
    if ids_file is not None:
        base = [(Title(id=tt, imdb_id=tt, source="imdb-tsv"), None) for tt in read_imdb_ids(ids_file)]
    else:
        ds = Dataset(dataset)
        check_distinct(out, ds.root)
        titles = ds.titles()
        if titles and not any(_imdb_id(t) for t in titles):
            raise DatasetError(f"{ds.root}: none of its {len(titles)} titles has an IMDb id to join on "
                               f"(imdb_id, or a tt-id as id); nothing to look up in {Path(tsv).name}")
        for t in titles:
            tt = _imdb_id(t)
            if not tt:
                report.skip(t.id, "no IMDb id to join on")
                continue
            poster = None
            if t.poster:
                try:
                    poster = ds.poster_path(t)
                except DatasetError as err:
                    report.warn(t.id, f"poster dropped: {err}")
            base.append((t.replace(imdb_id=tt), poster))
        for p in ds.problems:
            report.skip(p.id, p.message)
    wanted = {t.imdb_id for t, _ in base}
    rows = scan_basics(tsv, wanted)
    cands = []
    for t, poster in base:
        row = rows.get(t.imdb_id)
        if row is None:
            report.skip(t.id, f"{t.imdb_id} not in {Path(tsv).name}")
            continue
        if not row["genres"]:
            report.skip(t.id, f"{t.imdb_id}: no genres in {Path(tsv).name}")
            continue
        if row["kind"] is None:
            report.skip(t.id, f"{t.imdb_id}: title type {row['title_type'] or 'missing'} in {Path(tsv).name} "
                              "is neither a film nor a series")
            continue
        t = t.replace(genres=row["genres"], kind=row["kind"] or t.kind, year=row["year"] or t.year,
                      title=t.title or row["title"])
        cands.append(Candidate(t, poster_path=poster))
    src = f"IMDb non-commercial datasets ({Path(tsv).name})"
    if dataset is not None:
        src += f" joined to {Dataset(dataset).name}"
    n = write_dataset(Path(out), cands, name=name, genres=list(IMDB_GENRES), source=src, report=report,
                      force=force, require=require, extra_meta={"genres_from": Path(tsv).name,
                                                                "matched": len(cands), "requested": len(base)})
    return n, report
