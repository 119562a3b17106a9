// genrefusion web page: poster + plot -> POST /predict -> sorted bar chart of genre probabilities.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("form"), fileInput = $("poster"), drop = $("drop"), preview = $("preview");
  const dropText = $("drop-text"), plot = $("plot"), button = $("predict"), errorBox = $("error");
  const bars = $("bars"), summary = $("summary"), legend = $("legend"), placeholder = $("placeholder");
  let poster = null;    // the chosen File (input or drop)
  let previewUrl = null;
  let limits = { poster_bytes: 10 * 1024 * 1024, plot_chars: 20000 };

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
    if (!file) {
      preview.hidden = true;
      preview.removeAttribute("src");
      dropText.hidden = false;
      drop.classList.remove("has-image");
      $("poster-meta").hidden = true;
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
    $("poster-name").textContent = `${file.name} (${(file.size / 1024).toFixed(0)} KB)`;
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

  plot.addEventListener("input", () => {
    $("plot-count").textContent = plot.value.length.toLocaleString("en");
  });

  // -- predict ----------------------------------------------------------------------------------------
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    showError("");
    const text = plot.value.trim();
    if (!poster && !text) {
      showError("Choose a poster, paste a plot, or both.");
      return;
    }
    const body = new FormData();
    if (poster) body.append("poster", poster, poster.name || "poster");
    if (text) body.append("plot", text);
    button.disabled = true;
    button.textContent = "Predicting…";
    try {
      const res = await fetch("/predict", { method: "POST", body });
      let data = null;
      try { data = await res.json(); } catch (_) { /* not JSON: reported below */ }
      if (!res.ok) {
        showError((data && data.error) || `The server answered ${res.status}.`);
        return;
      }
      render(data);
    } catch (err) {
      showError(`Could not reach the server (${err.message}).`);
    } finally {
      button.disabled = false;
      button.textContent = "Predict";
    }
  });

  function pct(v) {
    return `${Math.round(v * 100)}%`;
  }

  function render(data) {
    placeholder.hidden = true;
    const predicted = new Set(data.genres);
    const rows = Object.entries(data.scores).sort((a, b) => b[1] - a[1]);

    summary.replaceChildren();
    if (data.genres.length) {
      data.genres.forEach((g) => summary.appendChild(el("span", "chip", g)));
    } else {
      summary.appendChild(el("span", "none", "No genre is above its threshold."));
    }
    summary.appendChild(el("span", "used", `from ${data.used.join(" + ")}`));
    // which thresholds decided: the set tuned on dev titles with the same inputs (or the pooled set)
    const setName = data.threshold_set || "pooled";
    const setLabel = setName === "pooled" ? "pooled thresholds"
      : `${setName === "both" ? "poster + plot" : `${setName}-only`} thresholds`;
    const setChip = el("span", "used threshold-set", `· ${setLabel}`);
    setChip.dataset.set = setName;
    summary.appendChild(setChip);
    summary.hidden = false;

    bars.replaceChildren();
    for (const [genre, p] of rows) {
      const thr = data.thresholds[genre];
      const li = el("li", predicted.has(genre) ? "bar on" : "bar");
      li.dataset.genre = genre;
      li.dataset.score = String(p);
      li.title = `${genre}: probability ${p.toFixed(3)}, threshold ${thr.toFixed(3)}`;
      const track = el("span", "track");
      const fill = el("span", "fill");
      fill.style.width = "0%";
      const tick = el("span", "tick");
      tick.style.left = `${(thr * 100).toFixed(1)}%`;
      track.append(fill, tick);
      li.append(el("span", "name", genre), track, el("span", "pct", pct(p)));
      bars.appendChild(li);
      requestAnimationFrame(() => { fill.style.width = `${(p * 100).toFixed(1)}%`; });
    }
    legend.hidden = false;
  }

  // -- model information and test metrics in the footer -------------------------------------------------
  function fmt(v) {
    return typeof v === "number" ? v.toFixed(3) : "–";
  }

  async function loadModel() {
    const box = $("metrics");
    try {
      const res = await fetch("/model");
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const info = await res.json();
      if (info.limits) limits = info.limits;
      plot.maxLength = limits.plot_chars;
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
      box.appendChild(el("div", "", `Test-split metrics${split}, beside the always-negative baseline and the linear probe on the same features; thresholds were tuned on the dev split, per input combination.`));
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
