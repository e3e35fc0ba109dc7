"""Ma et al. 2024 ("Segment anything in medical images and videos: benchmark and deployment",
arXiv:2408.03322), as reviewed by He et al. 2024: one bounding box from the ground truth on the
object's middle slice, propagated once through the volume.

Rules: the middle slice is :func:`annosim.protocols.prompts.middle_slice` of the truth within the
setting's frames (``z_min + (z_max - z_min) // 2``, snapped to the nearest slice holding
foreground); the box is the truth's tight 2D box on that slice, ``(y0, x0, y1, x1)`` inclusive,
grown by ``margin`` pixels. One ``add_box``, one propagation, one round. Ma et al. also dropped
slices without foreground from the evaluation: that is the ``fg-only`` setting, not part of the
protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from annosim.models.base import SliceModel
from annosim.protocols.base import (
    Prompt,
    Protocol,
    RoundOutcome,
    begin_object,
    propagate_in_frames,
)
from annosim.protocols.prompts import bounding_box, middle_slice


@dataclass(frozen=True)
class Ma2024Params:
    """Parameters of ``ma2024-box``.

    Attributes
    ----------
    margin : int
        Pixels added to each side of the tight box, clipped to the slice (0: GT-tight, as
        reviewed).
    """

    margin: int = 0

    def __post_init__(self) -> None:
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")


class Ma2024Box(Protocol):
    """One GT-tight box on the middle slice, one propagation (see module docstring)."""

    name = "ma2024-box"
    params_class = Ma2024Params
    prompt_kinds = ("box",)
    params: Ma2024Params

    def run_object(
        self,
        model: SliceModel,
        gt: np.ndarray,
        frames: np.ndarray | None,
        rng: np.random.Generator,
    ) -> Iterator[RoundOutcome]:
        call, fm, g = begin_object(model, gt, frames)
        z = middle_slice(g)
        box = bounding_box(g[z], self.params.margin)
        call("add_box", z, box)
        pred = propagate_in_frames(call, fm)
        yield RoundOutcome(1, pred, [Prompt("box", z, box=box)], 1, 0, call.lap())
