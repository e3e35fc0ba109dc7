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
``store_dtype=torch.bfloat16`` stores bf16 at the cost of exact parity, and loading casts each
level back to the encoder's dtype (the predictor's float32 convolutions need it on the CPU).

Placement: the positional encodings are the same for every slice (a deterministic sine table);
they are kept once, in the encoder's dtype, on the *compute* device, and a new slice's encodings
are compared with them there. Only the per-slice FPN levels go to ``store_device``. With host
storage for a CUDA computation the stored levels are pinned, so loading them is an asynchronous
copy, and :meth:`FeatureCache.prefetch` starts the next frame's copy on a side stream while the
current frame computes (:class:`FrameFeatureView` guesses the next frame from the direction of
the propagation pass).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Iterator

import numpy as np
import torch

from annosim.models.devices import can_pin, pinned


class FeatureCache:
    """Image-encoder outputs of the slices of one case, computed on first use.

    Parameters
    ----------
    encode : callable
        ``encode(z) -> backbone_out`` runs the encoder on slice ``z`` (a dict with lists
        ``backbone_fpn`` and ``vision_pos_enc`` of ``(1, C, H, W)`` tensors).
    device : torch.device
        Where the predictor computes; tensors are returned there, encodings are kept there.
    store_device : torch.device
        Where the FPN levels are kept (``cpu`` offloads long volumes from the accelerator).
    store_dtype : torch.dtype or None
        Store FPN levels in this dtype (``None``: keep the encoder's dtype, exact).

    Attributes
    ----------
    pin : bool
        Stored levels are pinned host memory (host storage, CUDA computation).
    encoder_calls : int
        Number of image-encoder runs so far.
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
        self.pin = can_pin(self.store_device, self.device)
        self._fpn: dict[int, list[torch.Tensor]] = {}
        self._dtypes: list[torch.dtype] = []  # the encoder's dtype of each FPN level
        self._pos_shared: list[torch.Tensor] | None = None
        self._pos_own: dict[int, list[torch.Tensor]] = {}
        self._ahead: tuple[int, list[torch.Tensor]] | None = None  # one prefetched slice
        self._stream: Any = None
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
        return _nbytes(tensors)

    @property
    def slice_nbytes(self) -> int:
        """Bytes of one slice's stored FPN levels (0 before the first slice)."""
        return _nbytes(next(iter(self._fpn.values()), []))

    @property
    def encoding_nbytes(self) -> int:
        """Bytes of the shared positional encodings (0 before the first slice)."""
        return _nbytes(self._pos_shared or [])

    def stored(self, z: int) -> list[torch.Tensor]:
        """The FPN levels of slice ``z`` as stored (``store_device``, ``store_dtype``); KeyError
        when ``z`` is not stored. For checks: :meth:`get` returns the device copies."""
        return list(self._fpn[int(z)])

    def _store(self, t: torch.Tensor) -> torch.Tensor:
        if self.store_dtype is not None and t.is_floating_point():
            t = t.to(self.store_dtype)
        t = t.to(self.store_device)
        return pinned(t) if self.pin else t

    def _load(self, z: int) -> list[torch.Tensor]:
        return [t.to(self.device, dtype=d, non_blocking=True) for t, d in zip(self._fpn[z], self._dtypes)]

    def fill(self, z: int) -> None:
        """Encode and store slice ``z`` unless it is stored already."""
        z = int(z)
        if z in self._fpn:
            return
        out = self._encode(z)
        self.encoder_calls += 1
        fpn = list(out["backbone_fpn"])
        self._dtypes = [t.dtype for t in fpn]
        self._fpn[z] = [self._store(t) for t in fpn]
        pos = [t.to(self.device) for t in out["vision_pos_enc"]]
        if self._pos_shared is None:
            self._pos_shared = pos
        elif not _same(pos, self._pos_shared):
            self._pos_own[z] = pos

    def prefetch(self, z: int) -> None:
        """Start copying stored slice ``z`` to the device on a side CUDA stream; a no-op unless
        the levels are pinned host copies and ``z`` is stored (it never runs the encoder)."""
        z = int(z)
        if not self.pin or z not in self._fpn or (self._ahead is not None and self._ahead[0] == z):
            return
        if self._stream is None:
            self._stream = torch.cuda.Stream(self.device)
        with torch.cuda.stream(self._stream):
            self._ahead = (z, self._load(z))

    def _take_ahead(self, z: int) -> list[torch.Tensor] | None:
        if self._ahead is None or self._ahead[0] != z:
            return None
        tensors, self._ahead = self._ahead[1], None
        current = torch.cuda.current_stream(self.device)
        current.wait_stream(self._stream)
        for t in tensors:
            t.record_stream(current)
        return tensors

    def get(self, z: int) -> dict[str, list[torch.Tensor]]:
        """``backbone_out`` of slice ``z`` (``backbone_fpn``, ``vision_pos_enc``) on the device."""
        z = int(z)
        self.fill(z)
        pos = self._pos_own.get(z, self._pos_shared)
        assert pos is not None
        fpn = self._take_ahead(z)
        return {"backbone_fpn": self._load(z) if fpn is None else fpn, "vision_pos_enc": list(pos)}

    def clear(self) -> None:
        """Drop every stored feature (the encoder-call counter is kept)."""
        self._fpn.clear()
        self._pos_own.clear()
        self._pos_shared = None
        self._ahead = None


