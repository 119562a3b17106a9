"""The served web page end to end in real headless Chromium (Debian's /usr/bin/chromium via Playwright).

Uploads a shipped poster, types its plot, presses Predict and checks the bar chart against the API's answer for
the same input. Screenshots at a laptop and a phone width go to ``test-artifacts/`` (repo root) for a human look.
"""
from __future__ import annotations

import json
import math
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


@pytest.mark.parametrize("width, height", [(1024, 700), (390, 844)])
def test_clear_empties_the_form_and_the_chart(server, browser, shipped, width, height):
    poster, plot = _shipped_title(shipped, 1)
    ctx, page, errors = _open_page(browser, width, height)
    try:
        page.goto(server.url + "/")
        page.wait_for_selector("#metrics table", timeout=15_000)
        page.set_input_files("#poster", str(poster))
        page.fill("#plot", plot)
        page.click("#options > summary")
        page.fill("#top-k", "2")
        page.click("#predict")
        page.wait_for_selector("#bars li.bar", timeout=30_000)
        page.click("#bars li.bar >> nth=0")
        page.wait_for_selector("#why-scores li", timeout=60_000)
        box = page.locator("#clear").bounding_box()  # beside Predict, inside the form, on a phone too
        assert box and box["x"] + box["width"] <= width and page.locator("#predict").bounding_box()["width"] > box["width"]
        page.click("#clear")
        page.wait_for_function("document.querySelector('#plot-count').textContent === '0'", timeout=5_000)
        assert page.input_value("#plot") == "" and page.input_value("#top-k") == ""
        assert page.is_hidden("#preview") and page.is_hidden("#poster-meta") and page.is_visible("#drop-text")
        assert page.inner_text("#options-state") == ""
        # the chart and its "Why?" answered inputs that are gone
        assert page.eval_on_selector_all("#bars li", "els => els.length") == 0
        assert page.is_hidden("#summary") and page.is_hidden("#why") and page.is_visible("#placeholder")
        page.click("#predict")  # nothing left to send: refused in the page, as on a fresh page
        page.wait_for_selector("#error:not([hidden])")
    finally:
        ctx.close()
    assert not errors, errors


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
        # the keyboard reaches the view too: Tab from Clear (after Predict) to the first genre, with a visible
        # focus ring
        page.focus("#clear")
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


def _api(server, path: str, poster: Path, plot: str, **fields) -> dict:
    import httpx

    with open(poster, "rb") as fh:
        res = httpx.post(server.url + path, files={"poster": (poster.name, fh, "image/jpeg")},
                         data={"plot": plot, **{k: str(v) for k, v in fields.items()}}, timeout=120)
    res.raise_for_status()
    return res.json()


def _chart(page) -> list[dict]:
    return page.eval_on_selector_all("#bars li.bar", """els => els.map(li => ({
        genre: li.dataset.genre, on: li.classList.contains('on'), label: li.getAttribute('aria-label'),
        tick: li.querySelector('.tick') ? parseFloat(li.querySelector('.tick').style.left) : null}))""")


