"""Export a trained model to ONNX: the image backbone + the served (fused) model in one graph.

  genrefusion export RUN_DIR --format onnx --out model.onnx

Writes model.onnx and model.onnx.json (genres, per-genre thresholds, input spec). Inputs: `image`
[B,3,S,S] float32 (preprocessed poster; S = the backbone's input size, 224 for EfficientNet-Lite0),
`image_present` [B] bool, `text` [B,D] float32 (plot features computed as in predict: MiniLM sentence
embedding, or the model's pooled LSTM state), `text_present` [B] bool, and for a model that blends
the tf-idf model into titles with a plot (the default), `lexical` [B,G] float32 (that model's probabilities);
output `probs` [B,G]. See genrefusion/export.py for the exact recipe and the Python helpers that compute the
inputs, and model.onnx.json for the inputs this graph takes."""
from __future__ import annotations

from . import add_image_weights


def add_arguments(p):
    import argparse

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("run_dir", metavar="RUN_DIR", help="a trained run folder (or its model bundle folder)")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="export format (default onnx)")
    p.add_argument("--out", required=True, metavar="FILE", help="output file, e.g. model.onnx")
    add_image_weights(p)
    p.add_argument("--no-check", action="store_true",
                   help="skip the onnxruntime-vs-PyTorch check of the written graph")


def run(args) -> int:
    from ..export import export_onnx
    from ..predict import GenreClassifier

    clf = GenreClassifier.load(args.run_dir, image_weights=args.image_weights)
    info = export_onnx(clf, args.out, args.format, check=not args.no_check)
    names = ", ".join(info["inputs"])
    print(f"wrote {args.out} ({info['model']} model, {len(info['genres'])} genres; inputs: {names}) "
          f"and {args.out}.json")
    return 0