def _nbytes(tensors: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _same(a: list[torch.Tensor], stored: list[torch.Tensor]) -> bool:
    """Encodings equal to the stored ones (both on the compute device: no host copy)."""
    if len(a) != len(stored):
        return False
    return all(x.shape == s.shape and x.dtype == s.dtype and torch.equal(x, s) for x, s in zip(a, stored))


class FrameFeatureView(Mapping):
    """Stands in for ``inference_state["cached_features"]`` of one object's video.

    Video frame ``i`` is slice ``frames[i]`` of the case; ``get(i)`` returns
    ``(image, backbone_out)`` like the official dict. ``image`` is an empty placeholder: the
    predictor's callers discard it (sam2 1.1.0), and keeping the normalised frames would cost
    3 x S x S floats a slice.

    After serving frame ``i`` it asks the cache to prefetch the frame a propagation pass visits
    next: ``i + 1`` after a step forward (and at first), ``i - 1`` after a step backward; a jump
    keeps the last direction.
    """

    def __init__(self, cache: FeatureCache, frames: np.ndarray) -> None:
        self._cache = cache
        self._frames = np.asarray(frames, dtype=np.int64)
        self._image = torch.empty((1, 0, 0, 0), device=cache.device)
        self._last: int | None = None
        self._step = 1

    def next_frame(self, i: int) -> int | None:
        """The frame a pass visits after ``i`` (updates the direction), ``None`` past the ends."""
        if self._last is not None and abs(i - self._last) == 1:
            self._step = i - self._last
        self._last = i
        j = i + self._step
        return j if 0 <= j < self._frames.size else None

    def get(self, frame_idx: Any, default: Any = None) -> Any:  # type: ignore[override]
        i = int(frame_idx)
        if not 0 <= i < self._frames.size:
            return default
        out = self._image, self._cache.get(int(self._frames[i]))
        j = self.next_frame(i)
        if j is not None:
            self._cache.prefetch(int(self._frames[j]))
        return out

    def __getitem__(self, frame_idx: Any) -> Any:
        out = self.get(frame_idx)
        if out is None:
            raise KeyError(frame_idx)
        return out

    def __iter__(self) -> Iterator[int]:
        return iter(i for i, z in enumerate(self._frames.tolist()) if z in self._cache)

    def __len__(self) -> int:
        return sum(1 for _ in self)