@pytest.mark.parametrize("width, height, name", [(1366, 800, "desktop"), (390, 844, "phone")])
def test_options_set_one_threshold_and_at_most_k_genres(server, browser, shipped, width, height, name):
    """The Options disclosure: one threshold for every genre and/or at most K genres, sent with /predict and with
    /explain (the "Why?" rows agree with the chart), said in the summary, checked in the page; a change redraws
    the chart on screen rather than leaving it answering other options."""
    poster, plot = _shipped_title(shipped, 2)
    default = _api(server, "/predict", poster, plot)
    n = len(default["scores"])
    third = list(default["scores"].values())[2]
    thr = max(0.0, math.floor((third - 0.001) * 100) / 100)  # the three most probable genres reach it
    with_thr = _api(server, "/predict", poster, plot, threshold=thr)
    capped = _api(server, "/predict", poster, plot, threshold=thr, top_k=2)
    left_out = with_thr["genres"][2]  # above the threshold, but not among the 2 most probable
    assert len(capped["genres"]) == 2 and left_out not in capped["genres"]
    shown_pct = f"{thr * 100:.2f}".rstrip("0").rstrip(".") + "%"

    ctx, page, errors = _open_page(browser, width, height)
    # the form fields each request sends (a multipart body with a file is not readable from Playwright's request)
    page.add_init_script("""(() => { window.sentForms = []; const real = window.fetch;
        window.fetch = (url, opts) => { if (opts && opts.body instanceof FormData) sentForms.push([String(url),
            Object.fromEntries([...opts.body.entries()].map(([k, v]) => [k, typeof v === 'string' ? v : 'file']))]);
        return real(url, opts); }; })()""")

    def sent(path: str) -> list[dict]:
        return [fields for url, fields in page.evaluate("sentForms") if url == path]
    try:
        page.goto(server.url + "/")
        page.wait_for_selector("#metrics table", timeout=15_000)
        # K goes up to the number of genres the model knows; the disclosure opens from the keyboard
        assert page.eval_on_selector("#top-k", "i => [i.min, i.max, i.type]") == ["1", str(n), "number"]
        assert page.eval_on_selector("#threshold", "i => [i.min, i.max, i.step]") == ["0", "1", "0.01"]
        assert page.eval_on_selector("#options", "d => d.tagName + ' ' + d.open") == "DETAILS false"
        page.focus("#options > summary")
        page.keyboard.press("Enter")
        assert page.eval_on_selector("#options", "d => d.open")
        threshold_box, top_k_box = page.get_by_label("Threshold for every genre"), page.get_by_label("At most K genres")

        page.set_input_files("#poster", str(poster))
        page.fill("#plot", plot)
        page.click("#predict")
        page.wait_for_selector("#summary .threshold-set", timeout=30_000)  # no option: the tuned set decided

        # one threshold for every genre: a change redraws the chart on screen, with every tick at it
        threshold_box.fill(str(thr))
        threshold_box.press("Tab")
        page.wait_for_selector("#summary .decided-by", timeout=30_000)
        assert f"one threshold {shown_pct} for every genre" in page.inner_text("#summary")
        assert page.query_selector("#summary .threshold-set") is None  # the tuned set did not decide
        bars = _chart(page)
        assert [b["genre"] for b in bars if b["on"]] == with_thr["genres"]
        assert all(b["tick"] == pytest.approx(thr * 100, abs=0.06) for b in bars)
        assert "threshold (" + shown_pct + " for every genre)" in page.inner_text("#legend")

        # and at most 2 of them: the third genre reaches the threshold and is left out, and the label says so
        top_k_box.fill("2")
        top_k_box.press("Tab")
        page.wait_for_function("document.querySelector('#summary').textContent.includes('at most 2 genres')",
                               timeout=30_000)
        bars = _chart(page)
        assert [b["genre"] for b in bars if b["on"]] == capped["genres"]
        assert page.eval_on_selector_all("#summary .chip", "els => els.map(e => e.textContent)") == capped["genres"]
        out = next(b for b in bars if b["genre"] == left_out)
        assert not out["on"] and "not among the 2 most probable" in out["label"]
        assert sent("/predict")[-1]["threshold"] == page.input_value("#threshold")
        assert sent("/predict")[-1]["top_k"] == "2"
        assert len(sent("/predict")) == 3  # one Predict, then one per change
        assert "(threshold " + shown_pct + ", at most 2)" == page.inner_text("#options-state")
        page.wait_for_function("document.getAnimations().length === 0")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"web-options-{name}.png"), full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")

        # its "Why?" view is asked with the same options: every row cut at the threshold, the decision the chart's
        page.click(f"#bars li.bar[data-genre='{left_out}']")
        page.wait_for_selector("#why-scores li", timeout=60_000)
        asked = sent("/explain")[-1]
        assert float(asked["threshold"]) == thr and asked["top_k"] == "2" and asked["genre"] == left_out
        assert page.inner_text("#why-title") == f"Why {left_out}? (not predicted)"
        rows = page.eval_on_selector_all("#why-scores li", """els => els.map(li => [li.classList.contains('on'),
            li.querySelector('.tick') ? parseFloat(li.querySelector('.tick').style.left) : null])""")
        assert rows[0][0] is False
        assert [t for _, t in rows[:-1]] == pytest.approx([thr * 100] * (len(rows) - 1), abs=0.06)
        assert shown_pct in page.inner_text("#why-rule")
        page.locator("#why").screenshot(path=str(ARTIFACTS / f"web-options-why-{name}.png"))

        # a bad value is refused in the page, naming the field; the chart it no longer answers goes
        threshold_box.fill("1.5")
        threshold_box.press("Tab")
        page.wait_for_selector("#options-error:not([hidden])", timeout=10_000)
        assert page.inner_text("#options-error") == "Threshold must be a number between 0 and 1 (0.4 means 40%)."
        assert page.get_attribute("#threshold", "aria-invalid") == "true"
        assert "options-error" in page.get_attribute("#threshold", "aria-describedby")
        assert page.eval_on_selector_all("#bars li", "els => els.length") == 0 and page.is_visible("#placeholder")
        threshold_box.fill(str(thr))
        top_k_box.fill(str(n + 1))
        page.click("#predict")
        page.wait_for_function("document.querySelector('#options-error').textContent.includes('At most K')")
        assert page.inner_text("#options-error") == f"At most K genres must be a whole number from 1 to {n}."
        assert page.evaluate("document.activeElement.id") == "top-k"  # Predict sends the user to the field
        page.locator("#form").screenshot(path=str(ARTIFACTS / f"web-options-error-{name}.png"))
        assert page.get_attribute("#threshold", "aria-invalid") == "false"
        # fixing it brings the chart back without another press of Predict
        top_k_box.fill("")
        top_k_box.press("Tab")
        page.wait_for_selector("#bars li.bar", timeout=30_000)
        assert page.is_hidden("#options-error") and page.get_attribute("#top-k", "aria-invalid") == "false"
        assert [b["genre"] for b in _chart(page) if b["on"]] == with_thr["genres"]

        # K alone: the K most probable, whatever the thresholds, so no tick is drawn
        threshold_box.fill("")
        top_k_box.fill("1")
        top_k_box.press("Tab")
        page.wait_for_function("document.querySelector('#summary').textContent.includes('the most probable genre')",
                               timeout=30_000)
        bars = _chart(page)
        assert [b["genre"] for b in bars if b["on"]] == list(default["scores"])[:1]
        assert all(b["tick"] is None for b in bars) and page.is_hidden("#legend-tick")
        assert bars[0]["label"].endswith("predicted, the most probable")
        assert "the most probable is predicted" in page.inner_text("#legend")
        page.click("#bars li.bar:nth-child(1)")  # its "Why?" rows: no tick either, the chart's decision first
        page.wait_for_selector("#why-scores li", timeout=60_000)
        assert sent("/explain")[-1]["top_k"] == "1" and "threshold" not in sent("/explain")[-1]
        assert page.eval_on_selector_all("#why-scores li .tick", "els => els.length") == 0
        assert page.eval_on_selector("#why-scores li", "li => li.classList.contains('on')")
        assert page.inner_text("#why-rule").startswith("No threshold: the chart predicts the most probable genre")

        # no option: the tuned thresholds again
        top_k_box.fill("")
        top_k_box.press("Tab")
        page.wait_for_selector("#summary .threshold-set", timeout=30_000)
        bars = _chart(page)
        assert [b["genre"] for b in bars if b["on"]] == default["genres"]
        assert sorted(sent("/predict")[-1]) == ["plot", "poster"]
        for b in bars:
            assert b["tick"] == pytest.approx(default["thresholds"][b["genre"]] * 100, abs=0.06)

        # Enter in an option predicts, once (the change and the form's submission are one request)
        before = len(sent("/predict"))
        threshold_box.fill("0.3")
        threshold_box.press("Enter")
        page.wait_for_function("document.querySelector('#summary').textContent.includes('one threshold 30%')",
                               timeout=30_000)
        page.wait_for_timeout(300)
        assert len(sent("/predict")) == before + 1
    finally:
        ctx.close()
    assert not errors, errors
    assert overflow <= 0, f"page scrolls sideways at {width}px ({overflow}px too wide)"


