"""ONNX export of a trained model: the image backbone + the served (fused) model in one graph.

``export_onnx(run_dir_or_classifier, out)`` writes ``out`` (e.g. ``model.onnx``) and a sidecar ``out + ".json"``
with the genres, the per-genre thresholds and the input spec. Both writes are atomic.

The graph (inputs by model; ``B`` is dynamic):

    image          float32 [B, 3, S, S]  the poster, preprocessed as in predict (``preprocess_posters``):
                   RGB, shorter side resized to round(S*256/224) (bilinear), centre crop S x S, /255,
                   (x - mean) / std, NCHW. S, mean and std are in the sidecar.
    image_present  bool [B]              False where the title has no poster (``image`` is then ignored)
    text           float32 [B, D]        plot features, computed as in predict (``text_features``):
                   route ``minilm``: all-MiniLM-L6-v2 sentence embedding (mean pooled, L2-normalised, D=384);
                   route ``lstm``: the model's own AWD-LSTM pooled representation of the tokenised plot
                   (the recurrent encoder stays in PyTorch: predict computes its pooled state, the graph takes it as input)
    text_present   bool [B]              False where the title has no plot
    lexical        float32 [B, G]        only when the model blends the lexical model in (``models/lexical.py``):
                   the tf-idf logistic regression's probabilities (``lexical_features``); rows with a plot
                   answer (1 - w) * probs + w * lexical, w in the sidecar
    -> probs       float32 [B, G]        sigmoid probabilities, columns in the sidecar's ``genres`` order

A poster-only model has only the image inputs, a plot-only model only the text inputs. Decide genres with
``probs >= threshold_sets[c]`` where ``c`` is what the title has (``both``, ``poster`` or ``plot``: each set was
tuned on dev titles with those inputs), or ``thresholds`` (the pooled set) when there is no set for ``c``.

The exported module restates the model's forward without data-dependent branches (a missing modality
is chosen with ``torch.where`` instead of by selecting rows), which is the same computation in eval mode:
BatchNorm uses running statistics, so each row is computed independently.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import BadInput, GenreFusionError
from .io import atomic_path, write_json

OPSET = 17
FORMAT = "genrefusion-onnx"


def _torch_modules():
    import torch
    from torch import nn

    class PosterPart(nn.Module):
        """Backbone (or, for a fine-tuned model, its frozen part: ``StemView`` / ``PixelView``), then the
        model's own backbone part (``branch_encoder``, fine-tuned models only), then the body."""

        def __init__(self, encoder, branch_encoder, body, fallback):
            super().__init__()
            self.encoder, self.branch_encoder, self.body = encoder, branch_encoder, body
            self.register_buffer("fallback", fallback.detach().clone())

        def forward(self, image, present):
            x = self.encoder.features(image) if hasattr(self.encoder, "features") else self.encoder(image)
            if self.branch_encoder is not None:
                x = self.branch_encoder(x)
            r = self.body(x)
            return torch.where(present.unsqueeze(1), r, self.fallback.to(r.dtype).unsqueeze(0))

    class TextPart(nn.Module):
        def __init__(self, body, fallback):
            super().__init__()
            self.body = body
            self.register_buffer("fallback", fallback.detach().clone())

        def forward(self, text, present):
            r = self.body(text)
            return torch.where(present.unsqueeze(1), r, self.fallback.to(r.dtype).unsqueeze(0))

    class FusedGraph(nn.Module):
        def __init__(self, encoder, fused):
            super().__init__()
            self.poster = PosterPart(encoder, fused.poster.encoder, fused.poster.body, fused.poster.missing)
            self.plot = TextPart(fused.plot.body, fused.plot.missing)
            self.gmu, self.head = fused.gmu, fused.head

        def forward(self, image, image_present, text, text_present):
            a = self.poster(image, image_present)
            b = self.plot(text, text_present)
            h = self.gmu(a, b) if self.gmu is not None else torch.cat([a, b], dim=1)
            return torch.sigmoid(self.head(h))

    class SingleGraph(nn.Module):
        """Poster- or plot-only model: its head, or the genre priors for a title without the modality."""

        def __init__(self, single, encoder=None):
            super().__init__()
            body = nn.Sequential(single.head.body, single.head.out)
            self.part = (PosterPart(encoder, single.encoder, body, single.prior_logits) if single.modality == "poster"
                         else TextPart(body, single.prior_logits))

        def forward(self, x, present):
            return torch.sigmoid(self.part(x, present))

    class LexicalGraph(nn.Module):
        """The lexical blend (models/lexical.py): rows with a plot average the graph's probabilities with the
        tf-idf logistic regression's, which the ``lexical`` input carries (``lexical_features``)."""

        def __init__(self, graph, weight: float):
            super().__init__()
            self.graph, self.weight = graph, float(weight)

        def forward(self, *args):
            *inputs, lexical = args
            p = self.graph(*inputs)
            present = inputs[-1]  # text_present: the last input of every graph that reads a plot
            return torch.where(present.unsqueeze(1), (1 - self.weight) * p + self.weight * lexical, p)

    return FusedGraph, SingleGraph, LexicalGraph


