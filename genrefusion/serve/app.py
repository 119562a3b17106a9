"""The REST API and web page: ``create_app(run_dir_or_classifier)`` returns a FastAPI app.

    POST /predict        multipart ``poster`` (file) and/or ``plot`` (text); optional ``top_k``, ``threshold``
                         -> the CLI's JSON: {"genres", "scores", "thresholds", "used", "threshold_set"}
                            (thresholds: the set tuned on dev titles with the inputs supplied)
    POST /explain        the same fields as /predict, plus ``genre`` (repeatable), ``top_words``, ``overlays``
                         -> per genre: score with both inputs / poster only / plot only, word weights, a
                            poster-cell grid and a PNG overlay (genrefusion.explain documents the shapes)
    POST /predict/batch  JSON list (<= 64) of {"plot", "poster_base64", "id"?}
                         -> {"genres", "thresholds", "threshold_sets", "results": [{"index", "id", "genres", "scores",
                            "thresholds", "used", "threshold_set", "error"}]} (a result's figures as /predict's)
                         A bad title rejects the whole request (4xx naming ``titles[i]``) unless ``?partial=true``,
                         which returns 200 with that title's ``error`` set instead.
    GET  /health         liveness + which model is loaded
    GET  /model          genres, thresholds and what they were tuned on, encoders, test metrics beside the
                         always-negative baseline, limits
    GET  /               the web page (static/index.html); OpenAPI docs at /docs

Limits: poster <= 10 MB and <= 40 MP (decompression bombs refused), plot <= 20,000 characters, batch <= 64
titles, request bodies capped before parsing. Every input problem is a 4xx ``{"error": "...", "status": N}``
naming the field (form text or a batch that is not UTF-8, or a form field sent twice: 422, never read as latin-1
or the last one kept); inference runs in the threadpool so the event loop keeps answering ``/health``. With
``allowed_hosts``, a request with another ``Host`` gets a 400 (``auth.HostGuard``). A bug gets a one-line 500
and is logged once, with the request line.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote_plus, unquote_to_bytes

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

try:
    from python_multipart.multipart import MultipartParser, parse_options_header
except ImportError:  # python-multipart < 0.0.13 (the serve extra allows 0.0.9)
    from multipart.multipart import MultipartParser, parse_options_header

from ..data.images import MAX_BYTES, MAX_PIXELS, load_image
from ..errors import BadInput, BundleError, GenreFusionError
from ..predict import PLOT_MAX_CHARS
from .auth import ApiKeyGuard, HostGuard, check_key, document_security, send_error
from .contract import refine_openapi

log = logging.getLogger("genrefusion.serve")

STATIC = Path(__file__).with_name("static")
MAX_BATCH = 64
# base64 inflates 4/3; a little slack for JSON punctuation and the plot
MAX_B64_CHARS = (MAX_BYTES + 2) // 3 * 4
MAX_PREDICT_BODY = MAX_BYTES + 4 * PLOT_MAX_CHARS + 64 * 1024  # plot may be 4 UTF-8 bytes per character
MAX_BATCH_BODY = 64 * 1024 * 1024  # 64 titles of ~1 MB posters; larger batches: split them or use the CLI
PARTIAL_HINT = "add ?partial=true to get an error field for it and the other titles' genres"
DRAIN_CAP = 1 << 30  # past this an oversized body is not read to the end: the connection is dropped
BATCH_PATH = "/predict/batch"
# the form routes' fields, as their signatures below declare them; of these only /explain's genre list may repeat
# (a test holds them to the OpenAPI document). Unknown fields are ignored, as FastAPI ignores them.
FORM_FIELDS = {"/predict": frozenset({"poster", "plot", "top_k", "threshold"})}
FORM_FIELDS["/explain"] = FORM_FIELDS["/predict"] | {"genre", "top_words", "overlays"}
FORM_LISTS = frozenset({"genre"})


class TooLarge(BadInput):
    """An input over a size limit (HTTP 413)."""


class BatchTitle(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: StrictStr | None = Field(None, max_length=200, description="echoed back in the result")
    plot: StrictStr | None = Field(None, description=f"plot summary (at most {PLOT_MAX_CHARS:,} characters)")
    poster_base64: StrictStr | None = Field(None, description="poster file bytes, base64 (at most 10 MB decoded)")


class PredictOut(BaseModel):
    genres: list[str]
    scores: dict[str, float]
    thresholds: dict[str, float]
    used: list[str]
    threshold_set: str = Field(description="the threshold set the decision used: both, poster, plot (tuned on dev "
                                           "titles with those inputs) or pooled")


class BatchResult(BaseModel):
    index: int
    id: str | None = None
    genres: list[str] | None = None
    scores: dict[str, float] | None = None
    thresholds: dict[str, float] | None = Field(None, description="what the decision compared the scores with: "
                                                "the title's threshold set, or the request's threshold")
    used: list[str] | None = None
    threshold_set: str | None = None
    error: str | None = None


class BatchOut(BaseModel):
    genres: list[str]
    thresholds: dict[str, float]
    threshold_sets: dict[str, dict[str, float]] = Field(default_factory=dict,
                                                        description="per input combination; results name theirs")
    results: list[BatchResult]


class ExplainWord(BaseModel):
    text: str = Field(description="a word, or a phrase for long plots")
    weight: float = Field(description="log-odds fall when it is deleted")


class ExplainGenre(BaseModel):
    genre: str
    score: float = Field(description="probability with the inputs given")
    poster_only: float | None = Field(description="probability from the poster alone (None: no poster)")
    plot_only: float | None = Field(description="probability from the plot alone (None: no plot)")
    no_input: float = Field(description="probability with neither input (the model's missing-input path)")
    threshold: float
    poster_only_threshold: float | None = Field(description="what poster_only would be cut at (None: no poster)")
    plot_only_threshold: float | None = Field(description="what plot_only would be cut at (None: no plot)")
    predicted: bool
    word_weights: list[float] | None = Field(description="one weight per plot word (plot.words), log-odds")
    top_words: list[ExplainWord]
    poster_grid: list[list[float]] | None = Field(description="[h][w] weights of the poster cells over the crop")
    overlay_png: str | None = Field(description="the poster with the cell weights drawn on it, base64 PNG")


class ExplainPlot(BaseModel):
    text: str
    granularity: str = Field(description="'word', or 'phrase' when a long plot was occluded by phrases")
    words: list[list[int]] = Field(description="[start, end] character offsets of each word in text")
    units: list[list[int]] = Field(description="occluded units as [first word, end word) ranges")


class ExplainPoster(BaseModel):
    size: list[int] = Field(description="[width, height] of the poster")
    crop: list[float] = Field(description="[left, top, right, bottom]: the square the model sees")
    grid_shape: list[int] = Field(description="[h, w] of poster_grid")


class ExplainOut(BaseModel):
    model: str
    used: list[str]
    predicted: list[str]
    weights: str = Field(description="unit of every weight: 'log-odds'")
    plot: ExplainPlot | None
    poster: ExplainPoster | None
    genres: list[ExplainGenre]
    seconds: float


def _error(status: int, msg: str) -> JSONResponse:
    return JSONResponse({"error": msg, "status": status}, status_code=status)


def _one_line(s: Any) -> str:
    return " ".join(str(s).split())[:500]


class BodyLimit:
    """ASGI middleware: request bodies over the route's cap get a 413 before any parser sees them, and a body the
    parsers would misread without a word a 422 naming the field (``_strict_body``).

    An oversized body is read to its end (discarded) so the client gets the response rather than a reset
    connection; past ``DRAIN_CAP`` the connection is simply dropped."""

    def __init__(self, app, limits: dict[str, int], default: int):
        self.app, self.limits, self.default = app, limits, default

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        path = scope["path"].rstrip("/") or "/"
        limit = self.limits.get(path, self.default)
        declared = None
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    return await _send_json(send, 400, "Content-Length header is not a number")
        body, size, more = [], 0, True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunk = msg.get("body", b"")
            size += len(chunk)
            more = msg.get("more_body", False)
            if size <= limit and (declared is None or declared <= limit):
                body.append(chunk)
            else:
                body = []
                if size > DRAIN_CAP:
                    break
        if size > limit or (declared is not None and declared > limit):
            return await _send_json(send, 413, f"request body too large ({max(size, declared or 0) / 1e6:.1f} MB "
                                               f"> {limit / 1e6:.1f} MB for {scope['path']})")
        problem, data = _strict_body(path, scope, b"".join(body))  # the body is whole here: checked before parsing
        if problem:
            return await _send_json(send, 422, problem, close=False)
        return await self.app(scope, _replay(data, receive), send)


def _replay(data: bytes, receive):
    """``receive`` for the app after a middleware that read the body: the body, whole, then the real messages."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": data, "more_body": False}
        return await receive()

    return replay


