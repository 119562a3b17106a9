"""Plots: empty, whitespace, 1 MB, non-UTF-8 bytes, lone surrogates, control characters (refused with one line);
HTML/markup, emoji and non-Latin scripts (work) -- through the validator, `genrefusion predict` (one title and
--batch), the Python API and the REST API."""
from __future__ import annotations

import json

import pytest

from genrefusion.data.validate import validate_dataset
from genrefusion.errors import BadInput

from .helpers import assert_one_line_error, run_cli, run_cli_subprocess

MEGABYTE = ("A retired hitman returns for one last job in a city of rain. " * 17000)[:1_000_000]

# plots that must work everywhere
FINE = {
    "html": "<p>A <b>detective</b> &amp; his <i>dog</i> solve a murder.</p><script>alert('x')</script>",
    "markdown": "# Plot\n\n* a **heist** goes wrong\n* [link](http://example.com)\n\n```\ncode\n```",
    "emoji": "👻🏚️ A haunted house 😱🔪 and a family of five 👨‍👩‍👧‍👦. 🎬",
    "cjk": "東京で刑事が連続殺人事件を追う。彼は過去の秘密に直面する。",
    "arabic": "محقق يطارد قاتلا متسلسلا في مدينة مظلمة.",
    "cyrillic": "Детектив расследует убийство в маленьком городе.",
    "devanagari": "एक जासूस एक छोटे शहर में हत्या की जांच करता है।",
    "rtl-mixed": "A spy \u202eesrever\u202c in Tel Aviv, עיר ללא הפסקה, 2024.",
    "combining": "Ame\u0301lie's Zalgo: t\u0337\u0331h\u0334e\u0335 e\u0336n\u0338d\u0334",
    "one-word": "Zombies",
    "tabs-newlines": "Line one.\n\tLine two.\r\nLine three.",
}
# text that is refused, with the words the error must contain
EMPTY = {"empty": "", "spaces": "   ", "whitespace-mix": " \n\t\r\n \u00a0"}


def _dataset(root, write_raw_dataset, plots: dict):
    recs = [{"id": k, "genres": ["Drama"], "plot": v, "poster": None} for k, v in plots.items()]
    return write_raw_dataset(root, recs, genres=["Drama"], name="plots")


# -- validator ----------------------------------------------------------------------------------------------------
def test_validator_accepts_markup_emoji_scripts_and_1mb(tmp_path, write_raw_dataset, inputs):
    plots = {**FINE, "megabyte": MEGABYTE}
    rep = validate_dataset(_dataset(tmp_path / "ds", write_raw_dataset, plots), workers=1)
    inputs(len(plots), "dataset rows")
    assert rep.problems == [] and rep.usable_titles == len(plots) and rep.with_plot == len(plots)


@pytest.mark.parametrize("name", list(EMPTY))
def test_validator_flags_empty_plots_by_id(name, tmp_path, write_raw_dataset):
    rep = validate_dataset(_dataset(tmp_path / "ds", write_raw_dataset, {name: EMPTY[name], "ok": "A plot."}))
    assert [(p.id, p.kind) for p in rep.problems] == [(name, "empty-plot")]
    assert not rep.usable(name) and rep.usable("ok")  # no poster either: nothing left to learn from


