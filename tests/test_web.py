"""The served web page end to end in real headless Chromium (Debian's /usr/bin/chromium via Playwright).

Uploads a shipped poster, types its plot, presses Predict and checks the bar chart against the API's answer for
the same input. Screenshots at a laptop and a phone width go to ``test-artifacts/`` (repo root) for a human look.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from preflight import CHROMIUM, browser_problem

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

# Outside CI a machine without Chromium skips these; in CI conftest stops the run instead (never a silent skip).
pytestmark = [pytest.mark.browser, pytest.mark.skipif(browser_problem() is not None, reason=str(browser_problem()))]


@pytest.fixture(scope="module")
def server(tiny_run):
    from genrefusion.serve.app import create_app
    from genrefusion.serve.server import BackgroundServer

    with BackgroundServer(create_app(tiny_run, warmup=True)) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser():
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        try:
            yield b
        finally:
            b.close()


def _open_page(browser, width: int, height: int):
    """(context, page, the page's JS errors and console errors as they happen)."""
    ctx = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return ctx, page, errors


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
        # measure once the bar-width transitions have finished (finished CSS transitions leave getAnimations)
        page.wait_for_function("document.getAnimations().length === 0")
        bars = page.eval_on_selector_all("#bars li.bar", """els => els.map(li => ({
            genre: li.dataset.genre, score: Number(li.dataset.score), on: li.classList.contains('on'),
            fill: li.querySelector('.fill').getBoundingClientRect().width,
            track: li.querySelector('.track').getBoundingClientRect().width,
            tick: parseFloat(li.querySelector('.tick').style.left)}))""")
        labels = page.eval_on_selector_all("#bars li.bar", "els => els.map(li => li.getAttribute('aria-label'))")
        live = page.evaluate("[...document.querySelectorAll('[aria-live]')].map(e => e.id)")
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
    # a screen reader hears each genre's decision and threshold, and a new answer as its summary only (not the
    # whole chart and "Why?" view, which a live region around the results card read out on every change)
    for b, label in zip(bars, labels):
        assert label.startswith(f"Why {b['genre']}? probability ")
        assert (", predicted" in label) == b["on"] and (", not predicted" in label) == (not b["on"])
        assert "threshold" in label
    assert "summary" in live and "results" not in live
    assert chosen[0] == want["threshold_set"] and "thresholds" in chosen[1]
    for b in bars:
        assert b["tick"] == pytest.approx(want["thresholds"][b["genre"]] * 100, abs=0.06)
        assert b["fill"] == pytest.approx(b["score"] * b["track"], abs=2.0)  # bar length is the probability
    assert overflow <= 0, f"page scrolls sideways at {width}px ({overflow}px too wide)"


def test_page_shows_api_errors(server, browser, shipped, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    _, plot = _shipped_title(shipped, 2)
    ctx = browser.new_context(viewport={"width": 1024, "height": 700})
    page = ctx.new_page()
    try:
        page.goto(server.url + "/")
        page.click("#predict")  # nothing chosen: refused in the page
        page.wait_for_selector("#error:not([hidden])")
        assert "poster" in page.inner_text("#error").lower()
        page.fill("#plot", plot)
        page.keyboard.press("Control+Enter")  # from the plot box, without leaving the keyboard
        page.wait_for_selector("#bars li.bar", timeout=30_000)
        assert page.is_hidden("#error") and page.input_value("#plot") == plot  # no new line typed
        page.set_input_files("#poster", str(bad))
        page.click("#predict")
        page.wait_for_function("document.querySelector('#error').textContent.includes('broken.jpg')",
                               timeout=15_000)
        # the previous title's genres are gone: no chart answers inputs it was not computed from
        assert page.eval_on_selector_all("#bars li", "els => els.length") == 0
        assert page.is_hidden("#summary") and page.is_hidden("#legend") and page.is_visible("#placeholder")
        # and the page still works after the error
        page.click("#clear-poster")
        page.click("#predict")
        page.wait_for_selector("#bars li.bar", timeout=30_000)
        assert page.is_hidden("#error")
    finally:
        ctx.close()


def test_a_refused_poster_leaves_no_poster_on_screen(server, browser, shipped, tmp_path):
    poster, _ = _shipped_title(shipped, 3)
    big = tmp_path / "huge.jpg"
    big.write_bytes(b"\xff\xd8\xff" + bytes(11 * 1024 * 1024))  # over the 10 MB limit: refused in the page
    ctx, page, errors = _open_page(browser, 1024, 700)
    try:
        page.goto(server.url + "/")
        page.wait_for_selector("#metrics table", timeout=15_000)
        page.set_input_files("#poster", str(poster))
        page.wait_for_selector("#preview:not([hidden])")
        page.set_input_files("#poster", str(big))
        page.wait_for_selector("#error:not([hidden])")
        assert "huge.jpg" in page.inner_text("#error") and "10 MB" in page.inner_text("#error")
        # the earlier poster is not shown as if it were still chosen (Predict would not send it)
        assert page.is_hidden("#preview") and page.is_hidden("#poster-meta") and page.is_visible("#drop-text")
    finally:
        ctx.close()
    assert not errors, errors


@pytest.mark.parametrize("width, height, name", [(1280, 860, "desktop"), (390, 844, "phone")])
def test_no_broken_preview_before_a_poster_is_chosen(server, browser, width, height, name):
    ctx = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
    page = ctx.new_page()
    try:
        page.goto(server.url + "/")
        page.wait_for_selector("#metrics table", timeout=15_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"web-empty-{name}.png"), full_page=True)
        # the <img> has no src yet: hidden means not drawn at all (no broken-image box, no alt text)
        shown = page.eval_on_selector("#preview", "img => [getComputedStyle(img).display, img.offsetWidth]")
        assert shown == ["none", 0]
        assert page.is_visible("#drop-text") and not page.is_visible("#poster-meta")
        assert not page.is_visible("#key-form")  # an open server asks for no key
    finally:
        ctx.close()


KEY = "web-test-key-0123456789"


@pytest.fixture(scope="module")
def keyed_server(tiny_run):
    from genrefusion.serve.app import create_app
    from genrefusion.serve.server import BackgroundServer

    with BackgroundServer(create_app(tiny_run, api_key=KEY)) as srv:
        yield srv


@pytest.mark.parametrize("width, height, name", [(1280, 860, "desktop"), (390, 844, "phone")])
def test_page_asks_for_the_api_key_once(keyed_server, browser, shipped, width, height, name):
    poster, plot = _shipped_title(shipped, 1)
    ctx = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
    page = ctx.new_page()
    sent: list[str | None] = []
    page.on("request", lambda r: sent.append(r.headers.get("x-api-key")) if "/predict" in r.url else None)
    try:
        page.goto(keyed_server.url + "/")
        page.wait_for_selector("#key-form:not([hidden])", timeout=15_000)  # GET /model answered 401
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"web-key-{name}.png"), full_page=True)
        page.fill("#api-key", "not-the-key-at-all")
        page.click("#key-submit")
        page.wait_for_selector("#key-error:not([hidden])", timeout=15_000)
        assert "refused" in page.inner_text("#key-error")
        page.fill("#api-key", KEY)
        page.click("#key-submit")
        page.wait_for_selector("#metrics table", timeout=15_000)  # /model now answers
        assert not page.is_visible("#key-form")
        page.set_input_files("#poster", str(poster))
        page.fill("#plot", plot)
        page.click("#predict")
        page.wait_for_selector("#bars li.bar", timeout=30_000)
        assert not page.is_visible("#key-form") and sent == [KEY]  # asked once, then sent with each request
        page.reload()  # the same tab keeps the key
        page.wait_for_selector("#metrics table", timeout=15_000)
        assert not page.is_visible("#key-form")
    finally:
        ctx.close()


