"""Parse IMDb title pages (``https://www.imdb.com/title/tt…/``), saved or fetched.

A current title page carries its data twice: the Next.js ``__NEXT_DATA__`` blob
(``props.pageProps.aboveTheFoldData``), which is what the page shows, and a JSON-LD summary for search
engines (``<script type="application/ld+json">``). The two disagree: JSON-LD lists at most three genres
(*Aladdin* (1992): Animation, Adventure, Comedy, where the page lists seven), dates the title by one
country's release (``datePublished``), and its rating, title, plot and poster can differ from the page's.
So each field is taken from the page's own data first and from JSON-LD only where nothing else has it
(``PRECEDENCE``); older JSON-LD-only pages take the year from the page title ("Name (2007) - IMDb")
before ``datePublished``. ``PageInfo.field_sources`` says where each field came from. Only the standard
library is used: ``html.parser`` finds the script tags.
"""
from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from ..data.records import Title
from ..errors import BadInput
from ..genres import IMDB_GENRES, parse_genre_cell
from .common import Candidate, FailureGuard, Report, prefetch_poster, write_dataset
from .imdb_urls import IMDB_BASE, POSTER_MAX_BYTES, poster_request_url

TT_RE = re.compile(r"\btt\d{7,10}\b")

# JSON-LD @type -> kind. IMDb uses Movie for feature/short/TV films, TVSeries for series and
# mini-series, TVEpisode for episodes; anything else (VideoGame, PodcastSeries...) has no kind.
LD_KIND = {"movie": "movie", "tvseries": "tv", "tvminiseries": "tv", "tvepisode": "tv", "tvseason": "tv",
           "tvmovie": "movie", "shortfilm": "movie", "videoobject": None}
# __NEXT_DATA__ / title.basics ``titleType`` -> kind.
TITLE_TYPE_KIND = {"movie": "movie", "short": "movie", "tvMovie": "movie", "video": "movie", "tvSpecial": "movie",
                   "tvShort": "movie", "tvSeries": "tv", "tvMiniSeries": "tv", "tvEpisode": "tv", "tvPilot": "tv"}

NEXT_DATA, JSON_LD, PAGE_TITLE = "next-data", "json-ld", "page-title"
# Where each field is taken from: the first source that has it wins (see the module docstring for why).
PRECEDENCE = {
    "imdb_id": (NEXT_DATA, JSON_LD),
    "title": (NEXT_DATA, JSON_LD),
    "year": (NEXT_DATA, PAGE_TITLE, JSON_LD),
    "kind": (NEXT_DATA, JSON_LD),
    "genres": (NEXT_DATA, JSON_LD),
    "plot": (NEXT_DATA, JSON_LD),
    "poster_url": (NEXT_DATA, JSON_LD),
}
# "Name (2007) - IMDb", "Name (TV Series 2008–2013) - IMDb", "Name (Short 2019) - IMDb": the title's own year
_TITLE_YEAR = re.compile(r"\((?:[^()]*?\s)?(\d{4})(?:\s*[–-]\s*(?:\d{4})?\s*)?\)")


@dataclass
class PageInfo:
    """What one title page says about its title."""

    imdb_id: str | None = None
    title: str | None = None
    year: int | None = None
    kind: str | None = None
    genres: list[str] = field(default_factory=list)
    plot: str | None = None
    poster_url: str | None = None
    sources: list[str] = field(default_factory=list)  # "json-ld", "next-data": which blocks were found
    field_sources: dict[str, str] = field(default_factory=dict)  # field -> the source it was taken from


class _ScriptGrabber(HTMLParser):
    """Collect JSON-LD blocks, the __NEXT_DATA__ blob and the page's own tt-id hints."""

    def __init__(self):
        super().__init__(convert_charrefs=False)  # script bodies are raw text; we unescape strings ourselves
        self.ld: list[str] = []
        self.next_data: str | None = None
        self.id_hints: list[str] = []
        self.page_titles: list[str] = []  # <title> text, then og:title
        self._cur: str | None = None
        self._buf: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "script":
            typ = a.get("type", "").lower()
            if typ == "application/ld+json":
                self._cur, self._buf = "ld", []
            elif a.get("id") == "__NEXT_DATA__":
                self._cur, self._buf = "next", []
        elif tag == "title" and not self.page_titles:
            self._cur, self._buf = "title", []
        elif tag == "meta" and a.get("property") in ("imdb:pageConst", "og:url"):
            self.id_hints.append(a.get("content", ""))
        elif tag == "meta" and a.get("property") == "og:title":
            self.page_titles.append(a.get("content", ""))
        elif tag == "link" and a.get("rel", "").lower() == "canonical":
            self.id_hints.append(a.get("href", ""))

    def handle_data(self, data):
        if self._cur:
            self._buf.append(data)

    def handle_entityref(self, name):  # only <title> text reaches here (script bodies are CDATA)
        if self._cur == "title":
            self._buf.append(f"&{name};")

    def handle_charref(self, name):
        if self._cur == "title":
            self._buf.append(f"&#{name};")

    def handle_endtag(self, tag):
        if tag == "title" and self._cur == "title":
            self.page_titles.insert(0, "".join(self._buf))
            self._cur, self._buf = None, []
        elif tag == "script" and self._cur in ("ld", "next"):
            text = "".join(self._buf)
            if self._cur == "ld":
                self.ld.append(text)
            elif self.next_data is None:
                self.next_data = text
            self._cur, self._buf = None, []


