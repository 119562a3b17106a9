"""The web page's "Why?" view in real headless Chromium: predict, click a genre, and check the view against
POST /explain for the same input. Screenshots (laptop and phone width) go to ``test-artifacts/``."""
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


@pytest.mark.parametrize("width, height, name", [(1280, 900, "desktop"), (390, 844, "phone")])
def test_why_view(server, browser, shipped, width, height, name):
    import httpx

    ds = shipped / "imdb_top250"
    rec = json.loads((ds / "titles.jsonl").read_text(encoding="utf-8").splitlines()[1])
    poster, plot = ds / rec["poster"], rec["plot"]
    ctx = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(server.url + "/")
        page.set_input_files("#poster", str(poster))
        page.fill("#plot", plot)
        page.click("#predict")
        page.wait_for_selector("#bars li.bar", timeout=30_000)
        assert page.is_hidden("#why")
        genre = page.eval_on_selector("#bars li.bar:nth-child(2)", "li => li.dataset.genre")
        page.click("#bars li.bar:nth-child(2)")
        page.wait_for_selector("#why-plot span.w", timeout=60_000)
        page.wait_for_function("document.querySelector('#why-overlay').naturalWidth > 0", timeout=10_000)
        page.wait_for_timeout(500)  # bar transitions
        title = page.inner_text("#why-title")
        rows = page.eval_on_selector_all("#why-scores li", "els => els.map(li => [li.dataset.genre, "
                                                           "Number(li.dataset.score)])")
        words = page.eval_on_selector_all("#why-plot span.w", "els => els.map(s => [s.textContent, "
                                                               "Number(s.dataset.weight)])")
        picked = page.eval_on_selector_all("#bars li.picked", "els => els.map(li => li.dataset.genre)")
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#why").scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / f"web-why-{name}.png"), full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        # the keyboard reaches the view too: another genre with Enter
        page.focus("#bars li.bar:nth-child(1)")
        page.keyboard.press("Enter")
        first = page.eval_on_selector("#bars li.bar:nth-child(1)", "li => li.dataset.genre")
        page.wait_for_function(f"document.querySelector('#why-title').textContent.startsWith('Why {first}?')",
                               timeout=60_000)
    finally:
        ctx.close()

    assert not errors, errors
    with open(poster, "rb") as fh:
        want = httpx.post(server.url + "/explain", files={"poster": (poster.name, fh, "image/jpeg")},
                          data={"plot": plot, "genre": genre}, timeout=120).json()
    g = want["genres"][0]
    assert title.startswith(f"Why {genre}?") and picked == [genre]
    assert rows == [["poster + plot", g["score"]], ["poster only", g["poster_only"]], ["plot only", g["plot_only"]],
                    ["neither", g["no_input"]]]
    text = want["plot"]["text"]
    assert [w for w, _ in words] == [text[s:e] for s, e in want["plot"]["words"]]
    assert [v for _, v in words] == pytest.approx(g["word_weights"])
    assert overflow <= 0, f"page scrolls sideways at {width}px ({overflow}px too wide)"
