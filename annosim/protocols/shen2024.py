"""Shen et al. 2024 ("Interactive 3D medical image segmentation with SAM 2", arXiv:2408.02635),
as reviewed by He et al. 2024: 5 clicks, or the ground-truth mask, on a single centre slice,
propagated once through the volume.

The centre slice is the slice of the he2024 first click (:func:`annosim.protocols.clicks.
first_click`: the voxel of the largest 26-connected component nearest its centroid).

- ``shen2024-points``: the he2024 initial-slice rule (he2024 rules 1-3): a positive
  click there, then up to 4 more, each at the centre of the larger eroded error region of the
  slice's prediction; one propagation; one round. It is :class:`~annosim.protocols.he2024.He2024`
  with ``rounds=1``.
- ``shen2024-mask``: the truth of the centre slice given with ``add_mask``; one propagation;
  one round.
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
from annosim.protocols.clicks import CENTER_RULES, first_click
from annosim.protocols.he2024 import He2024, He2024Params


@dataclass(frozen=True)
class Shen2024PointsParams:
    """Parameters of ``shen2024-points``.

    Attributes
    ----------
    clicks : int
        Clicks on the centre slice, the first one included (5).
    erosion : int
        Side of the square eroding the error regions before a click (3, as in he2024).
    center_rule : str
        ``"centroid"`` or ``"scalar-mean"`` (see :func:`annosim.protocols.clicks.region_center`).
    """

    clicks: int = 5
    erosion: int = 3
    center_rule: str = "centroid"

    def __post_init__(self) -> None:
        if self.clicks < 1:
            raise ValueError(f"clicks must be >= 1, got {self.clicks}")
        if self.center_rule not in CENTER_RULES:
            raise ValueError(f"center_rule must be one of {CENTER_RULES}")


class Shen2024Points(Protocol):
    """Up to 5 iterative clicks on the centre slice, one propagation (see module docstring)."""

    name = "shen2024-points"
    params_class = Shen2024PointsParams
    params: Shen2024PointsParams

    def __init__(self, params: Shen2024PointsParams | None = None) -> None:
        super().__init__(params)
        p = self.params
        self._he = He2024(
            He2024Params(rounds=1, initial_clicks=p.clicks, erosion=p.erosion, center_rule=p.center_rule,
                         first_click="largest-component", start_tie="negative")
        )

    def run_object(
        self,
        model: SliceModel,
        gt: np.ndarray,
        frames: np.ndarray | None,
        rng: np.random.Generator,
    ) -> Iterator[RoundOutcome]:
        yield from self._he.run_object(model, gt, frames, rng)


@dataclass(frozen=True)
class Shen2024MaskParams:
    """``shen2024-mask`` has no parameters (kept as a dataclass for run.json)."""


class Shen2024Mask(Protocol):
    """The ground-truth mask of the centre slice, one propagation (see module docstring)."""

    name = "shen2024-mask"
    params_class = Shen2024MaskParams
    prompt_kinds = ("mask",)
    params: Shen2024MaskParams

    def run_object(
        self,
        model: SliceModel,
        gt: np.ndarray,
        frames: np.ndarray | None,
        rng: np.random.Generator,
    ) -> Iterator[RoundOutcome]:
        call, fm, g = begin_object(model, gt, frames)
        z = first_click(g, "largest")[0]
        call("add_mask", z, g[z].copy())
        pred = propagate_in_frames(call, fm)
        yield RoundOutcome(1, pred, [Prompt("mask", z)], 1, 0, call.lap())
