"""Pictures and pages for explanations (``explain.py``): the poster overlay PNG, a text table, a small HTML page.

Overlay: the poster, the part the model never sees (outside the centre crop) darkened, and over the crop the
cell weights upsampled smoothly: orange where a region raised the genre, blue where it lowered it, opacity
proportional to |weight| / max |weight| of that genre (the scale is per genre; the numbers are in the JSON).
"""
from __future__ import annotations

import base64
import html
import io

import numpy as np

OVERLAY_MAX_SIDE = 320
UP, DOWN = np.array([255, 110, 0], np.float32), np.array([30, 110, 255], np.float32)


def overlay_image(image, grid: np.ndarray, crop, max_side: int = OVERLAY_MAX_SIDE):
    """RGB PIL image: ``image`` with ``grid`` ([h, w] weights over ``crop`` = (l, t, r, b)) drawn on it."""
    from PIL import Image, ImageDraw

    im = image.convert("RGB")
    im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    fx, fy = im.width / image.width, im.height / image.height  # per axis: a 1 x 5000 poster rounds unevenly
    l, r = (int(round(v * fx)) for v in crop[0::2])
    t, b = (int(round(v * fy)) for v in crop[1::2])
    l, t, r, b = max(0, l), max(0, t), min(im.width, r), min(im.height, b)
    px = np.asarray(im, np.float32) * 0.35  # outside the crop: dimmed, the model does not see it
    px[t:b, l:r] = np.asarray(im, np.float32)[t:b, l:r]
    g = np.asarray(grid, np.float32)
    peak = float(np.abs(g).max())
    if peak > 0 and r > l and b > t:
        heat = np.asarray(Image.fromarray(g / peak, mode="F").resize((r - l, b - t), Image.Resampling.BICUBIC))
        heat = np.clip(heat, -1, 1)[..., None]
        colour = np.where(heat >= 0, UP, DOWN)
        alpha = 0.65 * np.abs(heat)
        px[t:b, l:r] = px[t:b, l:r] * (1 - alpha) + colour * alpha
    out = Image.fromarray(np.clip(px, 0, 255).astype(np.uint8))
    if r > l and b > t:  # a crop thinner than a pixel once shrunk gets no outline
        ImageDraw.Draw(out).rectangle((l, t, r - 1, b - 1), outline=(255, 255, 255))
    return out


