"""PyTorch's own distributed engine, made optional.

``genrefusion train`` runs unchanged as a single process or under ``torchrun`` (one or many nodes):
these helpers read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR...), pick the
backend (nccl on CUDA, gloo on CPU), and give rank-0-only logging and metric reduction. In a single
process every helper is a cheap no-op (returns its input unchanged), so the training code has one path
and a single-process run is unaffected.

Conventions under torchrun:

- rank 0 owns the run folder and the feature cache: it alone writes them, and whatever is read from
  them (checkpoints, finished stages, the split, cache hits) is read by rank 0 and broadcast
  (``main_only``, ``from_main``). Only the datasets must be readable by every rank; the run folder
  and the cache need not be on a shared filesystem.
- feature extraction: every rank encodes a stride of rank 0's cache misses (``share_work``), rank 0
  gathers them, appends them to the cache and broadcasts the full matrix (``merge_shared_work``).
- training: ``DistributedSampler`` gives each rank an equal slice of every global batch and
  ``DistributedDataParallel`` averages the gradients; dev scores are computed on rank shards,
  gathered in row order and the early-stopping score is broadcast from rank 0, so every rank takes
  the same decision (a rank that stopped while another trained on would deadlock).
"""
from __future__ import annotations

import contextlib
import functools
import logging
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
_DEVICE = None  # set by init(); None means CPU
_SOLO = 0        # > 0 while rank 0 runs something alone (run_on_main): no collectives then


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
    global _INFO, _DEVICE
    import torch
    import torch.distributed as dist

    info = env_info()
    if info.world_size > 1 and not dist.is_initialized():
        backend = "nccl" if (device is not None and device.type == "cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    if info.world_size > 1 and not info.is_main:
        # rank-0-only logging: the other ranks keep warnings and errors, whatever handlers the CLI installed
        logging.disable(logging.INFO)
    _INFO, _DEVICE = info, device
    return info


def current_device():
    """The device ``init`` was given (CPU when none)."""
    import torch

    return _DEVICE if _DEVICE is not None else torch.device("cpu")


def info() -> DistInfo:
    return _INFO


def is_main() -> bool:
    return _INFO.is_main


def barrier() -> None:
    if _INFO.enabled:
        import torch.distributed as dist

        dist.barrier()


def cleanup(sync: bool = True) -> None:
    """Tear the process group down. ``sync``: wait for every rank first, since a rank that destroys its gloo
    group while a peer still talks to it can abort in C++ ("terminate called without an active exception");
    pass False on the error path, where a peer may be gone and a barrier would hang."""
    if _INFO.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            if sync:
                dist.barrier()
            dist.destroy_process_group()
        logging.disable(logging.NOTSET)


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


def unshard(parts, n: int):
    """Inverse of ``shard`` for arrays: the rank-ordered ``parts`` [shard(x, r) for r] -> x (length n)."""
    import numpy as np

    parts = [np.asarray(p) for p in parts]
    full = next((p for p in parts if p.ndim and len(p)), parts[0])
    out = np.empty((n,) + full.shape[1:], dtype=full.dtype)
    for r, p in enumerate(parts):
        if len(out[r::len(parts)]):
            out[r::len(parts)] = p
    return out


# -- rank 0 owns the run folder ------------------------------------------------------------------------------
def from_main(fn):
    """``fn()`` run on rank 0 only, its result broadcast to every rank (a read of rank 0's files)."""
    if not _INFO.enabled or _SOLO:
        return fn()
    return broadcast_object(fn() if _INFO.is_main else None)


def main_only(fn):
    """Decorator: the call happens on rank 0 only (a write); the other ranks skip it and get None."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs) if _INFO.is_main else None
    return wrapper


def main_reads(fn):
    """Decorator: the call happens on rank 0 and its result is broadcast (every rank must call it)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return from_main(lambda: fn(*args, **kwargs))
    return wrapper


def run_on_main(fn, module):
    """``fn()`` (which trains ``module`` in place) on rank 0 only; the others wait, then take rank 0's
    weights and ``fn``'s result. For short stages that are not worth data-parallel training."""
    global _SOLO
    if not _INFO.enabled:
        return fn()
    result = None
    if _INFO.is_main:
        _SOLO += 1  # rank 0's reads inside fn (finished stage?) must not wait for the others
        try:
            result = fn()
        finally:
            _SOLO -= 1
    state = broadcast_object({k: v.cpu() for k, v in module.state_dict().items()} if _INFO.is_main else None)
    module.load_state_dict(state)
    return broadcast_object(result)


# -- training ----------------------------------------------------------------------------------------------
def epoch_sampler(dataset, generator, seed: int, batch_size: int, drop_last: bool):
    """(sampler, per-rank batch size) for one epoch over ``dataset``.

    Single process: ``RandomSampler`` drawing from ``generator`` (seeded with ``seed``). Distributed:
    ``DistributedSampler(seed=seed)`` at epoch 0, whose permutation is ``randperm(n, seed)``, the very
    order ``RandomSampler`` draws; with ``batch_size / world_size`` rows per rank, global batch k holds
    the rows of the single-process batch k, so DDP's averaged gradient is (up to the masked-mean
    weighting and per-rank BatchNorm statistics) the single-process one. ``seed`` already differs per
    (stage, epoch), which is what ``set_epoch`` would otherwise provide."""
    import torch

    if not _INFO.enabled:
        return torch.utils.data.RandomSampler(dataset, generator=generator), batch_size
    if batch_size % _INFO.world_size:
        raise ConfigError(f"train.batch_size ({batch_size}) must be a multiple of the number of ranks "
                          f"({_INFO.world_size}) so that the global batch stays the same size")
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=_INFO.world_size, rank=_INFO.rank,
                                                  shuffle=True, seed=seed, drop_last=drop_last)
    sampler.set_epoch(0)
    return sampler, batch_size // _INFO.world_size


