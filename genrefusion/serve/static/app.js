// genrefusion web page: poster + plot -> POST /predict -> sorted bar chart of genre probabilities;
// click a genre -> POST /explain -> the "Why?" view (scores by input, poster overlay, plot words by weight).
// Options: one threshold for every genre and/or at most K genres, sent with both requests.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("form"), fileInput = $("poster"), drop = $("drop"), preview = $("preview");
  const dropText = $("drop-text"), plot = $("plot"), button = $("predict"), errorBox = $("error");
  const bars = $("bars"), summary = $("summary"), legend = $("legend"), placeholder = $("placeholder");
  let poster = null;    // the chosen File (input or drop)
  let previewUrl = null;
  let limits = { poster_bytes: 10 * 1024 * 1024, plot_chars: 20000 };
  let shown = null;     // the inputs, options and genres of the prediction on screen, its explanations by genre
  const KEY_STORE = "genrefusion-api-key";

  // -- API key: asked for once (on the first 401), kept for this tab, sent as X-API-Key ------------------
  let apiKey = sessionStorage.getItem(KEY_STORE);
  let keyWaiters = [];

  function askForKey(message) {
    $("key-error").textContent = message || "";
    $("key-error").hidden = !message;
    $("key-form").hidden = false;
    $("api-key").focus();
    return new Promise((resolve) => keyWaiters.push(resolve));
  }

  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("api-key").value.trim();
    if (!value) return;
    apiKey = value;
    sessionStorage.setItem(KEY_STORE, value);
    $("key-form").hidden = true;
    $("api-key").value = "";
    keyWaiters.splice(0).forEach((resolve) => resolve());
  });

  // fetch with the key; a 401 asks for it (again, if the one given was refused) and retries
  async function api(url, options = {}) {
    for (;;) {
      const headers = new Headers(options.headers || {});
      if (apiKey) headers.set("X-API-Key", apiKey);
      const res = await fetch(url, { ...options, headers });
      if (res.status !== 401) return res;
      const refused = apiKey !== null;
      apiKey = null;
      sessionStorage.removeItem(KEY_STORE);
      await askForKey(refused ? "The server refused that key. Check it and try again." : "");
    }
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function showError(msg) {
    errorBox.textContent = msg;
    errorBox.hidden = !msg;
  }

  // -- poster: choose or drop, with a preview --------------------------------------------------------
  function setPoster(file) {
    showError("");
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    poster = null;
    // the previous poster goes first: a refused file must not leave it on screen while none is sent
    preview.hidden = true;
    preview.removeAttribute("src");
    dropText.hidden = false;
    drop.classList.remove("has-image");
    $("poster-meta").hidden = true;
    if (!file) {
      fileInput.value = "";
      return;
    }
    if (file.size > limits.poster_bytes) {
      showError(`Poster ${file.name} is ${(file.size / 1e6).toFixed(1)} MB; the limit is ` +
                `${Math.round(limits.poster_bytes / 1048576)} MB.`);
      fileInput.value = "";
      return;
    }
    poster = file;
    previewUrl = URL.createObjectURL(file);
    preview.src = previewUrl;
    preview.hidden = false;
    dropText.hidden = true;
    drop.classList.add("has-image");
    $("poster-name").textContent = `${file.name} (` +
      (file.size < 1024 ? `${file.size} bytes)` : `${(file.size / 1024).toFixed(0)} KB)`);
    $("poster-meta").hidden = false;
  }

  fileInput.addEventListener("change", () => setPoster(fileInput.files[0] || null));
  $("clear-poster").addEventListener("click", () => setPoster(null));
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "dragend"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const f = e.dataTransfer && e.dataTransfer.files[0];
    if (f) setPoster(f);
  });
  // a file dropped beside the zone must not navigate away from the page
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  preview.addEventListener("error", () => {
    if (!poster) return;  // a format this browser cannot show (e.g. TIFF): no preview, the server still decides
    preview.hidden = true;
    dropText.hidden = false;
  });

  // -- plot: a character counter, and a notice when a paste was cut to the limit ---------------------------
  // (the textarea's maxlength cuts a long paste without a word; the counter alone would not say so)
  const pasteNote = $("paste-note");
  let pasteCheck = null;  // the paste the next input event inserts: text length before it, pasted length

  function updateCount() {
    $("plot-count").textContent = plot.value.length.toLocaleString("en");
  }

  function notePaste(leftOut) {
    pasteNote.textContent = leftOut > 0 ? `The pasted text was cut to fit ${plot.maxLength.toLocaleString("en")} ` +
      `characters (${leftOut.toLocaleString("en")} character${leftOut === 1 ? "" : "s"} left out).` : "";
  }

  plot.addEventListener("paste", (e) => {
    const data = e.clipboardData ? e.clipboardData.getData("text/plain") : "";
    if (!data) return;
    const pasted = data.replace(/\r\n?/g, "\n").length;  // line breaks arrive as one character each
    const before = plot.value.length - (plot.selectionEnd - plot.selectionStart);  // the selection is replaced
    notePaste(pasted - Math.max(0, plot.maxLength - before));
    pasteCheck = { before, pasted };
  });
  plot.addEventListener("input", (e) => {
    updateCount();
    if (pasteCheck && e.inputType === "insertFromPaste") {
      notePaste(pasteCheck.pasted - (plot.value.length - pasteCheck.before));  // what was really inserted
    } else if (plot.value.length < plot.maxLength) {
      notePaste(0);
    }
    pasteCheck = null;
  });
  // Enter writes a new line in the plot; Ctrl+Enter (Cmd+Enter) predicts
  plot.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      if (!button.disabled) form.requestSubmit();
    }
  });

  // -- options: one threshold for every genre, at most K genres ---------------------------------------------
  const thrInput = $("threshold"), topKInput = $("top-k"), optionsBox = $("options");
  const optionsError = $("options-error");
  let genreCount = null;  // from GET /model: the largest K

  // {threshold, topK} (null: not set) and the problems found, each naming its field
  function readOptions() {
    const out = { threshold: null, topK: null, problems: [] };
    if (thrInput.validity.badInput || thrInput.value.trim() !== "") {
      const v = Number(thrInput.value);
      if (thrInput.validity.badInput || !Number.isFinite(v) || v < 0 || v > 1) {
        out.problems.push([thrInput, "Threshold must be a number between 0 and 1 (0.4 means 40%)."]);
      } else {
        out.threshold = v;
      }
    }
    if (topKInput.validity.badInput || topKInput.value.trim() !== "") {
      const v = Number(topKInput.value);
      if (topKInput.validity.badInput || !Number.isInteger(v) || v < 1 || (genreCount && v > genreCount)) {
        out.problems.push([topKInput, "At most K genres must be a whole number " +
          (genreCount ? `from 1 to ${genreCount}.` : "of 1 or more.")]);
      } else {
        out.topK = v;
      }
    }
    return out;
  }

  function optionsKey(o) {
    return `${o.threshold}|${o.topK}|${o.problems.length}`;
  }

  function showOptionsProblems(problems) {
    optionsError.textContent = problems.map(([, msg]) => msg).join(" ");
    optionsError.hidden = !problems.length;
    for (const input of [thrInput, topKInput]) {
      const bad = problems.some(([field]) => field === input);
      input.setAttribute("aria-invalid", String(bad));
      const help = input.getAttribute("aria-describedby").split(" ")[0];
      input.setAttribute("aria-describedby", bad ? `${help} options-error` : help);
    }
  }

  // a percentage with no needless decimals: 0.4 -> 40%, 0.405 -> 40.5%
  function pctExact(v) {
    return `${+(v * 100).toFixed(2)}%`;
  }

  function genresWord(k) {
    return k === 1 ? "1 genre" : `${k} genres`;
  }

  // "the 3 most probable" / "the most probable"
  function mostProbable(k) {
    return k === 1 ? "the most probable" : `the ${k} most probable`;
  }

  // what decided, in words (null: each genre's tuned threshold, from the set for these inputs)
  function decidedBy(o) {
    if (o.threshold !== null) {
      return `one threshold ${pctExact(o.threshold)} for every genre` +
        (o.topK !== null ? `, at most ${genresWord(o.topK)}` : "");
    }
    if (o.topK !== null) {
      return o.topK === 1 ? "the most probable genre, whatever its threshold"
        : `the ${o.topK} most probable genres, whatever the thresholds`;
    }
    return null;
  }

  // the closed disclosure still says which options are set
  function updateOptionsState() {
    const o = readOptions();
    const parts = [];
    if (o.threshold !== null) parts.push(`threshold ${pctExact(o.threshold)}`);
    if (o.topK !== null) parts.push(`at most ${o.topK}`);
    $("options-state").textContent = o.problems.length ? "(check the values)" : parts.length ? `(${parts.join(", ")})` : "";
  }

  let busy = false;          // a prediction is on its way
  let busyKey = null;        // the options it was asked with
  let rerun = false;         // an option changed meanwhile: predict again when it is back
  let optionsFailed = false; // the last Predict stopped at a bad option (its chart was taken away)
  let quiet = false;         // the next submit comes from an option change: no focus moves

  let pressing = false;      // Predict is being pressed: its click predicts (a change must not move it first)
  let changed = false;       // an option changed while Predict was pressed

  // a chart on screen follows its options: changed ones predict again (a bad one takes the chart away)
  function optionChanged() {
    if (!shown && !optionsFailed && !busy) return;
    if (busy) {
      if (optionsKey(readOptions()) !== busyKey) rerun = true;
      return;
    }
    quiet = true;
    form.requestSubmit();
  }

  [thrInput, topKInput].forEach((input) => {
    input.addEventListener("input", updateOptionsState);
    input.addEventListener("change", () => {
      updateOptionsState();
      // leaving the field by pressing Predict: the click predicts; redrawing now would shift the button away
      // from under the pointer and lose the click
      if (pressing) changed = true;
      else optionChanged();
    });
  });
  button.addEventListener("pointerdown", () => { pressing = true; changed = false; });
  // released without a click on Predict (dragged off it): the change still predicts
  document.addEventListener("pointerup", () => {
    if (!pressing) return;
    setTimeout(() => {  // after the click, which comes in the same task as the pointerup
      const missed = pressing && changed;
      pressing = changed = false;
      if (missed) optionChanged();
    });
  }, true);
  document.addEventListener("pointercancel", () => { if (pressing) { pressing = false; if (changed) optionChanged(); } }, true);

  // brings a result below the fold (the phone layout, the "Why?" view under the chart) into sight
  function reveal(node) {
    const top = node.getBoundingClientRect().top;
    if (top < 0 || top > window.innerHeight * 0.7) node.scrollIntoView({ block: "start", behavior: "smooth" });
  }

  // the chart on screen is always the answer to the last Predict: an error takes the previous one away
  function clearResults() {
    shown = null;
    summary.replaceChildren();
    summary.hidden = true;
    bars.replaceChildren();
    legend.hidden = true;
    $("why").hidden = true;
    whyError("");
    placeholder.hidden = false;
  }

  // -- predict ----------------------------------------------------------------------------------------
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const fromOption = quiet;
    quiet = false;
    pressing = changed = false;  // Predict's click (or Enter) is here: no change is left to run
    if (busy) {  // Enter in a field while predicting: once it is back, predict again if an option changed
      if (optionsKey(readOptions()) !== busyKey) rerun = true;
      return;
    }
    showError("");
    const opts = readOptions();
    showOptionsProblems(opts.problems);
    optionsFailed = opts.problems.length > 0;
    const text = plot.value.trim();
    if (!poster && !text) showError("Choose a poster, paste a plot, or both.");
    if (opts.problems.length || (!poster && !text)) {
      clearResults();
      if (opts.problems.length) {
        optionsBox.open = true;
        if (!fromOption) opts.problems[0][0].focus();
      }
      return;
    }
    const body = new FormData();
    if (poster) body.append("poster", poster, poster.name || "poster");
    if (text) body.append("plot", text);
    if (opts.threshold !== null) body.append("threshold", String(opts.threshold));
    if (opts.topK !== null) body.append("top_k", String(opts.topK));
    busy = true;
    busyKey = optionsKey(opts);
    button.disabled = true;
    button.textContent = "Predicting…";
    try {
      const res = await api("/predict", { method: "POST", body });
      let data = null;
      try { data = await res.json(); } catch (_) { /* not JSON: reported below */ }
      if (!res.ok) {
        clearResults();
        showError((data && data.error) || `The server answered ${res.status}.`);
        return;
      }
      shown = { poster, text, opts, genres: data.genres, why: new Map() };
      render(data, opts);
      if (!fromOption) reveal($("results"));
    } catch (err) {
      clearResults();
      showError(`Could not reach the server (${err.message}).`);
    } finally {
      busy = false;
      button.disabled = false;
      button.textContent = "Predict";
      if (rerun) {
        rerun = false;
        quiet = true;
        form.requestSubmit();
      }
    }
  });

  // a reset form (Clear: no poster, no plot, no options) leaves no notice about what was there, nor a chart
  // that answers inputs no longer on screen
  form.addEventListener("reset", () => {
    setTimeout(() => {  // the fields are reset after the event
      clearResults();
      showError("");
      setPoster(null);
      pasteCheck = null;
      notePaste(0);
      updateCount();
      showOptionsProblems([]);
      optionsFailed = false;
      updateOptionsState();
    });
  });

  function pct(v) {
    return `${Math.round(v * 100)}%`;
  }

  function render(data, opts) {
    placeholder.hidden = true;
    const predicted = new Set(data.genres);
    const rows = Object.entries(data.scores).sort((a, b) => b[1] - a[1]);
    const override = decidedBy(opts);
    const topOnly = opts.topK !== null && opts.threshold === null;  // no threshold decided: no ticks

    summary.replaceChildren();
    if (data.genres.length) {
      data.genres.forEach((g) => summary.appendChild(el("span", "chip", g)));
    } else {
      summary.appendChild(el("span", "none", opts.threshold !== null
        ? `No genre reaches ${pctExact(opts.threshold)}.` : "No genre is above its threshold."));
    }
    summary.appendChild(el("span", "used", `from ${data.used.join(" + ")}`));
    if (override) {  // the options decided, not the tuned thresholds
      const chip = el("span", "used decided-by", `Options: ${override}`);
      if (opts.threshold !== null) chip.dataset.threshold = String(opts.threshold);
      if (opts.topK !== null) chip.dataset.topK = String(opts.topK);
      summary.appendChild(chip);
    } else {
      // which thresholds decided: the set tuned on dev titles with the same inputs (or the pooled set)
      const setName = data.threshold_set || "pooled";
      const setLabel = setName === "pooled" ? "pooled thresholds"
        : `${setName === "both" ? "poster + plot" : `${setName}-only`} thresholds`;
      const setChip = el("span", "used threshold-set", `· ${setLabel}`);
      setChip.dataset.set = setName;
      summary.appendChild(setChip);
    }
    summary.hidden = false;

    bars.replaceChildren();
    bars.classList.add("clickable");
    $("why").hidden = true;
    whyError("");
    for (const [genre, p] of rows) {
      const thr = topOnly ? null : data.thresholds[genre];
      const on = predicted.has(genre);
      const li = bar(genre, p, thr, on);
      li.title += " (click: why?)";
      li.tabIndex = 0;
      li.setAttribute("role", "button");
      let how;
      if (topOnly) {
        how = opts.topK === 1 ? (on ? ", the most probable" : ", not the most probable")
          : on ? `, one of ${mostProbable(opts.topK)}` : `, not among ${mostProbable(opts.topK)}`;
      } else if (thr > 1) {
        how = ", never predicted from these inputs";
      } else {
        how = `, threshold ${opts.threshold !== null ? pctExact(thr) : pct(thr)}` +
          (!on && p >= thr ? `, above it but not ${opts.topK === 1 ? "" : "among "}${mostProbable(opts.topK)}` : "");
      }
      li.setAttribute("aria-label", `Why ${genre}? probability ${pct(p)}, ` +
        (on ? "predicted" : "not predicted") + how);
      li.addEventListener("click", () => explainGenre(genre));
      li.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); explainGenre(genre); }
      });
      bars.appendChild(li);
    }
    legend.hidden = false;
    $("legend-tick").hidden = topOnly;
    $("legend-tick-text").textContent = opts.threshold !== null
      ? `threshold (${pctExact(opts.threshold)} for every genre)` : "genre threshold";
    $("legend-never").hidden = topOnly || !Object.values(data.thresholds).some((t) => t > 1);
    const rule = topOnly ? `· ${mostProbable(opts.topK)} ${opts.topK === 1 ? "is" : "are"} predicted`
      : opts.topK !== null ? `· at most ${genresWord(opts.topK)}` : "";
    $("legend-rule").textContent = rule;
    $("legend-rule").hidden = !rule;
  }

  // one bar row: name, track with the probability filled and the threshold ticked, percentage
  function bar(label, p, thr, on) {
    const li = el("li", on ? "bar on" : "bar");
    li.dataset.genre = label;
    li.dataset.score = String(p);
    // a threshold above 1: never predicted from these inputs (no dev title with them labels the genre);
    // none (null): a row with no threshold (the "Why?" view's "neither")
    const never = thr > 1;
    li.title = `${label}: probability ${p.toFixed(3)}` + (thr == null ? "" : ", " +
      (never ? "never predicted from these inputs (no dev title with them labels it)" : `threshold ${thr.toFixed(3)}`));
    const track = el("span", "track");
    const fill = el("span", "fill");
    fill.style.width = "0%";
    track.append(fill);
    if (thr != null && !never) {
      const tick = el("span", "tick");
      tick.style.left = `${(thr * 100).toFixed(1)}%`;
      track.append(tick);
    }
    li.append(el("span", "name", label), track, el("span", "pct", pct(p)));
    requestAnimationFrame(() => { fill.style.width = `${(p * 100).toFixed(1)}%`; });
    return li;
  }

  // -- why? ---------------------------------------------------------------------------------------------
  // an explanation that failed is an error (red, read out at once), not the neutral "Explaining …" status
  function whyError(msg) {
    $("why-error").textContent = msg;
    $("why-error").hidden = !msg;
    $("why-note").hidden = !!msg;  // "measured on the model" describes an explanation, not its failure
  }

  async function explainGenre(genre) {
    if (!shown) return;
    const view = $("why"), status = $("why-status");
    bars.querySelectorAll(".bar").forEach((li) => li.classList.toggle("picked", li.dataset.genre === genre));
    view.hidden = false;
    whyError("");
    $("why-title").textContent = `Why ${genre}?`;
    reveal(view);
    const current = shown;
    const stillWanted = () => shown === current && bars.querySelector(".bar.picked") &&
      bars.querySelector(".bar.picked").dataset.genre === genre;  // no other click since
    let data = current.why.get(genre);
    if (!data) {
      status.textContent = `Explaining ${genre}…`;
      ["why-scores", "why-plot", "why-top"].forEach((id) => $(id).replaceChildren());
      $("why-rule").hidden = true;
      $("why-poster").hidden = true;
      $("why-plot-box").hidden = true;
      const body = new FormData();
      if (current.poster) body.append("poster", current.poster, current.poster.name || "poster");
      if (current.text) body.append("plot", current.text);
      body.append("genre", genre);
      body.append("top_words", "6");
      // the chart's options: the rows are cut where the chart's bars are
      if (current.opts.threshold !== null) body.append("threshold", String(current.opts.threshold));
      if (current.opts.topK !== null) body.append("top_k", String(current.opts.topK));
      let problem = null;
      try {
        const res = await api("/explain", { method: "POST", body });
        let out = null;
        try { out = await res.json(); } catch (_) { /* reported below */ }
        if (res.ok) {
          data = out;
          current.why.set(genre, data);
        } else {
          problem = `Could not explain ${genre}: ` +
            ((out && out.error) || `the server answered ${res.status}${res.statusText ? ` ${res.statusText}` : ""}.`);
        }
      } catch (err) {
        problem = `Could not explain ${genre}: could not reach the server (${err.message}).`;
      }
      if (problem !== null) {
        if (stillWanted()) {
          status.textContent = "";
          whyError(problem);
        }
        return;
      }
    }
    if (!stillWanted()) return;
    status.textContent = "";
    renderWhy(data, data.genres[0], current);
  }

  function renderWhy(data, g, current) {
    // the decision is the chart's: at most K genres can leave out a genre above the threshold
    const on = current.genres.includes(g.genre);
    const opts = current.opts;
    const topOnly = opts.topK !== null && opts.threshold === null;  // no threshold decided: no ticks
    $("why-title").textContent = `Why ${g.genre}? ` + (on ? "(predicted)" : "(not predicted)");
    const scores = $("why-scores");
    scores.replaceChildren();
    // each input's row against the threshold predicting from it alone would use (the server says which); the
    // first row is the decision on screen, with its threshold; "neither" predicts no genre
    const both = data.used.length === 2;
    const rows = [];
    if (both) rows.push(["poster + plot", g.score, g.threshold]);
    if (g.poster_only !== null) rows.push(["poster only", g.poster_only, g.poster_only_threshold]);
    if (g.plot_only !== null) rows.push(["plot only", g.plot_only, g.plot_only_threshold]);
    rows.push(["neither", g.no_input, null]);
    rows.forEach(([label, p, thr], i) => {
      const cut = topOnly ? null : thr;
      scores.appendChild(bar(label, p, cut, i === 0 ? on : cut != null && p >= cut));
    });
    const rule = $("why-rule");
    rule.textContent = topOnly
      ? `No threshold: the chart predicts ${mostProbable(opts.topK)} ${opts.topK === 1 ? "genre" : "genres"}; ` +
        "the rows show each input's probability."
      : opts.threshold !== null
        ? `Every row is cut at the one threshold, ${pctExact(opts.threshold)}` +
          (opts.topK !== null ? `; the chart keeps at most ${genresWord(opts.topK)}.` : ".")
        : "";
    rule.hidden = !rule.textContent;

    const fig = $("why-poster");
    fig.hidden = !g.overlay_png;
    if (g.overlay_png) $("why-overlay").src = `data:image/png;base64,${g.overlay_png}`;

    const box = $("why-plot-box");
    box.hidden = !data.plot;
    if (!data.plot) return;
    const text = data.plot.text, w = g.word_weights;
    const peak = Math.max(1e-12, ...w.map(Math.abs));
    const p = $("why-plot");
    p.replaceChildren();
    let pos = 0;
    data.plot.words.forEach(([s, e], i) => {
      p.appendChild(document.createTextNode(text.slice(pos, s)));
      const span = el("span", "w", text.slice(s, e));
      const a = Math.min(1, Math.abs(w[i]) / peak) * 0.75;
      span.style.background = w[i] >= 0 ? `rgba(255,110,0,${a.toFixed(2)})` : `rgba(30,110,255,${a.toFixed(2)})`;
      span.title = `${w[i] >= 0 ? "+" : ""}${w[i].toPrecision(3)} log-odds`;
      span.dataset.weight = String(w[i]);
      p.appendChild(span);
      pos = e;
    });
    p.appendChild(document.createTextNode(text.slice(pos)));
    const top = $("why-top");
    top.replaceChildren();
    if (g.top_words.length) {
      top.append("Raised it most: ");
      g.top_words.forEach((t, i) => {
        // a long plot's unit is a phrase (up to half the plot): its first words stand for it, all of it on hover
        const words = t.text.split(/\s+/);
        const span = el("span", "up", words.length > 12 ? `${words.slice(0, 12).join(" ")} …` : t.text);
        span.title = t.text;
        top.appendChild(span);
        top.append(` (+${t.weight.toPrecision(2)})` + (i < g.top_words.length - 1 ? ", " : ""));
      });
    } else {
      top.textContent = "No word raised it.";
    }
    if (data.plot.granularity === "phrase") top.append(" (a long plot: weighed by phrase)");
  }

  // -- model information and test metrics in the footer -------------------------------------------------
  function fmt(v) {
    return typeof v === "number" ? v.toFixed(3) : "–";
  }

  async function loadModel() {
    const box = $("metrics");
    try {
      const res = await api("/model");
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const info = await res.json();
      if (info.limits) limits = info.limits;
      plot.maxLength = limits.plot_chars;
      $("plot-limit").textContent = limits.plot_chars.toLocaleString("en");
      genreCount = info.genres.length;
      topKInput.max = String(genreCount);
      $("top-k-max").textContent = String(genreCount);
      updateOptionsState();
      const enc = info.encoders || {};
      $("model-line").textContent = `Model: ${info.model} (${info.fusion || "single"}) · ` +
        `${info.genres.length} genres · image ${enc.image || "none"}, text ${enc.text || "none"}`;
      box.replaceChildren();
      const m = info.test_metrics;
      if (!m) {
        box.textContent = "This run has no test metrics.";
        return;
      }
      const split = info.split && info.split.test ? ` (${info.split.test} test titles)` : "";
      const tuned = info.thresholds_tuned_on || "the dev split";
      box.appendChild(el("div", "", `Test-split metrics${split}, beside the always-negative baseline and the linear probe on the same features; thresholds were tuned on ${tuned}, per input combination.`));
      const cols = [["micro_f1", "micro-F1"], ["macro_f1", "macro-F1"], ["samples_f1", "samples-F1"], ["mAP", "mAP"]];
      const table = el("table");
      const head = el("tr");
      head.appendChild(el("th", "", "model"));
      // samples-F1 is the column a phone-width screen drops (style.css)
      cols.forEach(([k, label]) => head.appendChild(el("th", k === "samples_f1" ? "opt" : "", label)));
      table.appendChild(head);
      for (const [name, vals] of Object.entries(m)) {
        const tr = el("tr", name === info.model ? "main" : "");
        const label = name === "always_negative" ? "always-negative" :
          name === "tfidf_logreg" ? "TF-IDF + logreg" :
          name.startsWith("linear_probe_") ? `linear probe (${name.slice(13)} features)` :
          name + (name === info.model ? " (served)" : "");
        tr.appendChild(el("td", "", label));
        cols.forEach(([k]) => tr.appendChild(el("td", k === "samples_f1" ? "opt" : "", fmt(vals[k]))));
        table.appendChild(tr);
      }
      const wrap = el("div", "scroll");
      wrap.appendChild(table);
      box.appendChild(wrap);
    } catch (err) {
      box.textContent = `Model information unavailable (${err.message}).`;
    }
  }

  loadModel();
})();
