"""A per-case cache of SAM2 image-encoder outputs, shared by every object, round and setting.

``SAM2VideoPredictor._get_image_feature`` (sam2 1.1.0) keeps only the most recent frame's
features in ``inference_state["cached_features"]``, so every propagation pass re-runs the image
encoder on every frame. :class:`FeatureCache` runs ``forward_image`` at most once per slice of
the case and keeps the result; :class:`FrameFeatureView` is put in the inference state in place
of the official one-entry dict. The official code only calls ``.get(frame_idx, (None, None))``
on it and replaces it only on a miss, which never happens, so all other predictor code runs
unchanged and the masks stay bitwise equal to the uncached predictor's.

Stored tensors keep the dtype the encoder produced (under CUDA bf16 autocast the two
high-resolution levels are bf16, the third is float32 after the FPN's float32 top-down add);
``store_dtype=torch.bfloat16`` forces bf16 at the cost of exact parity. The positional encodings
are the same for every slice (a deterministic sine table) and are stored once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Iterator

import numpy as np
import torch


class FeatureCache:
    """Image-encoder outputs of the slices of one case, computed on first use.

    Parameters
    ----------
    encode : callable
        ``encode(z) -> backbone_out`` runs the encoder on slice ``z`` (a dict with lists
        ``backbone_fpn`` and ``vision_pos_enc`` of ``(1, C, H, W)`` tensors).
    device : torch.device
        Where the predictor computes; tensors are returned there.
    store_device : torch.device
        Where features are kept (``cpu`` offloads long volumes from the accelerator).
    store_dtype : torch.dtype or None
        Cast stored features to this dtype (``None``: keep the encoder's dtype, exact).
    """

    def __init__(
        self,
        encode: Callable[[int], dict[str, Any]],
        device: torch.device,
        store_device: torch.device | None = None,
        store_dtype: torch.dtype | None = None,
    ) -> None:
        self._encode = encode
        self.device = torch.device(device)
        self.store_device = self.device if store_device is None else torch.device(store_device)
        self.store_dtype = store_dtype
        self._fpn: dict[int, list[torch.Tensor]] = {}
        self._pos_shared: list[torch.Tensor] | None = None
        self._pos_own: dict[int, list[torch.Tensor]] = {}
        #: Number of image-encoder runs so far.
        self.encoder_calls = 0

    def __len__(self) -> int:
        return len(self._fpn)

    def __contains__(self, z: object) -> bool:
        return z in self._fpn

    @property
    def nbytes(self) -> int:
        """Bytes held by stored features (shared positional encodings counted once)."""
        tensors = [t for ts in self._fpn.values() for t in ts]
        tensors += [t for ts in self._pos_own.values() for t in ts]
        tensors += list(self._pos_shared or [])
        return sum(t.numel() * t.element_size() for t in tensors)

    def _store(self, t: torch.Tensor) -> torch.Tensor:
        if self.store_dtype is not None and t.is_floating_point():
            t = t.to(self.store_dtype)
        return t.to(self.store_device)

    def _load(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.device, non_blocking=True)

    def get(self, z: int) -> dict[str, list[torch.Tensor]]:
        """``backbone_out`` of slice ``z`` (``backbone_fpn``, ``vision_pos_enc``) on the device."""
        z = int(z)
        if z not in self._fpn:
            out = self._encode(z)
            self.encoder_calls += 1
            self._fpn[z] = [self._store(t) for t in out["backbone_fpn"]]
            pos = list(out["vision_pos_enc"])
            if self._pos_shared is None:
                self._pos_shared = [self._store(t) for t in pos]
            elif not _same(pos, self._pos_shared, self.store_dtype):
                self._pos_own[z] = [self._store(t) for t in pos]
        pos_src = self._pos_own.get(z, self._pos_shared)
        assert pos_src is not None
        return {
            "backbone_fpn": [self._load(t) for t in self._fpn[z]],
            "vision_pos_enc": [self._load(t) for t in pos_src],
        }

    def clear(self) -> None:
        """Drop every stored feature (the encoder-call counter is kept)."""
        self._fpn.clear()
        self._pos_own.clear()
        self._pos_shared = None


def _same(a: list[torch.Tensor], stored: list[torch.Tensor], dtype: torch.dtype | None) -> bool:
    if len(a) != len(stored):
        return False
    for x, s in zip(a, stored):
        if dtype is not None and x.is_floating_point():
            x = x.to(dtype)
        if x.shape != s.shape or x.dtype != s.dtype or not torch.equal(x.to(s.device), s):
            return False
    return True


class FrameFeatureView(Mapping):
    """Stands in for ``inference_state["cached_features"]`` of one object's video.

    Video frame ``i`` is slice ``frames[i]`` of the case; ``get(i)`` returns
    ``(image, backbone_out)`` like the official dict. ``image`` is an empty placeholder: the
    predictor's callers discard it (sam2 1.1.0), and keeping the normalised frames would cost
    3 x S x S floats a slice.
    """

    def __init__(self, cache: FeatureCache, frames: np.ndarray) -> None:
        self._cache = cache
        self._frames = np.asarray(frames, dtype=np.int64)
        self._image = torch.empty((1, 0, 0, 0), device=cache.device)

    def get(self, frame_idx: Any, default: Any = None) -> Any:  # type: ignore[override]
        i = int(frame_idx)
        if not 0 <= i < self._frames.size:
            return default
        return self._image, self._cache.get(int(self._frames[i]))

    def __getitem__(self, frame_idx: Any) -> Any:
        out = self.get(frame_idx)
        if out is None:
            raise KeyError(frame_idx)
        return out

    def __iter__(self) -> Iterator[int]:
        return iter(i for i, z in enumerate(self._frames.tolist()) if z in self._cache)

    def __len__(self) -> int:
        return sum(1 for _ in self)