async def _send_json(send, status: int, msg: str, close: bool = True) -> None:
    await send_error(send, status, msg, [(b"connection", b"close")] if close else [])


def _strict_body(path: str, scope, data: bytes) -> tuple[str | None, bytes]:
    """(a 422 message naming the field, else None; the body to parse) for a body starlette's parsers would misread
    without a word: form text that is not UTF-8 (read as latin-1), a form field sent twice (the last one would
    win), a batch that is not UTF-8 (a bare "error parsing the body"). Raw non-ASCII bytes in a urlencoded form
    (``curl -d 'plot=café'``) are percent-encoded, so they are read as UTF-8 (WHATWG) rather than as latin-1."""
    if scope["method"] != "POST" or (path not in FORM_FIELDS and path != BATCH_PATH):
        return None, data
    kind, params = parse_options_header(next((v for k, v in scope["headers"] if k == b"content-type"), b""))
    if path == BATCH_PATH:
        return (_batch_not_utf8(data) if kind in (b"", b"application/json") or kind.endswith(b"+json") else None), data
    if kind == b"multipart/form-data" and params.get(b"boundary"):
        return _form_problem(_multipart_fields(params[b"boundary"], data), FORM_FIELDS[path]), data
    if kind == b"application/x-www-form-urlencoded":
        data = re.sub(rb"[\x80-\xff]", lambda m: b"%%%02X" % m[0][0], data)
        return _form_problem([(unquote_plus(k.decode("latin-1")), unquote_to_bytes(v.replace(b"+", b" ")))
                              for k, _, v in (f.partition(b"=") for f in data.split(b"&") if f)],
                             FORM_FIELDS[path]), data
    return None, data


