"""Torch device chores shared by the accelerator models: the current CUDA device, pinned host
copies and returning cached allocator memory.

Why the current device matters: code that says ``torch.device("cuda")`` means the *current*
device, which stays ``cuda:0`` unless set. sam2 1.1.0's ``PositionEmbeddingSine`` builds its
warm-up tables that way when the model is built (and then serves them from a cache that ignores
the device), and sam2's CUDA extension launches on the current device with no device guard. A
worker meant for ``cuda:1`` must therefore make ``cuda:1`` current *before* building the model:
:func:`select_cuda_device`.
"""

from __future__ import annotations

import gc
from typing import Any


def select_cuda_device(device: Any) -> bool:
    """Make ``device`` (``cuda:K``, a string or ``torch.device``) torch's current CUDA device.

    Returns True when it was set; ``cpu``, a bare ``cuda`` (the current device already) and any
    device when torch sees no CUDA (the model then refuses it in its own words) give False. An
    index past the devices torch sees is a ConfigError.
    """
    import torch

    from annosim.errors import ConfigError

    dev = torch.device(device)
    if dev.type != "cuda" or dev.index is None or not torch.cuda.is_available():
        return False
    count = torch.cuda.device_count()
    if dev.index >= count:
        raise ConfigError(f"device {str(dev)!r} requested but torch sees {count} CUDA device(s)")
    torch.cuda.set_device(dev)
    return True


def pinned(t: Any) -> Any:
    """``t`` in page-locked host memory (so that ``.to(cuda, non_blocking=True)`` is asynchronous)."""
    return t.pin_memory()


def can_pin(store_device: Any, device: Any) -> bool:
    """Whether host copies kept on ``store_device`` for computing on ``device`` are worth pinning:
    host storage, a CUDA compute device, and CUDA present (pinning needs a CUDA context)."""
    import torch

    return (
        torch.device(store_device).type == "cpu"
        and torch.device(device).type == "cuda"
        and torch.cuda.is_available()
    )


def release_cached_memory(device: Any) -> None:
    """Collect garbage and, on CUDA, hand the caching allocator's unused blocks back to the driver
    (so that ``torch.cuda.mem_get_info`` sees them as free before the next memory check)."""
    import torch

    gc.collect()
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