def _classifier(src):
    from .predict import GenreClassifier

    if isinstance(src, GenreClassifier):
        return src
    return GenreClassifier.load(src)


def _image_encoder(clf):
    """The classifier's image encoder, built as predict builds it (and cached on the classifier)."""
    with clf._lock:
        enc = clf.input_encoders().image
    if enc is not None:
        enc.eval()
    return enc


def build_graph(clf):
    """(torch module to export, input names) for the classifier's model."""
    FusedGraph, SingleGraph, LexicalGraph = _torch_modules()
    model = clf.bundle_.models[clf.model_name_]
    name = clf.model_name_
    if name == "fused":
        graph, inputs = FusedGraph(_image_encoder(clf), model), ["image", "image_present", "text", "text_present"]
    elif name == "poster":
        graph, inputs = SingleGraph(model, _image_encoder(clf)), ["image", "image_present"]
    else:
        graph, inputs = SingleGraph(model), ["text", "text_present"]
    if lexical_weight(clf):
        graph, inputs = LexicalGraph(graph, lexical_weight(clf)), inputs + ["lexical"]
    graph.eval()
    for p in graph.parameters():
        p.requires_grad_(False)
    return graph, inputs


def lexical_weight(clf) -> float:
    """The served model's lexical blend weight (0: it does not blend)."""
    if clf.bundle_.lexical is None:
        return 0.0
    return float(getattr(clf.bundle_.models[clf.model_name_], "lexical_weight", 0.0))


def text_dim(clf) -> int:
    spec = clf.bundle_.spec
    if spec.get("text_route") == "lstm":
        model = clf.bundle_.models[clf.model_name_]
        enc = model.plot.encoder if clf.model_name_ == "fused" else model.encoder
        return int(enc.out_dim)
    return int(spec.get("text_dim") or 384)