def png_bytes(im) -> bytes:
    """PNG with a 128-colour palette: a quarter of the RGB file's size (overlays travel in JSON), no visible loss
    at this size."""
    from PIL import Image

    buf = io.BytesIO()
    im.quantize(colors=128, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(buf, format="PNG")
    return buf.getvalue()


def overlay_png_base64(image, grid, crop) -> str:
    return base64.b64encode(png_bytes(overlay_image(image, grid, crop))).decode("ascii")


# -- text ---------------------------------------------------------------------------------------------------
def _fmt(v) -> str:
    return "   -" if v is None else f"{v:.2f}"


def table(expl: dict) -> str:
    """The per-genre table the CLI prints: score with both inputs, poster only, plot only, top words."""
    lines = [f"{'genre':<14} {'pred':<4} {'score':>5} {'poster':>6} {'plot':>5}  top words (log-odds)"]
    for e in expl["genres"]:
        words = ", ".join(f"{w['text']} {w['weight']:+.2g}" for w in e["top_words"][:5]) or "-"
        if len(words) > 70:
            words = words[:67] + "..."
        lines.append(f"{e['genre']:<14} {'yes' if e['predicted'] else '':<4} {_fmt(e['score']):>5} "
                     f"{_fmt(e['poster_only']):>6} {_fmt(e['plot_only']):>5}  {words}")
    lines.append(f"inputs: {', '.join(expl['used'])}; predicted: {', '.join(expl['predicted']) or '(none)'}; "
                 f"{expl['seconds']:.2f} s")
    return "\n".join(lines)


# -- HTML ---------------------------------------------------------------------------------------------------
def highlighted_plot(expl: dict, genre: dict) -> str:
    """The plot as HTML with each word's background tinted by its weight for ``genre`` (orange up, blue down)."""
    plot = expl["plot"]
    if plot is None or genre.get("word_weights") is None:
        return ""
    text, w = plot["text"], genre["word_weights"]
    peak = max((abs(v) for v in w), default=0) or 1.0
    parts, pos = [], 0
    for (s, e), v in zip(plot["words"], w):
        parts.append(html.escape(text[pos:s]))
        rgb = "255,110,0" if v >= 0 else "30,110,255"
        parts.append(f'<span title="{v:+.3f}" style="background:rgba({rgb},{min(1, abs(v) / peak) * 0.75:.2f})">'
                     f"{html.escape(text[s:e])}</span>")
        pos = e
    parts.append(html.escape(text[pos:]))
    return "".join(parts)


STYLE = (".gf-x section{border-top:1px solid #ddd;padding:.5rem 0}"
         ".gf-x .row{display:flex;gap:1.5rem;align-items:flex-start}"
         ".gf-x .row img{max-width:240px;flex:none;border:0;margin:0}.gf-x .s{color:#555;margin:0}"
         ".gf-x .plot{margin:0;line-height:1.6}.gf-x h3,.gf-x h4{margin:.3rem 0}")
LEGEND = ("Weights are measured on the model: how much the genre's log-odds fall when a word (or phrase) is deleted "
          "or a poster region is blanked. Orange raised the genre, blue lowered it; the dimmed part of the poster "
          "is outside the square the model sees.")


def genre_blocks(expl: dict, heading: str = "h3") -> str:
    """One block per explained genre: its scores, the poster overlay and the plot with words tinted."""
    rows = []
    for e in expl["genres"]:
        img = (f'<img alt="poster regions for {html.escape(e["genre"])}" '
               f'src="data:image/png;base64,{e["overlay_png"]}">' if e.get("overlay_png") else "")
        scores = " · ".join(f"{k.replace('_', ' ')} {e[k]:.2f}" for k in ("score", "poster_only", "plot_only")
                            if e[k] is not None)
        thr = "never predicted from these inputs" if e["threshold"] > 1 else f"threshold {e['threshold']:.2f}"
        rows.append(f'<section><{heading}>{html.escape(e["genre"])}{" ✓ predicted" if e["predicted"] else ""}'
                    f'</{heading}><p class="s">{scores} ({thr})</p>'
                    f'<div class="row">{img}<p class="plot">{highlighted_plot(expl, e)}</p></div></section>')
    return "".join(rows)


def page(expl: dict, title: str = "genrefusion explanation") -> str:
    """A small self-contained HTML page (overlays inlined as data URLs) for ``explain.json``'s content."""
    body = ("body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}")
    return (f"<!doctype html><html lang=en><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{body}{STYLE}</style><body class=gf-x><h1>{html.escape(title)}</h1><p>Predicted: "
            f"{html.escape(', '.join(expl['predicted']) or '(none)')}. {LEGEND}</p>{genre_blocks(expl, 'h2')}"
            "</body></html>")


def report_section(entries: list[dict], note: str) -> str:
    """The run report's explanations: per showcased title, what it is, truth vs prediction, its genre blocks."""
    parts = [f"<style>{STYLE}</style><div class=gf-x><p>{html.escape(note)} {LEGEND}</p>"]
    for t in entries:
        verdict = "correct" if not t["wrong"] else "wrong: " + "; ".join(t["wrong"])
        parts.append(f"<h3>{html.escape(t['title'] or t['key'])} <small>({html.escape(t['key'])})</small></h3>"
                     f"<p>labelled: {html.escape(', '.join(t['labelled']) or '(none)')} · predicted: "
                     f"{html.escape(', '.join(t['explanation']['predicted']) or '(none)')} · "
                     f"<b>{html.escape(verdict)}</b></p>{genre_blocks(t['explanation'], 'h4')}")
    return "".join(parts) + "</div>"