@pytest.mark.parametrize("junk", [b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\x80abc", b"caf\xe9"])
def test_validator_reports_non_utf8_plot_against_its_id(junk, tmp_path, write_raw_dataset):
    line = b'{"id": "latin1", "genres": ["Drama"], "plot": "Bad ' + junk + b' bytes", "poster": null}\n'
    root = write_raw_dataset(tmp_path / "ds", [{"id": "ok", "genres": ["Drama"], "plot": "Fine."}],
                             genres=["Drama"], lines=[line, b'{"id": "after", "genres": ["Drama"], "plot": "Kept."}\n'])
    rep = validate_dataset(root)
    assert [(p.id, p.kind) for p in rep.problems] == [("latin1", "bad-plot")]
    assert "UTF-8" in rep.problems[0].message
    assert rep.usable("ok") and rep.usable("after") and rep.titles == 3


@pytest.mark.parametrize("ch", ["\x00", "\x07", "\x1b", "\x7f", "\x85"])
def test_validator_flags_control_characters(ch, tmp_path, write_raw_dataset):
    rep = validate_dataset(_dataset(tmp_path / "ds", write_raw_dataset, {"ctl": f"A plot{ch}with junk."}))
    assert [(p.id, p.kind) for p in rep.problems] == [("ctl", "bad-plot")]
    assert f"U+{ord(ch):04X}" in rep.problems[0].message


def test_validate_cli_with_bad_plots_one_line_each(tmp_path, write_raw_dataset):
    root = write_raw_dataset(tmp_path / "ds", [{"id": "e", "genres": ["Drama"], "plot": ""},
                                               {"id": "ok", "genres": ["Drama"], "plot": FINE["emoji"]}],
                             genres=["Drama"], lines=[b'{"id": "b", "genres": ["Drama"], "plot": "\xff"}\n'])
    rc, out, err = run_cli(["validate", root])
    assert rc == 0 and "Traceback" not in err
    assert sorted(ln.split(":")[0] for ln in err.splitlines() if ln.strip()) == ["b", "e"]
    assert "usable: 1" in out


# -- Python API -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(FINE))
def test_classifier_predicts_from_any_script_or_markup(name, clf):
    res = clf.predict_one(plot=FINE[name])
    assert res["used"] == ["plot"] and set(res["scores"]) == set(clf.genres_)
    assert all(0.0 <= v <= 1.0 for v in res["scores"].values())


@pytest.mark.parametrize("plot,needle", [("", "give a poster, a plot"), ("  \n\t", "give a poster, a plot"),
                                         (MEGABYTE, "limit"), ("abc \udcff def", "UTF-8"),
                                         ("\ud800", "UTF-8"), (b"bytes plot", "plot must be text"),
                                         (42, "plot must be text")])
def test_classifier_refuses_bad_plots(plot, needle, clf):
    with pytest.raises(BadInput) as ei:
        clf.predict_one(plot=plot)
    assert needle in str(ei.value) and "\n" not in str(ei.value)


# -- `genrefusion predict` ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["html", "emoji", "cjk", "arabic"])
def test_predict_cli_plot_file_any_script_works(name, tiny_run, tmp_path):
    f = tmp_path / "plot.txt"
    f.write_text(FINE[name], encoding="utf-8")
    rc, out, err = run_cli(["predict", tiny_run, "--plot-file", f])
    assert rc == 0, err
    assert json.loads(out)["used"] == ["plot"]
    rc, out2, err = run_cli(["predict", tiny_run, "--plot", FINE[name]])
    assert rc == 0 and json.loads(out2)["scores"] == json.loads(out)["scores"]


@pytest.mark.parametrize("content,needles", [
    (b"", ["empty"]), (b"  \n\t \n", ["empty"]), (b"\xef\xbb\xbf   ", ["empty"]),  # BOM + blanks
    (b"A plot \xff\xfe with Latin-1 \xe9", ["plot.txt", "UTF-8"]),
    (MEGABYTE.encode(), ["limit"]),
])
def test_predict_cli_bad_plot_file_one_error_line(content, needles, tiny_run, tmp_path):
    f = tmp_path / "plot.txt"
    f.write_bytes(content)
    rc, out, err = run_cli(["predict", tiny_run, "--plot-file", f])
    assert_one_line_error(rc, err, *needles)
    assert out == ""


def test_predict_cli_plot_file_missing_or_folder(tiny_run, tmp_path):
    rc, _, err = run_cli(["predict", tiny_run, "--plot-file", tmp_path / "none.txt"])
    assert_one_line_error(rc, err, "none.txt", "not found")
    rc, _, err = run_cli(["predict", tiny_run, "--plot-file", tmp_path])
    assert_one_line_error(rc, err, "folder")


@pytest.mark.parametrize("plot", ["", "   "])
def test_predict_cli_empty_plot_argument(plot, tiny_run):
    rc, _, err = run_cli(["predict", tiny_run, "--plot", plot])
    assert_one_line_error(rc, err, "empty")


@pytest.mark.slow
def test_predict_cli_non_utf8_argv_subprocess(tiny_run):
    """Undecodable bytes on the command line reach Python as lone surrogates: one error line, no traceback."""
    rc, out, err = run_cli_subprocess(["predict", str(tiny_run), "--plot", b"A plot \xff\xfe caf\xe9"])
    assert_one_line_error(rc, err, "UTF-8")


def test_predict_batch_jsonl_with_bad_plots_keeps_going(tiny_run, tmp_path):
    src = tmp_path / "in.jsonl"
    lines = [json.dumps({"id": "ok1", "plot": FINE["cjk"]}), json.dumps({"id": "empty", "plot": ""}),
             json.dumps({"id": "sur", "plot": "x \ud800 y"}),  # a JSON escape for a lone surrogate
             json.dumps({"id": "big", "plot": MEGABYTE}), json.dumps({"id": "ok2", "plot": FINE["html"]})]
    src.write_bytes("\n".join(lines).encode() + b'\n{"id": "raw", "plot": "bad \xff bytes"}\n')
    out = tmp_path / "out.jsonl"
    rc, stdout, err = run_cli(["predict", tiny_run, "--batch", src, "--out", out, "--no-progress"])
    assert rc == 0 and "Traceback" not in err, err
    rows = [json.loads(ln) for ln in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 6
    by_id = {r.get("id", str(r["index"])): r for r in rows}
    assert by_id["ok1"]["error"] is None and by_id["ok2"]["error"] is None and by_id["ok1"]["genres"] is not None
    bad = [r for r in rows if r["error"]]
    assert len(bad) == 4 and all("\n" not in r["error"] for r in bad)
    assert "predicted" in stdout and "4 failed" in stdout


# -- REST API ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(FINE))
def test_api_plot_any_script_works(name, api):
    r = api.post("/predict", data={"plot": FINE[name]})
    assert r.status_code == 200, r.text
    assert r.json()["used"] == ["plot"]


@pytest.mark.parametrize("plot,status", [("", 400), ("   \n", 400), (MEGABYTE, 413), ("a\x00b", 400)])
def test_api_bad_plot(plot, status, api):
    r = api.post("/predict", data={"plot": plot})
    assert r.status_code == status, r.text
    assert r.json()["status"] == status and "plot" in r.json()["error"]


def test_api_form_with_invalid_utf8_bytes_is_not_a_5xx(api):
    body = (b'--b\r\nContent-Disposition: form-data; name="plot"\r\n\r\nA plot \xff\xfe caf\xe9\r\n--b--\r\n')
    r = api.post("/predict", content=body, headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code < 500, r.text  # decoded leniently (200) or refused (4xx), never a crash


@pytest.mark.parametrize("raw", [b'[{"plot": "x \\ud800 y"}]', b'[{"plot": "bad \xff bytes"}]',
                                 b'[{"plot": "\\udfff"}]'])
def test_api_batch_bad_unicode_is_4xx(raw, api):
    r = api.post("/predict/batch", content=raw, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    assert "\n" not in r.json()["error"]


def test_api_batch_mixed_plots_partial(api):
    titles = [{"plot": FINE["emoji"], "id": "e"}, {"plot": "", "id": "empty"}, {"plot": MEGABYTE, "id": "big"},
              {"plot": FINE["devanagari"], "id": "d"}]
    r = api.post("/predict/batch?partial=true", json=titles)
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["error"] is None for x in res] == [True, False, False, True]
    assert res[1]["error"].startswith("titles[1]") and res[2]["error"].startswith("titles[2].plot")