# -- the graph's inputs, computed exactly as predict computes them -------------------------------------------
def preprocess_posters(clf, posters: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """``(image [N,3,S,S] float32, image_present [N] bool)`` for posters (path, bytes, PIL or None).
    A poster that cannot be read raises BadInput naming it."""
    from .data.images import load_image

    enc = _image_encoder(clf)
    if enc is None:
        raise GenreFusionError(f"model {clf.model_name_!r} takes no poster")
    s = enc.input_size
    out = np.zeros((len(posters), 3, s, s), np.float32)
    present = np.zeros(len(posters), bool)
    for i, p in enumerate(posters):
        if p is None:
            continue
        out[i] = enc.preprocess(load_image(p, name=str(p) if isinstance(p, (str, os.PathLike)) else f"poster #{i}")).numpy()
        present[i] = True
    return out, present


def text_features(clf, plots: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """``(text [N,D] float32, text_present [N] bool)``: the graph's text input for plots (str or None)."""
    import torch

    from .encoders.inputs import build_inputs
    from .inference import Batcher

    spec = clf.bundle_.spec
    if not spec.get("text_route"):
        raise GenreFusionError(f"model {clf.model_name_!r} takes no plot")
    plots = [p if isinstance(p, str) and p.strip() else None for p in plots]
    with clf._lock:
        encoders = clf.input_encoders()
    # the lexical blend's input is ``lexical_features``'s: not computed here too
    inputs = build_inputs([None] * len(plots), plots, dataclasses.replace(encoders, lexical=None), progress=False)
    present = inputs.text_ok.numpy().astype(bool)
    if spec["text_route"] == "minilm":
        return inputs.minilm.numpy().astype(np.float32), present
    # LSTM route: the model's own (fine-tuned) recurrent encoder, pooled
    model = clf.bundle_.models[clf.model_name_]
    enc = model.plot.encoder if clf.model_name_ == "fused" else model.encoder
    batch = Batcher.for_spec(spec, inputs)(np.arange(len(plots)))
    with torch.inference_mode():
        feats = enc(batch["text"]).float().numpy()
    feats[~present] = 0.0
    return feats, present


def lexical_features(clf, plots: Sequence[str | None]) -> np.ndarray:
    """``lexical [N,G] float32``: the tf-idf logistic regression's probabilities for plots (str or None; the
    graph ignores the rows without a plot)."""
    return clf.bundle_.lexical.predict_proba([p if isinstance(p, str) else "" for p in plots]).astype(np.float32)


def onnx_inputs(clf, titles: Sequence[dict]) -> dict[str, np.ndarray]:
    """The feed dict for ``onnxruntime`` for titles ``{"poster": ..., "plot": ...}``."""
    feed = {}
    posters = [t.get("poster") for t in titles]
    plots = [t.get("plot") for t in titles]
    if clf.model_name_ in ("fused", "poster"):
        feed["image"], feed["image_present"] = preprocess_posters(clf, posters)
    if clf.model_name_ in ("fused", "plot"):
        feed["text"], feed["text_present"] = text_features(clf, plots)
    if lexical_weight(clf):
        feed["lexical"] = lexical_features(clf, plots)
    return feed


# -- export ----------------------------------------------------------------------------------------------------
def input_spec(clf) -> dict:
    enc = _image_encoder(clf) if clf.model_name_ in ("fused", "poster") else None
    spec = {}
    if enc is not None:
        s = enc.input_size
        spec["image"] = {"dtype": "float32", "shape": ["batch", 3, s, s], "encoder": enc.name,
                         "preprocess": {"color": "RGB", "resize_shorter_side": round(s * 256 / 224),
                                        "resample": "bilinear", "center_crop": s, "scale": 1 / 255,
                                        "mean": list(enc.mean), "std": list(enc.std), "layout": "NCHW"},
                         "python": "genrefusion.export.preprocess_posters(clf, posters)"}
        spec["image_present"] = {"dtype": "bool", "shape": ["batch"], "meaning": "False: no poster"}
    if clf.model_name_ in ("fused", "plot"):
        route = clf.bundle_.spec.get("text_route")
        how = ("all-MiniLM-L6-v2 sentence embedding: mean over tokens, L2-normalised; a plot over 256 word pieces is "
               "cut into equal windows whose embeddings are averaged (weighted by length) and re-normalised"
               if route == "minilm" else "the model's AWD-LSTM pooled representation of the tokenised plot")
        spec["text"] = {"dtype": "float32", "shape": ["batch", text_dim(clf)], "route": route, "features": how,
                        "python": "genrefusion.export.text_features(clf, plots)"}
        spec["text_present"] = {"dtype": "bool", "shape": ["batch"], "meaning": "False: no plot"}
    if lexical_weight(clf):
        spec["lexical"] = {"dtype": "float32", "shape": ["batch", len(clf.genres_)], "weight": lexical_weight(clf),
                           "features": "the tf-idf logistic regression's probability per genre (the bundle's "
                                       "lexical.safetensors); the graph blends it into rows with a plot",
                           "python": "genrefusion.export.lexical_features(clf, plots)"}
    return spec


def export_onnx(src, out: str | os.PathLike, fmt: str = "onnx", check: bool = True) -> dict:
    """Export the model of ``src`` (run dir, bundle folder or GenreClassifier) to ONNX at ``out``.

    Returns the sidecar dict (also written to ``out + ".json"``). With ``check``, onnxruntime runs the
    written graph on two synthetic titles and must match PyTorch within 1e-4."""
    import torch

    from .paths import check_writable_target

    if fmt != "onnx":
        raise BadInput(f"--format: unsupported export format {fmt!r} (supported: onnx)")
    out = Path(check_writable_target(out, "ONNX model"))
    if out.suffix.lower() != ".onnx":
        raise BadInput(f"{out}: the output name must end in .onnx")
    if out.is_dir():
        raise BadInput(f"{out}: is a folder; give a file name ending in .onnx")
    clf = _classifier(src)
    graph, names = build_graph(clf)
    args = _dummy_inputs(clf, names, 2)
    try:
        with atomic_path(out) as tmp:
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the TorchScript exporter's constant-folding chatter
                torch.onnx.export(graph, tuple(torch.from_numpy(args[n]) for n in names), tmp, dynamo=False,
                                  input_names=names, output_names=["probs"], opset_version=OPSET,
                                  dynamic_axes={**{n: {0: "batch"} for n in names}, "probs": {0: "batch"}},
                                  do_constant_folding=True)
            _check_onnx(tmp, graph, names, args) if check else None
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
    except GenreFusionError:
        raise
    except Exception as err:
        raise GenreFusionError(f"{out}: ONNX export failed ({type(err).__name__}: "
                               f"{(str(err).splitlines() or [''])[0][:200]})") from err
    sidecar = {
        "format": FORMAT, "version": 1, "onnx": out.name, "opset": OPSET, "model": clf.model_name_,
        "genres": list(clf.genres_), "thresholds": [round(float(t), 6) for t in clf.thresholds_],
        "threshold_sets": {k: [round(float(t), 6) for t in v] for k, v in clf.threshold_sets_.sets.items()},
        "inputs": input_spec(clf), "outputs": {"probs": {"dtype": "float32", "shape": ["batch", len(clf.genres_)],
                                                         "meaning": "sigmoid probability per genre"}},
        "decision": "genre predicted where probs >= threshold_sets[both|poster|plot, by the inputs the title has; "
                    "the pooled 'thresholds' when absent] (per genre, tuned on the run's dev scores: its dev "
                    "split, or with cross-fitting the out-of-fold scores of train + dev)",
        "source": str(getattr(clf, "run_dir_", "")), "genrefusion_version": clf.config_.get("genrefusion_version"),
    }
    write_json(out.with_name(out.name + ".json"), sidecar)
    return sidecar


def _dummy_inputs(clf, names, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feed = {}
    if "image" in names:
        s = _image_encoder(clf).input_size
        feed["image"] = rng.standard_normal((n, 3, s, s)).astype(np.float32)
        feed["image_present"] = np.array([True, False] * (n // 2) + [True] * (n % 2))
    if "text" in names:
        feed["text"] = rng.standard_normal((n, text_dim(clf))).astype(np.float32)
        feed["text_present"] = np.array([True] * (n - 1) + [False])
    if "lexical" in names:
        feed["lexical"] = rng.uniform(size=(n, len(clf.genres_))).astype(np.float32)
    return feed


def _check_onnx(path, graph, names, feed) -> None:
    import torch

    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        return  # export works without them; the check needs genrefusion[export]
    onnx.checker.check_model(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["probs"], {k: feed[k] for k in names})[0]
    with torch.inference_mode():
        want = graph(*(torch.from_numpy(feed[k]) for k in names)).numpy()
    diff = float(np.abs(got - want).max())
    if not diff <= 1e-4:
        raise GenreFusionError(f"{path}: onnxruntime output differs from PyTorch by {diff:.2e} (> 1e-4)")
