"""The API against its own OpenAPI document with schemathesis' full check set, open and with an API key.

schemathesis' engine runs as its CLI does (coverage phase: every parameter's edges, unsupported methods,
missing headers; fuzzing phase: generated requests) with every built-in check: no server error, status
codes, content types, headers and bodies as documented, schema-valid requests accepted, invalid ones
rejected, a 405 with ``Allow`` for undocumented methods, and auth enforced where it is declared. The
document says posters are images, so the fuzzer is given image files to send (``media_type`` for the
multipart part, the ``byte`` format for base64 posters); everything else it generates itself. Examples are
bounded (the coverage phase is deterministic; fuzzing draws a few per operation).

One reported failure is schemathesis' own and is let through (``_null_file_part``). Two settings are this
server's, stated here: a batch over its title limit is refused with 413 (a
rejection, which the negative-data check does not list by default), and ``partial=true`` is fixed to
false, because with it the server answers 200 for titles outside the item schema on purpose (each gets
an ``error``; tested in test_serve.py).
"""
from __future__ import annotations

import base64
import io
from collections import Counter

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import strategies as st  # noqa: E402

KEY = "test-api-key-0123456789abcdef"
MAX_EXAMPLES = 4
SEED = 20
ALL_CHECKS = {"not_a_server_error", "status_code_conformance", "content_type_conformance",
              "response_headers_conformance", "response_schema_conformance", "negative_data_rejection",
              "positive_data_acceptance", "unsupported_method"}


def _image(fmt: str):
    def make(args):
        from PIL import Image

        (w, h), color = args
        buf = io.BytesIO()
        Image.new("RGB", (w, h), color).save(buf, format=fmt)
        return buf.getvalue()

    return st.tuples(st.tuples(st.integers(8, 64), st.integers(8, 96)), st.tuples(*[st.integers(0, 255)] * 3)).map(make)


@pytest.fixture(scope="module", autouse=True)
def posters_are_images():
    for fmt, media_type in (("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")):
        schemathesis.openapi.media_type(media_type, _image(fmt))
    schemathesis.openapi.format("byte", _image("JPEG").map(lambda b: base64.b64encode(b).decode("ascii")))


def run_all_checks(app, headers: dict | None = None) -> tuple[Counter, Counter, list[str]]:
    """(checks run, statuses seen, failures) of a full schemathesis run against ``app`` in-process."""
    from schemathesis.engine import events

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.generation.update(max_examples=MAX_EXAMPLES)
    schema.config.seed = SEED  # the same cases on every run: a failure here is reproducible
    schema.config.update(parameters={"partial": "false"}, headers=headers)
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]  # a new list: the default is shared
    ran, statuses, failures = Counter(), Counter(), []
    for ev in schemathesis.engine.from_schema(schema).execute():
        if isinstance(ev, (events.NonFatalError, events.FatalError)):
            failures.append(f"{type(ev).__name__}: {getattr(ev, 'info', ev)}"[:500])
        if not isinstance(ev, events.ScenarioFinished):
            continue
        rec = ev.recorder
        for it in rec.interactions.values():
            if it.response is not None:
                statuses[it.response.status_code] += 1
        for case_id, checks in rec.checks.items():
            for c in checks:
                ran[c.name] += 1
                if c.failure_info is not None and not _null_file_part(c.name, str(c.failure_info.failure)):
                    r = rec.interactions.get(case_id)
                    got = f"{r.response.status_code} {r.response.content[:200]!r}" if r and r.response else ""
                    failures.append(f"{c.name} on {rec.label}: {c.failure_info.failure}; got {got}\n"
                                    f"{c.failure_info.code_sample[-1500:]}")
    return ran, statuses, failures


def _null_file_part(check: str, failure: str) -> bool:
    """schemathesis' one false positive here: a negative case that sets the multipart ``poster`` to null. A
    file part cannot carry a null, so what reaches the server is a valid request (accepted, rightly), yet the
    check reports the generated null. Only that exact shape is let through."""
    return (check == "negative_data_rejection" and "properties/poster (was string, became null)" in failure
            and failure.count(" - violates ") <= 2)


def test_open_api_conforms_to_its_document(tiny_run):
    from genrefusion.serve.app import create_app

    ran, statuses, failures = run_all_checks(create_app(tiny_run))
    assert not failures, "\n\n".join(failures[:5])
    assert ALL_CHECKS <= set(ran), ALL_CHECKS - set(ran)
    assert statuses[200] >= 10 and statuses[405] and statuses[422]  # real predictions, and refusals


@pytest.mark.slow
def test_keyed_api_conforms_and_enforces_its_key(tiny_run):
    from genrefusion.serve.app import create_app

    ran, statuses, failures = run_all_checks(create_app(tiny_run, api_key=KEY), headers={"X-API-Key": KEY})
    assert not failures, "\n\n".join(failures[:5])
    assert ALL_CHECKS | {"ignored_auth"} <= set(ran)
    assert statuses[200] >= 10 and statuses[401]  # requests without the key were tried, and refused


def test_document_states_the_rules_the_server_enforces(tiny_run):
    from genrefusion.serve.app import create_app

    spec = create_app(tiny_run).openapi()
    body = spec["components"]["schemas"]["Body_predict_predict_post"]
    assert [b["required"] for b in body["anyOf"]] == [["poster"], ["plot"]]  # at least one input
    title = spec["components"]["schemas"]["BatchTitle"]
    assert [b["required"] for b in title["anyOf"]] == [["plot"], ["poster_base64"]]
    batch = spec["paths"]["/predict/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert (batch["minItems"], batch["maxItems"]) == (1, 64)
    explain = spec["components"]["schemas"]["Body_explain_explain_post"]  # /explain takes the same title
    assert [b["required"] for b in explain["anyOf"]] == [["poster"], ["plot"]]
    genres = list(create_app(tiny_run).state.classifier.genres_)
    assert explain["properties"]["genre"]["items"]["enum"] == genres
    assert "securitySchemes" not in spec.get("components", {})
    keyed = create_app(tiny_run, api_key=KEY).openapi()
    assert keyed["components"]["securitySchemes"]["apiKey"]["name"] == "X-API-Key"
    assert keyed["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer",
                                                                "description": "the same key as `Authorization: "
                                                                               "Bearer KEY`"}
    assert "security" not in keyed["paths"]["/health"]["get"]  # health stays open
    for path in ("/predict", "/predict/batch", "/explain"):
        assert keyed["paths"][path]["post"]["security"] == [{"apiKey": []}, {"bearer": []}]  # either header
        assert "401" in keyed["paths"][path]["post"]["responses"]
