"""The served web page end to end in real headless Chromium (Debian's /usr/bin/chromium via Playwright).

Uploads a shipped poster, types its plot, presses Predict and checks the bar chart against the API's answer for
the same input. Screenshots at a laptop and a phone width go to ``test-artifacts/`` (repo root) for a human look.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} not installed (apt-get install chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server(tiny_run):
    from genrefusion.serve.app import create_app
    from genrefusion.serve.server import BackgroundServer

    with BackgroundServer(create_app(tiny_run, warmup=True)) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        try:
            yield b
        finally:
            b.close()


def _shipped_title(shipped, k: int) -> tuple[Path, str]:
    ds = shipped / "imdb_top250"
    rec = json.loads((ds / "titles.jsonl").read_text(encoding="utf-8").splitlines()[k])
    return ds / rec["poster"], rec["plot"]


@pytest.mark.parametrize("width, height, name", [(1280, 860, "desktop"), (390, 844, "phone")])
def test_page_predicts_and_draws_bars(server, browser, shipped, width, height, name):
    import httpx

    poster, plot = _shipped_title(shipped, 0 if name == "desktop" else 4)
    with open(poster, "rb") as fh:
        want = httpx.post(server.url + "/predict", files={"poster": (poster.name, fh, "image/jpeg")},
                          data={"plot": plot}, timeout=60).json()
    ctx = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(server.url + "/")
        # the footer fills in from GET /model: the served model's test metrics beside the baseline
        page.wait_for_selector("#metrics table", timeout=15_000)
        assert "always-negative" in page.inner_text("#metrics")
        page.set_input_files("#poster", str(poster))
        page.wait_for_selector("#preview:not([hidden])")
        assert page.eval_on_selector("#preview", "img => img.naturalWidth") > 0  # the preview really rendered
        page.fill("#plot", plot)
        page.click("#predict")
        page.wait_for_selector("#bars li.bar", timeout=30_000)
        page.wait_for_timeout(500)  # let the bar-width transition finish before measuring / screenshotting
        bars = page.eval_on_selector_all("#bars li.bar", """els => els.map(li => ({
            genre: li.dataset.genre, score: Number(li.dataset.score), on: li.classList.contains('on'),
            fill: li.querySelector('.fill').getBoundingClientRect().width,
            track: li.querySelector('.track').getBoundingClientRect().width,
            tick: parseFloat(li.querySelector('.tick').style.left)}))""")
        chips = page.eval_on_selector_all("#summary .chip", "els => els.map(e => e.textContent)")
        # the page says which threshold set decided (the one tuned on dev titles with these inputs)
        chosen = page.eval_on_selector("#summary .threshold-set", "e => [e.dataset.set, e.textContent]")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"web-{name}.png"), full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    finally:
        ctx.close()

    assert not errors, errors
    # the chart shows every genre, most probable first, with the API's scores and decisions
    assert [b["genre"] for b in bars] == list(want["scores"])
    assert [b["score"] for b in bars] == list(want["scores"].values())
    assert [b["genre"] for b in bars if b["on"]] == [g for g in want["scores"] if g in want["genres"]]
    assert sorted(chips) == sorted(want["genres"])
    assert chosen[0] == want["threshold_set"] and "thresholds" in chosen[1]
    for b in bars:
        assert b["tick"] == pytest.approx(want["thresholds"][b["genre"]] * 100, abs=0.06)
        assert b["fill"] == pytest.approx(b["score"] * b["track"], abs=2.0)  # bar length is the probability
    assert overflow <= 0, f"page scrolls sideways at {width}px ({overflow}px too wide)"


def test_page_shows_api_errors(server, browser, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    ctx = browser.new_context(viewport={"width": 1024, "height": 700})
    page = ctx.new_page()
    try:
        page.goto(server.url + "/")
        page.click("#predict")  # nothing chosen: refused in the page
        page.wait_for_selector("#error:not([hidden])")
        assert "poster" in page.inner_text("#error").lower()
        page.set_input_files("#poster", str(bad))
        page.click("#predict")
        page.wait_for_function("document.querySelector('#error').textContent.includes('broken.jpg')",
                               timeout=15_000)
        assert page.eval_on_selector_all("#bars li", "els => els.length") == 0
    finally:
        ctx.close()
