"""Reliability suite plumbing: a per-category summary of what was exercised, honestly labelled.

The category of a test is its module name (``test_posters.py`` -> ``posters``). Two things are counted apart:

- **scenarios**: test items that ran (each parametrization is one; skipped ones are not counted), and how many
  of them failed;
- **inputs inside them**: what a single scenario tries many of, by kind, reported by the test through the
  ``inputs`` fixture: hypothesis examples, repeated requests of a load test, rows of one dataset, train runs
  killed and resumed. These are not extra scenarios (1,000 requests drawn from 35 request kinds are 1,000
  requests, not 1,000 cases), so they are never added to the scenario count:

    reliability: 141 scenarios run, 0 failed
      posters 38 scenarios; inside them: 84 dataset rows
      properties 9 scenarios; inside them: 2,401 hypothesis examples
"""
from __future__ import annotations

from collections import Counter, defaultdict

import pytest

_SCENARIOS: Counter = Counter()                    # category -> test items run
_FAILED: Counter = Counter()                       # category -> failed test items
_INPUTS: dict = defaultdict(Counter)               # category -> kind -> inputs tried inside its scenarios
_PENDING: dict = defaultdict(Counter)              # nodeid -> kind -> inputs reported by the running test
_COUNTED: set = set()                              # nodeids counted as run (not skipped)


def _category(nodeid: str) -> str:
    mod = nodeid.split("::")[0].rsplit("/", 1)[-1]
    return mod.removeprefix("test_").removesuffix(".py")


class InputCounter:
    """``inputs(n, kind)``: this scenario tried ``n`` inputs of ``kind`` (e.g. "hypothesis examples")."""

    def __init__(self, nodeid: str):
        self.nodeid = nodeid

    def __call__(self, n: int, kind: str) -> None:
        _PENDING[self.nodeid][kind] += int(n)


@pytest.fixture
def inputs(request) -> InputCounter:
    return InputCounter(request.node.nodeid)


def pytest_runtest_logreport(report):
    if "reliability/" not in report.nodeid.replace("\\", "/"):
        return
    cat = _category(report.nodeid)
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.skipped:
            return
        _SCENARIOS[cat] += 1
        _COUNTED.add(report.nodeid)
        if report.failed:
            _FAILED[cat] += 1
    elif report.when == "teardown":
        if report.failed:
            _FAILED[cat] += 1
        pending = _PENDING.pop(report.nodeid, Counter())  # fixtures may report their count during teardown
        if report.nodeid in _COUNTED:
            _INPUTS[cat].update(pending)


def summary_lines() -> list[str]:
    lines = [f"reliability: {sum(_SCENARIOS.values())} scenarios run, {sum(_FAILED.values())} failed"]
    for cat in sorted(_SCENARIOS):
        line = f"  {cat} {_SCENARIOS[cat]} scenarios" + (f" ({_FAILED[cat]} failed)" if _FAILED[cat] else "")
        kinds = [f"{n:,} {kind}" for kind, n in sorted(_INPUTS[cat].items()) if n]
        lines.append(line + (f"; inside them: {', '.join(kinds)}" if kinds else ""))
    return lines


def pytest_terminal_summary(terminalreporter):
    if not _SCENARIOS:
        return
    terminalreporter.write_sep("-", "reliability summary")
    for line in summary_lines():
        terminalreporter.write_line(line)


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
