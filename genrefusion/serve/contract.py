"""The rules the server enforces beyond types, written into its OpenAPI document.

FastAPI's generated schema says every field of ``/predict`` and of a batch title is optional, so a request
with neither a poster nor a plot looked valid to generated clients and fuzzers while the server answers
400. ``refine_openapi`` adds what the handlers check: at least one input (a plot with a non-blank
character and no NUL, or a poster), posters as image files, ``top_k``/``threshold`` ranges, and the
batch's 1..N titles. A request the document calls valid is one the server accepts.
"""
from __future__ import annotations

from ..data.images import MAX_BYTES
from ..predict import PLOT_MAX_CHARS

# what load_image decodes; sent as the poster part's Content-Type by clients that follow the document
POSTER_TYPES = "image/jpeg, image/png, image/webp, image/gif, image/bmp, image/tiff"
# at least one character that is not whitespace, and no NUL (what _check_plot accepts)
PLOT = {"type": "string", "minLength": 1, "maxLength": PLOT_MAX_CHARS,
        "pattern": "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"}
POSTER_B64 = {"type": "string", "format": "byte", "contentEncoding": "base64", "contentMediaType": "image/*",
              "minLength": 4, "maxLength": (MAX_BYTES + 2) // 3 * 4,
              "description": "poster file bytes (JPEG, PNG, WebP...), base64; at most 10 MB decoded"}


def _component(spec: dict, ref_holder: dict) -> dict:
    ref = ref_holder["$ref"]  # "#/components/schemas/Name"
    return spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]


def _at_least_one(schema: dict, fields: dict[str, dict]) -> None:
    schema["anyOf"] = [{"required": [name], "properties": {name: sub}} for name, sub in fields.items()]


def _refine_title_form(spec: dict, path: str) -> dict:
    """The multipart title of ``/predict`` and ``/explain``: a poster file and/or a plot, ``top_k`` >= 1
    (and ``threshold`` in [0, 1] where there is one). Returns the form's schema."""
    form = spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
    schema = _component(spec, form["schema"])
    props = schema["properties"]
    # a file part (sent with a filename: without one, multipart parsers read the part as text)
    props["poster"] = {"type": "string", "contentMediaType": "application/octet-stream", "title": "Poster",
                       "description": props["poster"].get("description", "")}
    props["top_k"] = {"type": "integer", "minimum": 1, "title": "Top K",
                      "description": props["top_k"].get("description", "")}
    if "threshold" in props:
        props["threshold"] = {"type": "number", "minimum": 0, "maximum": 1, "title": "Threshold",
                              "description": props["threshold"].get("description", "")}
    _at_least_one(schema, {"poster": {"type": "string", "contentMediaType": "application/octet-stream"},
                           "plot": PLOT})
    schema["description"] = "a poster, a plot, or both (a request with neither is refused with 400)"
    form["encoding"] = {"poster": {"contentType": POSTER_TYPES}}
    return schema


def refine_openapi(spec: dict, max_batch: int, genres: list[str] | None = None) -> dict:
    """Add the handlers' rules to FastAPI's document ``spec`` (in place; returned for chaining); ``genres``: the
    served model's, the names ``/explain`` takes."""
    _refine_title_form(spec, "/predict")
    if "/explain" in spec["paths"]:
        props = _refine_title_form(spec, "/explain")["properties"]
        if genres:
            props["genre"] = {"type": "array", "items": {"type": "string", "enum": list(genres)}, "title": "Genre",
                              "description": props["genre"].get("description", "")}

    batch = spec["paths"]["/predict/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    batch.update(minItems=1, maxItems=max_batch)
    title = _component(spec, batch["items"])
    title["properties"]["poster_base64"] = {"anyOf": [POSTER_B64, {"type": "null"}], "title": "Poster Base64",
                                            "description": POSTER_B64["description"]}
    _at_least_one(title, {"plot": PLOT, "poster_base64": POSTER_B64})
    title["description"] = ("a title: a plot, a poster, or both (with neither, the request is refused with 400, "
                            "or with ?partial=true that title gets an error)")
    return spec
