"""Heads and models: the paper's head, poster/plot single-modality models, the fused model."""
from .build import build_fused, build_lstm, build_models, build_single, model_spec
from .fusion import GMU, Branch, FusedModel, drop_modalities
from .heads import MODALITIES, PaperHead, SingleModel, TextPooler, run_body, select_rows

__all__ = ["GMU", "Branch", "FusedModel", "MODALITIES", "PaperHead", "SingleModel", "TextPooler",
           "build_fused", "build_lstm", "build_models", "build_single", "drop_modalities", "model_spec", "run_body",
           "select_rows"]