def test_why_view_shows_a_failed_explanation_as_an_error(server, browser, shipped):
    """/explain refused (422 with a JSON error), broken (500 without JSON) or unreachable: the "Why?" view says so
    in the page's error style, announced at once (role=alert); "Explaining …" stays a neutral status."""
    _, plot = _shipped_title(shipped, 3)
    ctx, page, errors = _open_page(browser, 1024, 760)
    try:
        page.goto(server.url + "/")
        page.fill("#plot", plot)
        page.click("#predict")
        page.wait_for_selector("#bars li.bar", timeout=30_000)
        genres = page.eval_on_selector_all("#bars li.bar", "els => els.map(li => li.dataset.genre)")
        # every text #why-status shows, to check it was the neutral status while explaining
        page.evaluate("""(() => { window.statusSeen = []; const s = document.querySelector('#why-status');
            new MutationObserver(() => statusSeen.push(s.textContent)).observe(s, {childList: true,
            characterData: true, subtree: true}); })()""")
        failures = [
            (lambda r: r.fulfill(status=422, json={"error": "genre: Nonsense is not a genre", "status": 422}),
             "genre: Nonsense is not a genre"),
            (lambda r: r.fulfill(status=500, body="Internal Server Error", content_type="text/plain"),
             "the server answered 500"),
            (lambda r: r.abort(), "could not reach the server"),
        ]
        red = page.eval_on_selector("#error", "e => [getComputedStyle(e).backgroundColor, getComputedStyle(e).color]")
        for i, (handler, says) in enumerate(failures):
            page.route("**/explain", handler)
            page.click(f"#bars li.bar[data-genre='{genres[i]}']")
            page.wait_for_selector("#why-error:not([hidden])", timeout=15_000)
            text = page.inner_text("#why-error")
            assert text.startswith(f"Could not explain {genres[i]}: ") and says in text, text
            shown = page.eval_on_selector("#why-error", "e => [e.getAttribute('role'), e.classList.contains('error'),"
                                          " getComputedStyle(e).backgroundColor, getComputedStyle(e).color]")
            assert shown == ["alert", True, *red]
            assert page.is_hidden("#why-status") and page.inner_text("#why-status") == ""
            assert page.is_hidden("#why-note")  # "measured on the model" describes an explanation, not a failure
            if i == 0:
                ARTIFACTS.mkdir(exist_ok=True)
                page.locator("#why").screenshot(path=str(ARTIFACTS / "web-why-error.png"))
            page.unroute("**/explain")
        # the next genre explains as before: the error goes, the status was neutral meanwhile
        page.click(f"#bars li.bar[data-genre='{genres[3]}']")
        page.wait_for_selector("#why-scores li", timeout=60_000)
        assert page.is_hidden("#why-error") and page.is_visible("#why-note")
        seen = page.evaluate("statusSeen")
        assert f"Explaining {genres[3]}\u2026" in seen and not any("Could not" in s for s in seen), seen
        assert page.eval_on_selector("#why-status", "e => e.getAttribute('role')") == "status"
    finally:
        ctx.close()
    # the browser logs each failed request; nothing else may go wrong in the page
    assert not [e for e in errors if not e.startswith("Failed to load resource")], errors


