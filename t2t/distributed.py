"""torch.distributed set-up for `torchrun` (or `t2t train --nproc N`): one process per device.

NCCL on GPUs, gloo on CPUs. Every collective has a timeout, so when one worker dies the others
stop with a message instead of hanging.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from t2t.errors import TrainingError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def from_environment() -> Dist:
    """The process's place in a torchrun job (rank 0 of 1 when not launched by torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    return Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(d: Dist, device: torch.device, timeout_s: float = 600.0) -> None:
    if not d.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=d.rank, world_size=d.world_size,
                            timeout=datetime.timedelta(seconds=timeout_s))


def shutdown() -> None:
    global _setup_group
    _setup_group = None
    if dist.is_initialized():
        dist.destroy_process_group()


def communication_error(e: BaseException) -> bool:
    """Whether an exception comes from the process group (a peer gone, a timeout)."""
    kinds = tuple(getattr(dist, n) for n in ("DistError", "DistBackendError", "DistNetworkError") if hasattr(dist, n))
    text = str(e).lower()
    return isinstance(e, kinds) or any(w in text for w in ("gloo", "nccl", "connection", "timed out", "timeout"))


def stopped(what: str, e: BaseException) -> TrainingError:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return TrainingError(f"distributed training: {what} failed; another worker probably stopped ({first}). "
                         f"Resume with --resume once all workers can run.")


def _guard(fn, what: str):
    try:
        return fn()
    except RuntimeError as e:
        raise stopped(what, e) from None


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum of a list of numbers over all workers."""
    if not dist.is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    _guard(lambda: dist.all_reduce(t), "summing across workers")
    return t.tolist()


def broadcast(obj, device: torch.device):
    """Rank 0's Python object, on every worker."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    _guard(lambda: dist.broadcast_object_list(box, src=0, device=device), "broadcast from rank 0")
    return box[0]


# Set-up (training a tokenizer, preparing a corpus) can take far longer than a collective's usual
# timeout; the other workers wait for it in a group of their own. A worker that dies meanwhile ends
# the job through torchrun, so the long wait never hangs.
SETUP_TIMEOUT_S = 24 * 3600.0
_setup_group = None


def broadcast_setup(obj):
    """Rank 0's Python object on every worker, however long rank 0 takes to make it."""
    global _setup_group
    if not dist.is_initialized():
        return obj
    if _setup_group is None:
        _setup_group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=SETUP_TIMEOUT_S))
    box = [obj]
    _guard(lambda: dist.broadcast_object_list(box, src=0, group=_setup_group), "waiting for rank 0's set-up")
    return box[0]


def barrier() -> None:
    if dist.is_initialized():
        _guard(dist.barrier, "waiting for the other workers")
