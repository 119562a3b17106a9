"""PyTorch's own distributed engine, made optional.

``genrefusion train`` runs unchanged as a single process or under ``torchrun`` (one or many nodes):
these helpers read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR...), pick the
backend (nccl on CUDA, gloo on CPU), and give rank-0-only logging and metric reduction. In a single
process every helper is a cheap no-op, so the training code has one path.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


_INFO = DistInfo()


def env_info() -> DistInfo:
    """Rank/world size as torchrun exports them (single process when absent)."""
    try:
        return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                        int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError as err:
        raise ConfigError(f"bad torchrun environment ({err})") from None


def resolve_device(device: str = "auto"):
    """``auto`` -> this rank's CUDA device when available, else CPU. ``cuda`` without a GPU is an error."""
    import torch

    info = env_info()
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"--device must be auto, cpu or cuda (got {device!r})")
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("--device cuda requested but no CUDA GPU is available (use --device cpu or auto)")
    if device.startswith("cuda:"):
        return torch.device(device)
    return torch.device("cuda", info.local_rank % max(torch.cuda.device_count(), 1))


def init(device=None) -> DistInfo:
    """Initialise the process group when launched by torchrun; returns this process's DistInfo."""
    global _INFO
    import torch
    import torch.distributed as dist

    info = env_info()
    if info.world_size > 1 and not dist.is_initialized():
        backend = "nccl" if (device is not None and device.type == "cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    _INFO = info
    return info


def info() -> DistInfo:
    return _INFO


def is_main() -> bool:
    return _INFO.is_main


def barrier() -> None:
    if _INFO.enabled:
        import torch.distributed as dist

        dist.barrier()


def cleanup() -> None:
    if _INFO.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def all_reduce_sum(values):
    """Sum a tensor (or list of floats) over ranks; identity in a single process."""
    import torch

    t = values if isinstance(values, torch.Tensor) else torch.tensor(values, dtype=torch.float64)
    if _INFO.enabled:
        import torch.distributed as dist

        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_object(obj):
    """List of ``obj`` from every rank (rank order); ``[obj]`` in a single process."""
    if not _INFO.enabled:
        return [obj]
    import torch.distributed as dist

    out = [None] * _INFO.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, src: int = 0):
    if not _INFO.enabled:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def shard(items, rank: int | None = None, world_size: int | None = None):
    """This rank's share of ``items`` (every world_size-th item): deterministic, disjoint, complete."""
    r = _INFO.rank if rank is None else rank
    w = _INFO.world_size if world_size is None else world_size
    return items[r::w]


def autocast(device):
    """bf16/fp16 mixed precision on CUDA; a no-op context on CPU (fp32 is faster there)."""
    import torch

    if device is not None and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def wrap_ddp(model, device):
    """DistributedDataParallel around ``model`` when running distributed (only if it has trainable params)."""
    if not _INFO.enabled or not any(p.requires_grad for p in model.parameters()):
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    return DDP(model, device_ids=ids)
