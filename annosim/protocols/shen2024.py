"""Shen et al. 2024 ("Interactive 3D Medical Image Segmentation with SAM 2", arXiv:2408.02635),
as its code runs it (Chuyun-Shen/SAM_2_Medical_3D @8a2b771; protocol-sources.md section 2).

- Video: the slices with more than ``threshold`` (256) GT pixels, ``range(min, max)`` (the last
  one dropped); ``threshold=0``: random 5-9 slice margins from the run's generator
  (:func:`~annosim.protocols.shen_rules.select_video`). The model sees only these frames.
- Conditioning frame: frame ``N // 2`` of the video.
- ``shen2024-points``: an object whose conditioning frame has <= 100 GT pixels is skipped (no
  rows); up to 5 deepest-point clicks on that frame, the full list resent each time
  (``replace=True``, as ``clear_old_points=True``); a step with no click changes nothing.
- ``shen2024-mask``: the GT of the conditioning frame as the mask prompt.
- Then one forward pass from ``f`` and, without a reset, a reverse pass from ``f - 1``.
- Native metrics ``shen_dice`` / ``shen_nsd`` on the video in the source's frame order
  (:mod:`annosim.metrics.native`). One round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from annosim.models.base import SliceModel
from annosim.protocols.base import ModelTimer, Prompt, Protocol, RoundOutcome, frame_mask
from annosim.protocols.shen_rules import conditioning_frame, deepest_click, select_video


@dataclass(frozen=True)
class Shen2024PointsParams:
    """Parameters of ``shen2024-points`` (defaults as the source).

    Attributes
    ----------
    threshold : int
        A slice is in the video when it has more than this many GT pixels (256); 0 = random margins.
    clicks : int
        Click steps on the conditioning frame (5).
    min_pixels : int
        The object is skipped when the conditioning frame has at most this many GT pixels (100).
    """

    threshold: int = 256
    clicks: int = 5
    min_pixels: int = 100

    def __post_init__(self) -> None:
        if self.threshold < 0 or self.clicks < 1 or self.min_pixels < 0:
            raise ValueError("threshold and min_pixels must be >= 0 and clicks >= 1")


@dataclass(frozen=True)
class Shen2024MaskParams:
    """Parameters of ``shen2024-mask``: ``threshold`` as in :class:`Shen2024PointsParams`."""

    threshold: int = 256

    def __post_init__(self) -> None:
        if self.threshold < 0:
            raise ValueError("threshold must be >= 0")


def _start(model: SliceModel, gt: np.ndarray, frames: np.ndarray | None, threshold: int,
           rng: np.random.Generator) -> tuple[ModelTimer, np.ndarray, np.ndarray] | None:
    """The source's video within the setting's frames: ``(call, video, g)`` with the model
    started on the video, or ``None`` when the video has no frame."""
    g = np.asarray(gt, dtype=bool) & frame_mask(gt.shape[0], frames)[:, None, None]
    video = select_video(g, threshold, rng)
    if frames is not None:
        video = video[np.isin(video, frames)]
    if video.size == 0:
        return None
    call = ModelTimer(model)
    call("start_object", video)
    return call, video, g


def _two_passes(call: ModelTimer, video: np.ndarray, f: int) -> np.ndarray:
    """Forward from ``f``, then reverse from the frame before ``f`` without a reset (M L63-76);
    bool (Z, Y, X), empty outside the video."""
    pred = np.asarray(call("propagate_pass", f, reverse=False), dtype=bool).copy()
    before = video[video < f]
    if before.size:
        rev = np.asarray(call("propagate_pass", int(before[-1]), reverse=True), dtype=bool)
        keep = np.zeros(pred.shape[0], dtype=bool)
        keep[before] = True
        pred[keep] = rev[keep]
    inside = np.zeros(pred.shape[0], dtype=bool)
    inside[video] = True
    return pred & inside[:, None, None]


class Shen2024Points(Protocol):
    """Deepest-point clicks on the conditioning frame, two passes (see module docstring)."""

    name = "shen2024-points"
    params_class = Shen2024PointsParams
    params: Shen2024PointsParams
    native_metrics = ("shen_dice", "shen_nsd")
    native_headline = "shen_dice"

    def run_object(self, model: SliceModel, gt: np.ndarray, frames: np.ndarray | None,
                   rng: np.random.Generator) -> Iterator[RoundOutcome]:
        p = self.params
        started = _start(model, gt, frames, p.threshold, rng)
        if started is None:
            return
        call, video, g = started
        f = conditioning_frame(video)
        if int(g[f].sum()) <= p.min_pixels:
            return
        pred2d = np.zeros(g.shape[1:], dtype=bool)
        points: list[tuple[int, int]] = []
        labels: list[int] = []
        prompts: list[Prompt] = []
        for _ in range(p.clicks):
            click = deepest_click(g[f], pred2d)
            if click is None:
                continue
            y, x, pos = click
            points.append((y, x))
            labels.append(int(pos))
            prompts.append(Prompt("point", f, y=y, x=x, positive=pos))
            pred2d = np.asarray(call("add_clicks", f, np.array(points, dtype=np.int64),
                                     np.array(labels, dtype=np.int64), replace=True), dtype=bool)
        pred = _two_passes(call, video, f)
        yield RoundOutcome(1, pred, prompts, 1 if prompts else 0, len(prompts), call.lap(),
                           scored_frames=frame_mask(g.shape[0], video))


class Shen2024Mask(Protocol):
    """The GT mask of the conditioning frame, two passes (see module docstring)."""

    name = "shen2024-mask"
    params_class = Shen2024MaskParams
    prompt_kinds = ("mask",)
    params: Shen2024MaskParams
    native_metrics = ("shen_dice", "shen_nsd")
    native_headline = "shen_dice"

    def run_object(self, model: SliceModel, gt: np.ndarray, frames: np.ndarray | None,
                   rng: np.random.Generator) -> Iterator[RoundOutcome]:
        started = _start(model, gt, frames, self.params.threshold, rng)
        if started is None:
            return
        call, video, g = started
        f = conditioning_frame(video)
        call("add_mask", f, g[f].copy())
        pred = _two_passes(call, video, f)
        yield RoundOutcome(1, pred, [Prompt("mask", f)], 1, 0, call.lap(),
                           scored_frames=frame_mask(g.shape[0], video))