@pytest.mark.parametrize("width, height, name", [(1280, 900, "desktop"), (390, 844, "phone")])
def test_why_view_explains_a_genre(server, browser, shipped, width, height, name, monkeypatch):
    import httpx
    import numpy as np

    poster, plot = _shipped_title(shipped, 1)
    # poster-only and plot-only thresholds unlike the both-inputs ones (the tiny run's sets agree)
    clf = server.server.config.app.state.classifier
    real = clf.thresholds_for
    own = {("poster",): 0.25, ("plot",): 0.75}
    monkeypatch.setattr(clf, "thresholds_for", lambda used: (np.full(len(clf.genres_), own[tuple(used)]), used[0])
                        if tuple(used) in own else real(used))
    ctx, page, errors = _open_page(browser, width, height)
    try:
        page.goto(server.url + "/")
        page.set_input_files("#poster", str(poster))
        page.fill("#plot", plot)
        page.click("#predict")
        page.wait_for_selector("#bars li.bar", timeout=30_000)
        assert page.is_hidden("#why")
        genre = page.eval_on_selector("#bars li.bar:nth-child(2)", "li => li.dataset.genre")
        page.click("#bars li.bar:nth-child(2)")
        # the view opens under the whole chart: it is scrolled into sight, not left below the fold
        page.wait_for_function("(() => { const r = document.querySelector('#why').getBoundingClientRect();"
                               " return r.top >= 0 && r.top < window.innerHeight * 0.75; })()", timeout=10_000)
        page.wait_for_selector("#why-plot span.w", timeout=60_000)
        page.wait_for_function("document.querySelector('#why-overlay').naturalWidth > 0", timeout=10_000)
        page.wait_for_function("document.getAnimations().length === 0")  # bar transitions finished
        title = page.inner_text("#why-title")
        rows = page.eval_on_selector_all("#why-scores li", "els => els.map(li => [li.dataset.genre, "
                                                           "Number(li.dataset.score)])")
        ticks = page.eval_on_selector_all("#why-scores li", "els => els.map(li => li.querySelector('.tick') ? "
                                                            "parseFloat(li.querySelector('.tick').style.left) : null)")
        words = page.eval_on_selector_all("#why-plot span.w", "els => els.map(s => [s.textContent, "
                                                               "Number(s.dataset.weight)])")
        picked = page.eval_on_selector_all("#bars li.picked", "els => els.map(li => li.dataset.genre)")
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#why").scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / f"web-why-{name}.png"), full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        # the keyboard reaches the view too: Tab from Predict to the first genre, with a visible focus ring
        page.focus("#predict")
        page.keyboard.press("Tab")
        ring = page.evaluate("(() => { const a = document.activeElement, s = getComputedStyle(a);"
                             " return [a.dataset.genre || a.id, s.outlineStyle, parseFloat(s.outlineWidth)]; })()")
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
    assert ring[0] == first and ring[1] != "none" and ring[2] >= 2, ring
    # poster only / plot only are ticked at the thresholds tuned for that input alone; "neither" has none
    assert ticks[:3] == pytest.approx([g["threshold"] * 100, 25, 75], abs=0.06)
    assert ticks[3] is None
    assert title.startswith(f"Why {genre}?") and picked == [genre]
    assert rows == [["poster + plot", g["score"]], ["poster only", g["poster_only"]], ["plot only", g["plot_only"]],
                    ["neither", g["no_input"]]]
    text = want["plot"]["text"]
    assert [w for w, _ in words] == [text[s:e] for s, e in want["plot"]["words"]]
    assert [v for _, v in words] == pytest.approx(g["word_weights"])
    assert overflow <= 0, f"page scrolls sideways at {width}px ({overflow}px too wide)"


def test_why_view_shortens_a_long_phrase(server, browser, shipped):
    """A long plot is weighed by phrases of up to half the plot: the "raised it most" list shows a phrase's first
    words (all of it on hover), not hundreds of words. The /explain answer is the server's, its phrase lengthened."""
    _, plot = _shipped_title(shipped, 5)
    phrase = " ".join(f"word{i}" for i in range(300))

    def lengthen(route):
        resp = route.fetch()
        data = resp.json()
        data["genres"][0]["top_words"] = [{"text": phrase, "weight": 1.5}]
        route.fulfill(response=resp, json=data)

    ctx, page, errors = _open_page(browser, 1024, 700)
    try:
        page.route("**/explain", lengthen)
        page.goto(server.url + "/")
        page.fill("#plot", plot)
        page.click("#predict")
        page.wait_for_selector("#bars li.bar", timeout=30_000)
        page.click("#bars li.bar:nth-child(1)")
        page.wait_for_selector("#why-top span.up", timeout=60_000)
        shown = page.eval_on_selector("#why-top span.up", "s => [s.textContent, s.title]")
    finally:
        ctx.close()
    assert not errors, errors
    assert shown[0] == " ".join(phrase.split()[:12]) + " \u2026" and shown[1] == phrase