def mean_over_ranks(value: float) -> float:
    """Mean of a per-rank float (ranks see equally many rows); the value itself in a single process."""
    if not _INFO.enabled:
        return value
    return float(all_reduce_sum([float(value)])[0]) / _INFO.world_size


def gather_scores(S, loss: float | None, n_rows: int):
    """Rank shards of (scores [n_r, G], mean loss) -> the full scores in row order and the mean loss."""
    if not _INFO.enabled:
        return S, loss
    parts = all_gather_object((S, loss, len(S)))
    counted = [(lo, k) for _, lo, k in parts if lo is not None and k]
    total = sum(k for _, k in counted)
    mean = sum(lo * k for lo, k in counted) / total if total else None
    return unshard([p[0] for p in parts], n_rows), mean


def sync_buffers(module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) to every rank. DDP broadcasts them before each
    training forward, but the last forward of an epoch updates each rank's copy from its own rows."""
    if not _INFO.enabled:
        return
    import torch.distributed as dist

    for b in module.buffers():
        dist.broadcast(b.data, src=0)


def model_device(module):
    import torch

    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def to_device(batch, device):
    """Tensors of a batch dict (nested one level for LSTM ids) on ``device``; the same objects on CPU."""
    if device is None or device.type == "cpu":
        return batch
    import torch

    def move(v):
        if isinstance(v, torch.Tensor):
            return v.to(device, non_blocking=True)
        if isinstance(v, dict):
            return {k: move(x) for k, x in v.items()}
        return v

    return {k: move(v) for k, v in batch.items()}


def autocast(device):
    """bf16 mixed precision on CUDA GPUs that support it; a no-op elsewhere. CPU: fp32 is faster there;
    older GPUs: fp16 would need loss scaling (GradScaler), so they train in fp32."""
    import torch

    if device is not None and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def wrap_ddp(model, device=None, find_unused: bool = False):
    """DistributedDataParallel around ``model`` when running distributed (only if it has trainable params).

    ``find_unused``: for models that skip a part in some batches (the fused model skips a branch whose
    modality is absent from a rank's whole batch), which then gets no gradient on that rank."""
    if not _INFO.enabled or not any(p.requires_grad for p in model.parameters()):
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    device = device if device is not None else model_device(model)
    ids = [device.index] if device.type == "cuda" else None
    return DDP(model, device_ids=ids, find_unused_parameters=find_unused)


# -- sharded feature extraction ------------------------------------------------------------------------------
def share_work(todo: list) -> list:
    """This rank's stride of rank 0's to-do list (cache misses). Rank 0's list is broadcast because the
    other ranks do not open the cache (rank 0 may be appending to it, and on another node it is not
    there): every rank must agree on the list for ``merge_shared_work`` to put rows back in place."""
    if not _INFO.enabled:
        return todo
    return shard(broadcast_object(list(todo) if _INFO.is_main else None))


def merge_shared_work(values, ok, errors: dict, hits: int, by_key: dict, mine: list, cache=None, ids=None):
    """After each rank computed the features of its ``share_work`` keys: rank 0 gathers the others'
    rows (``values[by_key[k][0]]``) and errors, appends the rows to ``cache`` (rank 0 is its only
    writer, having appended its own as it went), and every rank gets rank 0's complete
    (values, ok, errors, hits)."""
    if not _INFO.enabled:
        return values, ok, errors, hits
    import numpy as np

    mine_out = []
    for k in mine:
        i = by_key[k][0]
        mine_out.append((k, values[i] if ok[i] else None, errors.get(i)))
    gathered = all_gather_object(mine_out)  # every rank holds at most its N/world rows: small next to values
    if _INFO.is_main:
        new_keys, new_rows = [], []
        for rank_out in gathered[1:]:
            for k, row, err in rank_out:
                rows = by_key[k]
                if row is not None:
                    values[rows] = row
                    ok[rows] = True
                    new_keys.append(k)
                    new_rows.append(row)
                if err is not None:
                    for j in rows:
                        errors[j] = err
        if cache is not None and new_keys:
            cache.append(new_keys, np.stack(new_rows),
                         ids=None if ids is None else [ids[by_key[k][0]] for k in new_keys])
    del gathered
    return broadcast_object((values, ok, errors, hits) if _INFO.is_main else None)
