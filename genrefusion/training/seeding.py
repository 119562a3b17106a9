"""Seeds: one per (run seed, stage, epoch), so a resumed run makes the same random choices as an uninterrupted one."""
from __future__ import annotations

import random
import zlib

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def stage_seed(seed: int, stage: str, epoch: int) -> int:
    return (seed * 1_000_003 + zlib.crc32(stage.encode()) + 7919 * epoch) % 2**31
