"""SAM2 one-shot 2D prediction (mixed into :class:`SAM2Model`).

:meth:`Sam2PassesMixin.predict_slice` is sam2's ``SAM2ImagePredictor.predict`` (sam2 1.1.0) on
the backbone features the case's :class:`~annosim.models.sam2_features.FeatureCache` already
holds for slice ``z``: the features are prepared exactly as ``set_image`` prepares them after
``forward_image`` (``_prepare_backbone_features``, ``no_mem_embed`` added when the model says
so), prompts are scaled to the model's input as ``SAM2Transforms`` scales them (x / W, y / H,
times image_size; a box as two corner points labelled 2 and 3 before the clicks), then the
prompt encoder and mask decoder run as ``_predict`` runs them, with
``multimask_output=False`` (as Ma et al.'s ``infer_SAM2_3D_npz.py`` calls it; the decoder keeps
the build's stability fallback) and upsamples to the slice size; the mask is ``> 0``. The video
state (prompts, outputs) is never read or written. Where annosim differs from Ma's script: the
slice is encoded from annosim's frame (the video path's resize), not from a torchvision bilinear
resize of the full-resolution slice.

SAM2's ``propagate_pass`` is still the base default (``propagate()`` on the visited frames): a
single ``propagate_in_video(start_frame_idx=...)`` pass fails on the CPU when it starts before
the first prompted frame (see the comment in the class).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

import numpy as np


class Sam2PassesMixin:
    """``predict_slice``, ``predict_slice_masked`` and ``propagate_pass`` for
    :class:`annosim.models.sam2_model.SAM2Model` (uses its ``predictor``, ``_cache``,
    ``_frames_in``, ``frames``, ``shape`` and helpers)."""

    def predict_slice(
        self, z: int, points: np.ndarray | None = None, labels: np.ndarray | None = None,
        box: tuple[int, int, int, int] | None = None,
    ) -> np.ndarray:
        """One-shot bool ``(Y, X)`` of slice ``z`` (any slice of the case) from clicks ``points``
        (K, 2) ``(y, x)`` with ``labels`` (K,) and/or ``box`` ``(y0, x0, y1, x1)`` inclusive
        pixels (given to sam2 as ``x0, y0, x1, y1``, as the sources pass them)."""
        if self._cache is None or self.shape is None:  # type: ignore[attr-defined]
            raise RuntimeError("set_volume must be called before predict_slice")
        z = int(z)
        if not 0 <= z < self.shape[0]:  # type: ignore[attr-defined]
            raise ValueError(f"slice {z} outside the volume")
        if points is None and box is None:
            raise ValueError("predict_slice needs points or a box")
        pts = lbs = None
        if points is not None:
            pts = np.asarray(points, dtype=np.float32).reshape(-1, 2)[:, ::-1].copy()  # -> (x, y)
            lbs = np.asarray(labels, dtype=np.int32).reshape(-1)
            if pts.shape[0] != lbs.shape[0] or pts.shape[0] == 0:
                raise ValueError("points (K, 2) and labels (K,) must be non-empty and agree")
        sam_box = None
        if box is not None:
            y0, x0, y1, x1 = (float(v) for v in box)
            sam_box = np.array([x0, y0, x1, y1], dtype=np.float32)
        with self._context():  # type: ignore[attr-defined]
            return self._image_heads(z, pts, lbs, sam_box)

    def predict_slice_masked(
        self, z: int, mask: np.ndarray, points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
    ) -> np.ndarray:
        """:meth:`predict_slice` from clicks plus a mask prompt, as RadioActive's SAM2 inferer
        sends one (``model/SAM2.py`` L184-205, L410-431 @1796386): this model's low-resolution
        logits of its last one-shot prediction of slice ``z`` when that prediction is ``mask``,
        as the prompt encoder's ``masks`` input; any other ``mask`` goes in as 0/1 resized
        bilinearly to the low resolution (a case the source never meets)."""
        import torch
        import torch.nn.functional as F

        cache, lows = getattr(self, "_last_low", (None, {}))
        last = lows.get(int(z)) if cache is self._cache else None  # type: ignore[attr-defined]
        m = np.asarray(mask, dtype=bool)
        size = self.predictor.sam_prompt_encoder.mask_input_size  # type: ignore[attr-defined]
        h, w = m.shape
        if last is not None and np.array_equal(
                (F.interpolate(last, (h, w), mode="bilinear", align_corners=False)[0, 0] > 0).numpy(), m):
            self._mask_input = last
        else:
            t = torch.from_numpy(m.astype(np.float32))[None, None]
            self._mask_input = F.interpolate(t, size, mode="bilinear", align_corners=False)
        try:
            return self.predict_slice(z, points, labels)
        finally:
            self._mask_input = None

    def _image_heads(
        self, z: int, pts: np.ndarray | None, lbs: np.ndarray | None, box: np.ndarray | None
    ) -> np.ndarray:
        """``SAM2ImagePredictor.set_image`` + ``_predict`` (sam2 1.1.0) on the cached features of
        ``z``, prompts in (x, y) slice pixels; bool ``(Y, X)`` (upsampled logits ``> 0``).

        sam2's class itself needs torchvision only for its image transform, which is not used
        here (the features come from the cache), so its few steps are taken as it takes them."""
        import torch
        import torch.nn.functional as F

        sam = self.predictor  # type: ignore[attr-defined]
        h, w = self._frames_in.height, self._frames_in.width  # type: ignore[attr-defined]
        _, feats, _, sizes = sam._prepare_backbone_features(self._cache.get(z))  # type: ignore[attr-defined]
        if sam.directly_add_no_mem_embed:
            feats[-1] = feats[-1] + sam.no_mem_embed
        maps = [f.permute(1, 2, 0).view(1, -1, *s) for f, s in zip(feats, sizes)]
        scale = torch.tensor([sam.image_size / w, sam.image_size / h], device=self.device)  # type: ignore[attr-defined]
        coords, labels = [], []
        if box is not None:  # the box first, as corners labelled 2 and 3
            coords.append(torch.as_tensor(box, device=scale.device).reshape(2, 2) * scale)
            labels.append(torch.tensor([2, 3], dtype=torch.int, device=scale.device))
        if pts is not None:
            coords.append(torch.as_tensor(pts, device=scale.device).reshape(-1, 2) * scale)
            labels.append(torch.as_tensor(lbs, dtype=torch.int, device=scale.device))
        points = (torch.cat(coords)[None].float(), torch.cat(labels)[None])
        masks = getattr(self, "_mask_input", None)
        if masks is not None:
            masks = masks.to(scale.device)
        sparse, dense = sam.sam_prompt_encoder(points=points, boxes=None, masks=masks)
        low, _, _, _ = sam.sam_mask_decoder(
            image_embeddings=maps[-1], image_pe=sam.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=False, repeat_image=False, high_res_features=maps[:-1],
        )
        up = F.interpolate(low.float(), (h, w), mode="bilinear", align_corners=False)
        cache, lows = getattr(self, "_last_low", (None, {}))
        if cache is not self._cache:  # type: ignore[attr-defined]
            lows = {}
        lows[int(z)] = low.float().cpu()  # the last one-shot logits of z, for predict_slice_masked
        self._last_low = (self._cache, lows)  # type: ignore[attr-defined]
        return (up[0, 0] > 0).cpu().numpy()

    # propagate_pass: the base default (propagate() on the visited frames) for now. One
    # propagate_in_video call per pass fails on the CPU when the pass starts before the first
    # prompted frame (sam2 keeps the memory features in bf16 and the CPU path does not autocast).


_progress_lock = threading.Lock()
_progress_depth = [0]
_progress_saved: list[Any] = [None]


@contextlib.contextmanager
def _quiet_sam2_progress() -> Iterator[None]:
    """Silence the tqdm bar ``propagate_in_video`` prints on every pass (restored on exit)."""
    import sam2.sam2_video_predictor as svp

    with _progress_lock:
        if _progress_depth[0] == 0:
            _progress_saved[0] = svp.tqdm
            svp.tqdm = _no_progress
        _progress_depth[0] += 1
    try:
        yield
    finally:
        with _progress_lock:
            _progress_depth[0] -= 1
            if _progress_depth[0] == 0:
                svp.tqdm = _progress_saved[0]


def _no_progress(iterable: Any, *args: Any, **kwargs: Any) -> Any:
    return iterable
