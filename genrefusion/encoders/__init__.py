"""Encoders (poster backbones, plot encoders), the feature cache and batch feature extraction.

Names are resolved lazily so ``import genrefusion.encoders`` stays cheap (torch/transformers load on first use).
"""
from __future__ import annotations

import importlib

# how MiniLM computes frozen plot features (text.py); here so the CLI can list them without importing torch
TEXT_RUNTIMES = ("auto", "torch", "onnxruntime", "onnxruntime-int8")
# how the poster backbone computes frozen features (image.py; GENREFUSION_IMAGE_RUNTIME)
IMAGE_RUNTIMES = ("auto", "torch", "onnxruntime")

_EXPORTS = {
    "ImageEncoder": "image", "build_image_encoder": "image", "IMAGE_ENCODERS": "image",
    "ResNet50": "resnet",
    "MiniLMEncoder": "text", "build_text_encoder": "text", "TEXT_ENCODERS": "text",
    "Vocab": "tokenize", "tokenize": "tokenize", "spacy_vectors": "tokenize",
    "AWDLSTMEncoder": "lstm", "LanguageModel": "lstm", "train_language_model": "lstm",
    "collate_ids": "lstm", "load_pretrained_awd": "lstm",
    "FeatureCache": "cache", "content_key": "cache",
    "Features": "extract", "extract_image_features": "extract", "extract_text_features": "extract",
    "feature_cache_for": "extract", "cache_namespace": "extract",
    "Inputs": "inputs", "InputEncoders": "inputs", "build_inputs": "inputs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'genrefusion.encoders' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value
