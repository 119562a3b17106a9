"""Heads and models: the paper's head, poster/plot single-modality models, the fused model."""
from .fusion import GMU, Branch, FusedModel, drop_modalities
from .heads import MODALITIES, PaperHead, SingleModel, TextPooler, run_body, select_rows

__all__ = ["GMU", "Branch", "FusedModel", "MODALITIES", "PaperHead", "SingleModel", "TextPooler",
           "drop_modalities", "run_body", "select_rows"]