def _form_problem(fields: list[tuple[str, bytes | None]], known: frozenset) -> str | None:
    """The first known field whose text is not UTF-8, else the first sent twice that is not a list; or None."""
    fields = [(name, value) for name, value in fields if name in known]
    for name, value in fields:
        try:
            (value or b"").decode("utf-8")  # None: a file, whose bytes are the poster decoder's business
        except UnicodeDecodeError as err:
            return f"{name}: not UTF-8 text (byte {err.start}); send form text as UTF-8"
    for name, n in Counter(name for name, _ in fields).items():
        if n > 1 and name not in FORM_LISTS:
            return f"{name}: sent {n} times; send it once (several titles: POST {BATCH_PATH})"
    return None


class _Parts:
    """python-multipart callbacks collecting each part as (name, bytes; None for a file), as starlette reads it."""

    def __init__(self):
        self.fields, self.header, self.value, self.options, self.data = [], b"", b"", {}, bytearray()

    def on_header_field(self, data, start, end):
        self.header += data[start:end]

    def on_header_value(self, data, start, end):
        self.value += data[start:end]

    def on_header_end(self):
        if self.header.lower() == b"content-disposition":
            self.options = parse_options_header(self.value)[1]
        self.header = self.value = b""

    def on_part_data(self, data, start, end):
        if b"filename" not in self.options:  # a file's bytes are not needed
            self.data += data[start:end]

    def on_part_end(self):
        self.fields.append((self.options.get(b"name", b"").decode("utf-8", "replace"),
                            None if b"filename" in self.options else bytes(self.data)))
        self.options, self.data = {}, bytearray()