def clean_text(s) -> str | None:
    """Unescape HTML entities (twice: IMDb's JSON-LD holds ``&apos;`` and ``&amp;quot;``) and collapse whitespace."""
    if s is None:
        return None
    s = str(s)
    for _ in range(2):
        u = html.unescape(s)
        if u == s:
            break
        s = u
    s = " ".join(s.replace("\u00a0", " ").split())
    return s or None


def _year(value) -> int | None:
    if value is None:
        return None
    m = re.match(r"\s*(\d{4})", str(value))
    if not m:
        return None
    y = int(m.group(1))
    return y if 1870 <= y <= 2100 else None


def _kind_from_ld(t) -> str | None:
    types = t if isinstance(t, list) else [t]
    for typ in types:
        if isinstance(typ, str) and typ.lower() in LD_KIND:
            return LD_KIND[typ.lower()]
    return None


def _image_url(img) -> str | None:
    if isinstance(img, list):
        img = img[0] if img else None
    if isinstance(img, dict):
        img = img.get("url") or img.get("contentUrl")
    if isinstance(img, str) and img.strip():
        return html.unescape(img.strip())
    return None


def _ld_title_object(blocks: list, name: str):
    """The JSON-LD object describing the title (skipping BreadcrumbList, Organization, ...)."""
    objs = []
    for b in blocks:
        for o in b if isinstance(b, list) else [b]:
            if isinstance(o, dict) and isinstance(o.get("@graph"), list):
                objs.extend(x for x in o["@graph"] if isinstance(x, dict))
            elif isinstance(o, dict):
                objs.append(o)
    known = [o for o in objs if _kind_from_ld(o.get("@type")) is not None or o.get("@type") in (
        "CreativeWork", "VideoGame", "PodcastSeries", "MusicVideoObject")]
    # Without a known type, only an object that carries a genre is taken for the title: a Person or
    # Organization block (a name page saved by mistake) must not become a title named after a person.
    for o in known or [o for o in objs if o.get("genre")]:
        if o.get("name"):
            return o
    return None


def _ld_types(blocks: list) -> list[str]:
    types = []
    for b in blocks:
        for o in b if isinstance(b, list) else [b]:
            if isinstance(o, dict) and isinstance(o.get("@type"), str):
                types.append(o["@type"])
    return types


def _dig(d, *keys):
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _from_json_ld(ld: dict) -> dict:
    g = ld.get("genre")
    m = TT_RE.search(str(ld.get("url") or ""))
    return {"imdb_id": m.group(0) if m else None, "title": clean_text(ld.get("name")),
            "kind": _kind_from_ld(ld.get("@type")),
            "genres": parse_genre_cell([clean_text(x) or "" for x in g] if isinstance(g, list) else clean_text(g)),
            "plot": clean_text(ld.get("description")), "poster_url": _image_url(ld.get("image")),
            "year": _year(ld.get("datePublished"))}  # one country's release date: the last resort


def _from_next_data(atf: dict) -> dict:
    kind = TITLE_TYPE_KIND.get(str(_dig(atf, "titleType", "id") or ""))
    if kind is None and _dig(atf, "titleType", "isSeries") is True:
        kind = "tv"
    gl = _dig(atf, "genres", "genres") or []
    return {"imdb_id": atf.get("id") if TT_RE.fullmatch(str(atf.get("id") or "")) else None,
            "title": clean_text(_dig(atf, "titleText", "text")), "kind": kind,
            "genres": parse_genre_cell([clean_text(g.get("text")) or "" for g in gl if isinstance(g, dict)]),
            "plot": clean_text(_dig(atf, "plot", "plotText", "plainText")),
            "poster_url": _image_url(atf.get("primaryImage")), "year": _year(_dig(atf, "releaseYear", "year"))}


