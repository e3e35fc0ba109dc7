"""Runtime helpers of the SAM2 adapter that touch torch: one host copy per propagation pass.

``propagate_in_video`` yields ``(frame_idx, obj_ids, video_res_masks)`` per frame. Copying each
frame's mask to the host as it comes synchronises the device once a frame; :func:`collect_pass`
keeps the pass's thresholded masks on the device and copies them once, when the pass ends. The
masks are the same: ``logits > 0`` is computed on the device either way.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np


def collect_pass(outputs: Iterable[tuple[Any, Any, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices ``(n,)`` int64 and bool masks ``(n, H, W)`` of one pass of
    ``propagate_in_video`` (object 0 of each frame), copied to the host once."""
    import torch

    idx: list[int] = []
    masks: list[Any] = []
    for frame_idx, _, logits in outputs:
        idx.append(int(frame_idx))
        masks.append(logits[0, 0] > 0.0)
    if not masks:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0, 0), dtype=bool)
    return np.asarray(idx, dtype=np.int64), torch.stack(masks).cpu().numpy()