def _multipart_fields(boundary: bytes, body: bytes) -> list[tuple[str, bytes | None]]:
    parts = _Parts()
    parser = MultipartParser(boundary, {k: getattr(parts, k) for k in dir(parts) if k.startswith("on_")})
    try:
        parser.write(body)
        parser.finalize()
    except ValueError:  # malformed: the parts before the fault (starlette's parser refuses the body itself)
        pass
    return parts.fields


def _batch_not_utf8(body: bytes) -> str | None:
    """Which title's field a batch body's undecodable bytes are in (FastAPI answers a bare 400 for them)."""
    try:
        if not body.isascii():
            body.decode(json.detect_encoding(body), "surrogatepass")  # as json.loads reads bytes
        return None
    except UnicodeDecodeError as err:
        where = "body"
        try:  # the bad bytes as lone surrogates: the title field holding them
            titles = json.loads(body.decode("utf-8", "surrogateescape"))
            where = next(f"titles[{i}].{k}" for i, t in enumerate(titles) if isinstance(t, dict)
                         for k, v in t.items() if isinstance(v, str) and re.search("[\udc80-\udcff]", v))
        except (ValueError, TypeError, StopIteration):
            pass
        at = f"byte {err.start}" + (" of the body" if where != "body" else "")
        return f"{where}: not UTF-8 text ({at}); send the JSON as UTF-8"