def _title_year(page_titles: list[str]) -> int | None:
    """The year in the page title ("Name (2007) - IMDb"); the last parenthesised year, so a "(I)" or a
    year inside the name does not count."""
    for text in page_titles:
        found = _TITLE_YEAR.findall(clean_text(text) or "")
        if found:
            return _year(found[-1])
    return None


def _read_blocks(grab: _ScriptGrabber, errors: list[str]) -> tuple[list, dict | None]:
    """The parsed JSON-LD blocks and ``aboveTheFoldData`` (None when absent); problems go to ``errors``."""
    blocks = []
    for raw in grab.ld:
        try:
            blocks.append(json.loads(raw))
        except json.JSONDecodeError as err:
            errors.append(f"malformed JSON-LD (line {err.lineno} column {err.colno}: {err.msg})")
    atf = None
    if grab.next_data is not None:
        try:
            nd = json.loads(grab.next_data)
        except json.JSONDecodeError as err:
            errors.append(f"malformed __NEXT_DATA__ ({err.msg})")
        else:
            atf = _dig(nd, "props", "pageProps", "aboveTheFoldData")
            if not isinstance(atf, dict):
                atf = None
                errors.append("__NEXT_DATA__ has no props.pageProps.aboveTheFoldData")
    return blocks, atf


def parse_title_page(text: str, name: str = "page") -> PageInfo:
    """Parse one IMDb title page. Raises BadInput ``"<name>: <reason>"`` when no title data is found."""
    grab = _ScriptGrabber()
    try:
        grab.feed(text)
        grab.close()
    except (AssertionError, ValueError) as err:  # html.parser raises these on some malformed markup
        raise BadInput(f"{name}: malformed HTML ({err})") from None
    errors: list[str] = []
    if grab._cur in ("ld", "next"):  # a script block that never ends: the file was cut off inside it
        block = "JSON-LD" if grab._cur == "ld" else "__NEXT_DATA__"
        errors.append(f"the page is cut off inside its {block} block (truncated file or incomplete save?)")
    blocks, atf = _read_blocks(grab, errors)
    ld = _ld_title_object(blocks, name)
    found = {}
    if atf is not None:
        found[NEXT_DATA] = _from_next_data(atf)
    if ld is not None:
        found[JSON_LD] = _from_json_ld(ld)
    if not found:
        if not errors and blocks:
            errors.append(f"JSON-LD describes {', '.join(_ld_types(blocks)) or 'no typed object'}, not a title")
        why = "; ".join(errors) if errors else "no JSON-LD or __NEXT_DATA__ title data (not an IMDb title page?)"
        raise BadInput(f"{name}: {why}")
    found[PAGE_TITLE] = {"year": _title_year(grab.page_titles)}
    info = PageInfo(sources=[s for s in (JSON_LD, NEXT_DATA) if s in found])
    for fld, order in PRECEDENCE.items():
        for src in order:
            value = found.get(src, {}).get(fld)
            if value:
                setattr(info, fld, value)
                info.field_sources[fld] = src
                break
    if info.imdb_id is None:
        for hint in grab.id_hints:
            m = TT_RE.search(hint)
            if m:
                info.imdb_id = m.group(0)
                info.field_sources["imdb_id"] = "page-meta"
                break
    return info


