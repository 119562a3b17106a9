"""Reliability suite plumbing: a per-category summary of cases tried and failures.

The category of a test is its module name (``test_posters.py`` -> ``posters``). Every test item counts as
one case; a test that tries many inputs itself (hypothesis, the server load run, schemathesis) adds them
through the ``cases`` fixture, so the summary reflects what was actually exercised:

    reliability: posters 42 cases, plots 30 cases, ... ; 0 failures
"""
from __future__ import annotations

from collections import Counter, defaultdict

import pytest

_CASES: Counter = Counter()      # category -> cases tried
_FAILED: Counter = Counter()     # category -> failed tests
_TESTS: Counter = Counter()      # category -> test items run
_EXTRA: dict = defaultdict(int)  # nodeid -> extra cases recorded by the test itself
_COUNTED: set = set()            # nodeids counted as run (not skipped)


def _category(nodeid: str) -> str:
    mod = nodeid.split("::")[0].rsplit("/", 1)[-1]
    return mod.removeprefix("test_").removesuffix(".py")


class CaseCounter:
    def __init__(self, nodeid: str):
        self.nodeid = nodeid

    def add(self, n: int = 1) -> None:
        """Record ``n`` inputs tried by this test (beyond the test itself)."""
        _EXTRA[self.nodeid] += int(n)

    __call__ = add  # ``cases(n)`` works too


@pytest.fixture
def cases(request) -> CaseCounter:
    return CaseCounter(request.node.nodeid)


def pytest_runtest_logreport(report):
    if "reliability/" not in report.nodeid.replace("\\", "/"):
        return
    cat = _category(report.nodeid)
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.skipped:
            return
        _TESTS[cat] += 1
        _CASES[cat] += 1
        _COUNTED.add(report.nodeid)
        if report.failed:
            _FAILED[cat] += 1
    elif report.when == "teardown":
        if report.failed:
            _FAILED[cat] += 1
        extra = _EXTRA.pop(report.nodeid, 0)  # fixtures may report their count during teardown
        if extra and report.nodeid in _COUNTED:
            _CASES[cat] += extra - 1


def pytest_terminal_summary(terminalreporter):
    if not _TESTS:
        return
    parts = [f"{c} {_CASES[c]} cases/{_TESTS[c]} tests" for c in sorted(_TESTS)]
    terminalreporter.write_sep("-", "reliability summary")
    terminalreporter.write_line("reliability: " + ", ".join(parts)
                                + f"; total {sum(_CASES.values())} cases in {sum(_TESTS.values())} tests"
                                + f"; failures {sum(_FAILED.values())}")


# -- shared, session-scoped views of the session's ``tiny_run`` (tests/conftest.py) ------------------------------
@pytest.fixture(scope="session")
def clf(tiny_run):
    """The tiny run's classifier, loaded once (encoders are built on first use)."""
    from genrefusion.predict import GenreClassifier

    return GenreClassifier.load(tiny_run)


@pytest.fixture(scope="session")
def api(clf):
    """A TestClient on ``create_app`` over the tiny run (in-process; the load test uses real uvicorn)."""
    from fastapi.testclient import TestClient

    from genrefusion.serve.app import create_app

    with TestClient(create_app(clf), raise_server_exceptions=False) as client:
        yield client