def test_a_paste_cut_to_the_plot_limit_is_said(server, browser):
    """The plot box's maxlength cuts a long paste without a word: the page says how much was left out (counting
    the selection the paste replaced), until the text is edited below the limit or the form is reset."""
    ctx = browser.new_context(viewport={"width": 1024, "height": 760}, device_scale_factor=1,
                              permissions=["clipboard-read", "clipboard-write"])
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    def paste(text: str) -> None:
        page.evaluate("t => navigator.clipboard.writeText(t)", text)
        page.focus("#plot")
        page.keyboard.press("Control+V")

    try:
        page.goto(server.url + "/")
        page.wait_for_selector("#metrics table", timeout=15_000)
        limit = page.eval_on_selector("#plot", "t => t.maxLength")
        assert limit == 20_000  # GET /model's limits.plot_chars
        page.fill("#plot", "x" * (limit - 10))
        page.eval_on_selector("#plot", "t => { t.focus(); t.setSelectionRange(0, 100); }")
        # 600 characters on the clipboard, 500 once its CRLF line breaks are one each; 110 fit in place of the
        # 100 selected and the 10 free
        paste("line\r\n" * 100)
        page.wait_for_function("document.querySelector('#paste-note').textContent !== ''", timeout=5_000)
        assert len(page.input_value("#plot")) == limit
        assert page.inner_text("#paste-note") == \
            "The pasted text was cut to fit 20,000 characters (390 characters left out)."
        assert page.is_visible("#paste-note") and page.get_attribute("#paste-note", "role") == "status"
        assert page.inner_text("#plot-count") == "20,000"
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#form").screenshot(path=str(ARTIFACTS / "web-paste-cut.png"))
        page.keyboard.press("Backspace")  # edited below the limit: the notice goes
        page.wait_for_function("document.querySelector('#paste-note').textContent === ''", timeout=5_000)
        assert page.is_hidden("#paste-note")
        paste("a")  # fits exactly: nothing to say
        assert len(page.input_value("#plot")) == limit and page.is_hidden("#paste-note")
        paste("bbbb")  # no room at all: all of it left out
        page.wait_for_function("document.querySelector('#paste-note').textContent.includes('(4 characters')",
                               timeout=5_000)
        page.eval_on_selector("#form", "f => f.reset()")
        page.wait_for_function("document.querySelector('#plot-count').textContent === '0'", timeout=5_000)
        assert page.is_hidden("#paste-note") and page.input_value("#plot") == ""
    finally:
        ctx.close()
    assert not errors, errors