class CatchBugs:
    """ASGI middleware: an exception no handler answered (a bug, not bad input) is logged once, here, with the
    request line, and gets a one-line 500 JSON. Starlette's own 500 handler re-raises it for the server, so
    uvicorn logged the same traceback a second time. Once the response has started it is re-raised unlogged:
    uvicorn logs it and drops the connection."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def watch(msg):
            nonlocal started
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, receive, watch)
        except Exception as err:
            if started:
                raise
            log.exception("internal error on %s %s: %s", scope["method"], scope["path"],
                          _one_line(f"{type(err).__name__}: {err}"))
            await _send_json(send, 500, f"internal error ({type(err).__name__}); see the server log", close=False)


def _check_plot(plot: str | None, name: str) -> str | None:
    if plot is None:
        return None
    if len(plot) > PLOT_MAX_CHARS:
        raise TooLarge(f"{name}: {len(plot):,} characters (limit {PLOT_MAX_CHARS:,})")
    if "\x00" in plot:
        raise BadInput(f"{name}: contains a NUL character")
    if any("\ud800" <= c <= "\udfff" for c in plot):  # a JSON "\ud800" escape: not encodable text
        raise BadInput(f"{name}: not valid Unicode text (lone surrogate)")
    return plot if plot.strip() else None


def _decode_poster(data: bytes, name: str):
    if len(data) > MAX_BYTES:
        raise TooLarge(f"{name}: file too large ({len(data) / 1e6:.1f} MB > {MAX_BYTES / 1e6:.0f} MB)")
    im = load_image(data, name=name)  # pixel limit, bombs, corrupt/truncated data -> BadInput naming it
    return im


async def _form_title(request: Request, poster: UploadFile | None,
                      plot: str | None) -> tuple[bytes | None, str | None, str]:
    """(poster bytes, checked plot, the poster's name in errors) of a multipart title; BadInput when empty."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json":
        # a JSON body reaches a form endpoint as no field at all: say where JSON goes instead
        raise BadInput(f"{request.url.path} reads a form (multipart/form-data: file field 'poster', text field "
                       "'plot'); for JSON, send a list of {\"plot\", \"poster_base64\"} to /predict/batch")
    plot = _check_plot(plot, "plot")
    data = None
    if poster is not None:
        data = await poster.read(MAX_BYTES + 1)
        if not data and not poster.filename:
            data = None  # a browser form with no file chosen sends an empty, unnamed part
    if data is None and plot is None:
        raise BadInput("give a poster (file field 'poster'), a plot (text field 'plot'), or both")
    return data, plot, f"poster {poster.filename!r}" if poster is not None and poster.filename else "poster"


def _b64(s: str, name: str) -> bytes:
    if len(s) > MAX_B64_CHARS + 1024:
        raise TooLarge(f"{name}: poster too large (over {MAX_BYTES / 1e6:.0f} MB once decoded)")
    s = s.strip()
    if s.startswith("data:"):  # a data URL as produced by FileReader.readAsDataURL
        _, _, s = s.partition(",")
    try:
        return base64.b64decode("".join(s.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(f"{name}: not valid base64") from None


def create_app(run_dir_or_classifier, *, warmup: bool = False, max_batch: int = MAX_BATCH,
               max_batch_body: int = MAX_BATCH_BODY, api_key: str | None = None,
               allowed_hosts: Iterable[str] | None = None) -> FastAPI:
    """The FastAPI app for a run dir / bundle path or a loaded ``GenreClassifier``.

    ``warmup``: build the encoders and run one prediction at startup, so the first request is not slow.
    ``api_key``: require it on every request but /health, the web page and the docs (``serve/auth.py``).
    ``allowed_hosts``: the Host names served (``*.example.com``, ``*``; any port); others get a 400. None: no
    check (``serve`` computes its default with ``auth.default_hosts``)."""
    from ..predict import GenreClassifier

    if isinstance(run_dir_or_classifier, GenreClassifier):
        clf = run_dir_or_classifier
    elif isinstance(run_dir_or_classifier, (str, os.PathLike)):
        clf = GenreClassifier.load(run_dir_or_classifier)
    else:
        raise BundleError(f"create_app: expected a run folder or a GenreClassifier, "
                          f"got {type(run_dir_or_classifier).__name__}")
    genres = list(clf.genres_)
    thresholds = clf.rounded_thresholds()

    @asynccontextmanager
    async def lifespan(app):
        if warmup:
            from PIL import Image

            await run_in_threadpool(clf.predict_one, poster=Image.new("RGB", (64, 96), (128, 128, 128)),
                                    plot="warm-up")
        yield

    app = FastAPI(title="genrefusion", version=_version(),
                  description="Multi-label movie/TV genre prediction from a poster and a plot summary.",
                  lifespan=lifespan)
    app.state.classifier = clf
    # each one added runs before those added earlier
    app.add_middleware(BodyLimit, limits={"/predict": MAX_PREDICT_BODY, "/explain": MAX_PREDICT_BODY,
                                          "/predict/batch": max_batch_body}, default=64 * 1024)
    if api_key is not None:  # a request without the key is refused unbuffered
        app.add_middleware(ApiKeyGuard, key=check_key(api_key), drain=DRAIN_CAP)
    if allowed_hosts is not None:  # a DNS-rebinding page's request is refused before the key is even looked at
        app.add_middleware(HostGuard, hosts=list(allowed_hosts), drain=DRAIN_CAP)
    app.add_middleware(CatchBugs)
    _document(app, max_batch, api_key is not None, genres)

    # -- errors: every input problem is a one-line 4xx JSON ---------------------------------------------------
    @app.exception_handler(GenreFusionError)
    async def _gf_error(request: Request, err: GenreFusionError):
        return _error(413 if isinstance(err, TooLarge) else 400 if isinstance(err, BadInput) else 422,
                      _one_line(err))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, err: RequestValidationError):
        parts = []
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        for e in err.errors()[:3]:
            if e.get("type") == "json_invalid":  # its loc is ("body", character position), not a title
                why = (e.get("ctx") or {}).get("error")
                parts.append(f"body: invalid JSON at character {e['loc'][-1]}" + (f" ({why})" if why else ""))
                continue
            loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
            if loc and loc[0].isdigit():
                loc = f"titles[{loc.split('.')[0]}]" + "".join(f".{x}" for x in loc.split(".")[1:])
            msg = e.get("msg", "invalid")
            if loc == "body" and e.get("type") == "list_type" and request.url.path == "/predict/batch":
                msg += (': send a JSON list of titles, [{"id", "plot", "poster_base64"}, ...], not an object'
                        if ctype == "application/json" or ctype.endswith("+json") else
                        f": the body was sent as {ctype or 'no content type'}, so it was not read as JSON; "
                        "send it with Content-Type: application/json")
            parts.append(f"{loc}: {msg}")
        more = len(err.errors()) - 3
        return _error(422, "; ".join(parts) + (f" (and {more} more problems)" if more > 0 else ""))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException):
        # keep the exception's headers: a 405 must say which methods are allowed (RFC 9110 Allow)
        return JSONResponse({"error": _one_line(err.detail), "status": err.status_code},
                            status_code=err.status_code, headers=err.headers)

    # -- routes --------------------------------------------------------------------------------------------------
    @app.get("/health", tags=["service"])
    def health() -> dict:
        return {"status": "ok", "model": clf.model_name_, "genres": len(genres)}

    @app.get("/model", tags=["service"])
    def model_info() -> dict:
        info = clf.info()
        info["limits"] = {"poster_bytes": MAX_BYTES, "poster_pixels": MAX_PIXELS, "plot_chars": PLOT_MAX_CHARS,
                          "batch_titles": max_batch, "batch_body_bytes": max_batch_body}
        return info

    @app.post("/predict", tags=["predict"], response_model=PredictOut,
              responses={400: {"description": "bad input"}, 413: {"description": "input over a size limit"},
                         422: {"description": "malformed request"}})
    async def predict(request: Request,
                      poster: Annotated[UploadFile | None, File(description="poster image (<= 10 MB, <= 40 MP)")] = None,
                      plot: Annotated[str | None, Form(description="plot summary (<= 20,000 characters)")] = None,
                      top_k: Annotated[int | None, Form(description="at most K genres (alone: the K most probable)")] = None,
                      threshold: Annotated[float | None, Form(description="one threshold for every genre")] = None):
        """Genres of one title from its poster and/or plot."""
        from ..decision import check_overrides

        check_overrides(top_k, threshold)
        data, plot, name = await _form_title(request, poster, plot)

        def work():
            im = _decode_poster(data, name) if data is not None else None
            return clf.predict_one(poster=im, plot=plot, top_k=top_k, threshold=threshold)

        return await run_in_threadpool(work)

    @app.post("/predict/batch", tags=["predict"], response_model=BatchOut,
              responses={400: {"description": "bad title"}, 413: {"description": "over a size limit"},
                         422: {"description": "malformed request"}})
    async def predict_batch(titles: list[BatchTitle],
                            partial: Annotated[bool, Query(description="a bad title gets an error field "
                                                                       "instead of failing the request")] = False,
                            top_k: Annotated[int | None, Query(ge=1)] = None,
                            threshold: Annotated[float | None, Query(ge=0.0, le=1.0)] = None):
        """Genres of up to 64 titles: a JSON list of {"plot", "poster_base64"} (either may be absent)."""
        from ..decision import check_overrides

        check_overrides(top_k, threshold)
        if not titles:
            raise BadInput("empty batch: send a JSON list of 1 to 64 titles")
        if len(titles) > max_batch:
            raise TooLarge(f"batch has {len(titles)} titles (limit {max_batch}); split it")
        return await run_in_threadpool(_run_batch, clf, titles, partial, top_k, threshold, genres, thresholds)

    @app.post("/explain", tags=["predict"], response_model=ExplainOut,
              responses={400: {"description": "bad input (also: an unknown genre)"},
                         413: {"description": "input over a size limit"}, 422: {"description": "malformed request"}})
    async def explain(request: Request,
                      poster: Annotated[UploadFile | None, File(description="poster image (<= 10 MB, <= 40 MP)")] = None,
                      plot: Annotated[str | None, Form(description="plot summary (<= 20,000 characters)")] = None,
                      genre: Annotated[list[str] | None, Form(description="genre(s) to explain (repeat the field); "
                                                                          "default: the predicted ones, else the top 3")] = None,
                      top_k: Annotated[int | None, Form(description="instead: the K most probable genres")] = None,
                      threshold: Annotated[float | None, Form(description="one threshold for every genre")] = None,
                      top_words: Annotated[int, Form(ge=0, le=50, description="words/phrases listed per genre")] = 5,
                      overlays: Annotated[bool, Form(description="include the poster overlay PNGs")] = True):
        """Why one title gets its genres: per genre, the probability from both inputs, the poster only and the
        plot only; a weight per plot word; a grid of poster-region weights with a PNG overlay. Every weight is
        measured on the model (the log-odds fall when the word is deleted or the region blanked). Same inputs
        and limits as /predict."""
        from ..decision import check_overrides

        check_overrides(top_k, threshold)
        data, plot, name = await _form_title(request, poster, plot)

        def work():
            im = _decode_poster(data, name) if data is not None else None
            return clf.explain(poster=im, plot=plot, genres=[g for g in genre or [] if g.strip()] or None,
                               top_k=top_k, top_words=top_words, overlays=overlays, threshold=threshold)

        return await run_in_threadpool(work)

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _document(app: FastAPI, max_batch: int, secured: bool, genres: list[str]) -> None:
    """The OpenAPI document with the rules the handlers enforce (``contract.py``) and the API key, if any."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            spec = refine_openapi(generate(), max_batch, genres)
            if secured:
                document_security(spec)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi


def _run_batch(clf, titles: list[BatchTitle], partial: bool, top_k, threshold, genres, thresholds) -> dict:
    """Decode and preprocess every title (a bad one: 4xx, or its error with ``partial``), then one batched
    inference."""
    import numpy as np

    from ..batch import BatchItem, Prepared, infer_block
    from ..decision import used_inputs

    block: list[Prepared] = []
    for i, t in enumerate(titles):
        item = BatchItem(i, t.id if t.id is not None else str(i))
        name = f"titles[{i}]"
        try:
            plot = _check_plot(t.plot, f"{name}.plot")
            im = None
            if t.poster_base64 is not None and t.poster_base64.strip():
                im = _decode_poster(_b64(t.poster_base64, f"{name}.poster_base64"), f"{name}.poster_base64")
                x = clf.preprocess_poster(im)  # the backbone's small input: one full-size poster held at a time
                im = im if x is None else x
            if im is None and plot is None:
                raise BadInput(f"{name}: neither a poster nor a plot to predict from")
        except GenreFusionError as err:
            if not partial:  # the same error class (so the same status), saying how to keep the other titles
                raise type(err)(f"{_one_line(err)} ({PARTIAL_HINT})") from err
            item.error = _one_line(err)
            block.append(Prepared(item, None, []))
            continue
        block.append(Prepared(item, {"poster": im, "plot": plot}, used_inputs(im, plot)))
    scores = infer_block(clf, block)
    results = []
    for p, s in zip(block, scores):
        r = {"index": p.item.index, "id": p.item.id}
        if s is None:
            if not partial:
                raise BadInput(f"titles[{p.item.index}]: {p.item.error or 'no prediction'}")
            r["error"] = p.item.error or "no prediction"
        else:
            s = np.asarray(s, np.float64)
            # the threshold set tuned on dev titles with this title's inputs, as /predict
            r.update(genres=clf.decide(s, top_k, threshold, [p.used])[0], **clf.shown_result(s, p.used, threshold))
        results.append(r)
    return {"genres": genres, "thresholds": thresholds, "threshold_sets": clf.rounded_threshold_sets(),
            "results": results}


def _version() -> str:
    from .. import __version__

    return __version__