def read_page(path: Path, max_bytes: int = 20 * 1024 * 1024) -> str:
    """Read a saved page as text (UTF-8, bad bytes replaced: one stray byte must not lose a title)."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise BadInput(f"{path.name}: file too large ({size / 1e6:.0f} MB) for a title page")
        data = path.read_bytes()
    except OSError as err:
        raise BadInput(f"{path.name}: cannot read ({err.strerror})") from None
    if not data.strip():
        raise BadInput(f"{path.name}: empty file")
    head = data[:4096].lower()
    if b"mime-version:" in head and b"multipart/related" in head:  # Chrome's "Webpage, Single File" (.mhtml)
        raise BadInput(f"{path.name}: an MHTML single-file save, which is not read; save the page as \"Webpage, "
                       "HTML only\" or \"Webpage, Complete\" (.html) instead")
    return data.decode("utf-8", errors="replace")


# -- the ``collect imdb-pages`` collector ----------------------------------------------------------
PAGE_SUFFIXES = (".html", ".htm", ".xhtml", ".mhtml", ".mht")  # MHTML is refused by read_page, with the reason
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def list_pages(folder: Path) -> list[Path]:
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise BadInput(f"{folder}: folder of saved IMDb pages not found")
    pages = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PAGE_SUFFIXES)
    if not pages:
        nested = pages_in_subfolders(folder)
        raise BadInput(f"{folder}: no .html/.htm files" + (
            f" (only in sub-folders, which are not searched: {len(nested)} in "
            f"{', '.join(sorted({p.parent.name + '/' for p in nested}))}; run collect on those folders)"
            if nested else " (save IMDb title pages there first)"))
    return pages


def pages_in_subfolders(folder: Path) -> list[Path]:
    """Pages one level down (not in a "save complete page" ``<page>_files/`` folder): collect does not read them,
    and says so rather than lose them silently."""
    if not folder.is_dir():
        return []
    return sorted(p for d in folder.iterdir() if d.is_dir() and not d.name.endswith("_files")
                  for p in d.iterdir() if p.is_file() and p.suffix.lower() in PAGE_SUFFIXES)


def find_local_poster(page: Path, tt: str | None, poster_url: str | None) -> Path | None:
    """A poster saved beside the page: ``<page stem>.jpg``, ``<tt-id>.jpg`` (any image suffix), or the
    image a browser's "save complete page" put in ``<page stem>_files/`` (matched by the URL's file name
    or IMDb image id)."""
    stems = [page.stem] + ([tt] if tt else [])
    for stem in stems:
        for suf in IMAGE_SUFFIXES:
            for cand in (page.with_name(stem + suf), page.with_name(stem + suf.upper())):
                if cand.is_file():
                    return cand
    files_dir = page.with_name(page.stem + "_files")
    if poster_url and files_dir.is_dir():
        base = poster_url.rsplit("/", 1)[-1].split("?")[0]
        image_id = base.split("._V1")[0].split(".")[0]
        names = {p.name: p for p in files_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}
        if base in names:
            return names[base]
        for n, p in sorted(names.items()):
            if image_id and n.startswith(image_id):
                return p
    return None


def collect_imdb_pages(folder: str | Path, out: Path, *, name: str | None = None, force: bool = False,
                       require=(), client=None, image_base_url: str | None = None, report=None,
                       max_failures: int = 10):
    """``genrefusion collect imdb-pages``: saved title pages -> dataset at ``out``.

    Works offline: posters are taken from files saved beside the pages. With ``client`` (the
    ``--fetch-posters`` option) a poster not found locally is downloaded from the page's image URL.
    Returns (titles written, report).
    """
    report = report or Report()
    pages = list_pages(Path(folder))
    for p in pages_in_subfolders(Path(folder)):
        report.skip(f"{p.parent.name}/{p.name}", "in a sub-folder, which is not searched (run collect on that "
                                                 "folder too)")
    cands, seen = [], {}
    guard = FailureGuard(max_failures, "poster requests")
    for page in pages:
        try:
            info = parse_title_page(read_page(page), name=page.name)
        except BadInput as err:
            report.skip(page.name, str(err).removeprefix(f"{page.name}: "))
            continue
        tt = info.imdb_id
        if tt is None:
            m = TT_RE.search(page.name)
            tt = m.group(0) if m else None
        if tt is None:
            report.skip(page.name, "no IMDb id in the page or its file name")
            continue
        if tt in seen:
            report.skip(page.name, f"duplicate of {tt} (already read from {seen[tt]})")
            continue
        seen[tt] = page.name
        if not info.genres:
            report.skip(page.name, f"{tt}: no genres on the page")
            continue
        local = find_local_poster(page, tt, info.poster_url)
        poster = {"poster_path": local} if local is not None else {}
        if local is None and client is not None and info.poster_url:
            # phase 1 like the fetcher: into the cache now, checked, so a kill while writing loses nothing
            # a saved page came from www.imdb.com: a relative image URL is relative to it
            url = poster_request_url(IMDB_BASE + "/", info.poster_url, image_base_url=image_base_url)
            poster = prefetch_poster(client, url, tt, report, guard, POSTER_MAX_BYTES)
        elif local is None and info.poster_url and client is None:
            report.warn(tt, f"no saved poster beside {page.name} (use --fetch-posters to download it)")
        t = Title(id=tt, imdb_id=tt, title=info.title, year=info.year, kind=info.kind, genres=info.genres,
                  plot=info.plot, source="imdb")
        report.record_sources(tt, info.field_sources)
        cands.append(Candidate(t, **poster))
    fetch = (lambda u: client.get(u, max_bytes=POSTER_MAX_BYTES).body) if client is not None else None
    n = write_dataset(Path(out), cands, name=name, genres=list(IMDB_GENRES), source="IMDb title pages (saved)",
                      report=report, force=force, require=require, fetch_poster=fetch,
                      extra_meta={"pages": len(pages)})
    return n, report
