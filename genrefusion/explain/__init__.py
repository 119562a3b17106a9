"""Why a title got its genres: which input, which plot words, which poster regions.

``GenreClassifier.explain(poster, plot, genres=None, top_k=None)`` (``explain(clf, ...)`` here) measures every
number on the model itself by occlusion: take a part of the input away, score again, and report how much the
genre's log-odds fell. An attribution therefore says what the model does, not what a proxy of it does (the
deletion benchmark, ``benchmarks/explain.py`` with ``faithfulness.py``, checks that):

* **inputs**: the genre's probability with both inputs, the poster only, the plot only and neither, through
  the model's own missing-input path (the fused model's learned "missing" embeddings).
* **plot**: each word is deleted from the text and the plot re-encoded by the model's text route (MiniLM or
  the AWD-LSTM), and, when the model blends in the lexical model (``models/lexical.py``), by its tf-idf logistic
  regression too, so the weights are those of the served probabilities; all variants are encoded as one batch.
  Long plots are cut into phrases instead, so that a
  title costs at most about ``WORD_BUDGET`` encoded words, or 8 times its plot's length for a plot over an eighth of that
  (``units.py``); the text is encoded in chunks, each under the classifier's lock, so predictions interleave.
* **poster**: the backbone's last feature map (``[h, w]`` = 7 x 7 cells for the 224-pixel backbones, 9 x 9 for
  Lite2's 260, each cell seeing mostly a 32 x 32 patch of the centre crop) is mean-pooled into the features the
  head reads. Occluding a cell replaces its features by those a blank (mean-colour) poster has there. Pooling is
  linear, so every cell is one row of a single batched head forward, exactly what the head computes for that map.

The answer is plain JSON (lists, numbers, strings; no tensors)::

    {"model": "fused", "used": ["poster", "plot"], "predicted": [...],   # what predict() says
     "weights": "log-odds",                  # every weight: logit(full input) - logit(part removed)
     "plot": {"text": str, "granularity": "word" | "phrase",
              "words": [[start, end], ...],  # W words, character offsets into text
              "units": [[first, end], ...]}  # occluded units as word ranges ([i, i+1] for words)
             | None,
     "poster": {"size": [width, height], "crop": [left, top, right, bottom],  # the part the model sees
                "grid_shape": [h, w]} | None,
     "genres": [{"genre", "score", "poster_only", "plot_only", "no_input", "threshold", "predicted",
                 "poster_only_threshold", "plot_only_threshold",  # what that input alone would be cut at
                 "word_weights": [W floats] | None,   # a phrase's weight is shared out over its words
                 "top_words": [{"text", "weight"}, ...],  # the units that raised the genre most (weight > 0)
                 "poster_grid": [[w floats] x h] | None,  # row-major over the crop, top row first
                 "overlay_png": base64 PNG | None}, ...],
     "seconds": float}

Scores are the probabilities ``predict_proba`` gives; ``poster_only``/``plot_only`` are None when that input was
not given or the model does not read it, and so are their thresholds (with both inputs given, each is the set tuned
on dev titles with that input alone, or the caller's ``threshold``). ``render.py`` draws overlays, the CLI table and the HTML page.
"""
from .core import BundleView, explain, resolve_genres
from .units import WORD_BUDGET, PlotUnits, plot_units, remove_spans

__all__ = ["BundleView", "PlotUnits", "WORD_BUDGET", "explain", "plot_units", "remove_spans", "resolve_genres"]
