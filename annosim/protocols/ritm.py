"""An RITM-style number-of-clicks protocol (Sofiiuk et al. 2022, "Reviving iterative training
with mask guidance for interactive segmentation", ICIP; the NoC@85/NoC@90 evaluation of
interactive segmentation since Xu et al. 2016), applied slice-wise: one click per round on the
worst slice, until the 3D Dice reaches a target.

Rules (truth restricted to the setting's frames; the prediction starts empty):

1. Stop when the 3D Dice of the current prediction reaches ``target`` or ``max_clicks`` clicks
   were given.
2. Slice: the lowest 2D Dice among the candidate frames (``select_from``: ``gt`` = frames where
   the truth has foreground; ``all`` = also frames where only the prediction has); ties: most
   error pixels, then lowest z (:func:`annosim.protocols.clicks.worst_slice`). With the empty
   start this is the slice with the largest truth area.
3. Click: on that slice, the depth (Euclidean distance to the region's boundary, the slice edge
   counting as boundary, no erosion) of the false negatives ``G & ~P`` and of the false
   positives ``P & ~G``, pixels already clicked on that slice set to depth 0. A positive click
   at the deepest false negative when its depth exceeds the false positives' largest depth,
   otherwise a negative click at the deepest false positive (ties between the two: negative, as
   in RITM's clicker; ties within a region: lowest ``(y, x)``). No pixel of positive depth ends
   the protocol.
4. The click is added to the slice's earlier clicks, the volume propagated: one round.

The rows carry Dice per round and the cumulative clicks (one per round), from which reports
compute NoC@85 and NoC@90: the clicks of the first row with Dice >= 0.85 / 0.90. With the
default target 0.90 both thresholds are reached, when at all, before the protocol stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from annosim.metrics import dice, dice_per_slice
from annosim.models.base import SliceModel
from annosim.protocols.base import (
    Prompt,
    Protocol,
    RoundOutcome,
    begin_object,
    propagate_in_frames,
)
from annosim.protocols.clicks import worst_slice
from annosim.protocols.prompts import depth_map


@dataclass(frozen=True)
class RitmParams:
    """Parameters of ``ritm-noc``.

    Attributes
    ----------
    target : float
        3D Dice at which clicking stops (0.90, the NoC@90 threshold).
    max_clicks : int
        Click budget (20, the usual NoC cap).
    select_from : str
        Candidate slices: ``gt`` (default, as he2024) or ``all``.
    """

    target: float = 0.90
    max_clicks: int = 20
    select_from: str = "gt"

    def __post_init__(self) -> None:
        if not 0.0 < self.target <= 1.0:
            raise ValueError(f"target must be in (0, 1], got {self.target}")
        if self.max_clicks < 1:
            raise ValueError(f"max_clicks must be >= 1, got {self.max_clicks}")
        if self.select_from not in ("gt", "all"):
            raise ValueError(f"select_from must be 'gt' or 'all', got {self.select_from!r}")


def ritm_click(
    pred2d: np.ndarray, gt2d: np.ndarray, clicked: np.ndarray | None = None
) -> tuple[int, int, bool] | None:
    """Rule 3 on one slice: ``(y, x, positive)`` or ``None``.

    ``pred2d``, ``gt2d`` bool ``(Y, X)``; ``clicked`` bool ``(Y, X)`` marks pixels already
    clicked (excluded).
    """
    fn_depth = depth_map(gt2d & ~pred2d)
    fp_depth = depth_map(pred2d & ~gt2d)
    if clicked is not None:
        fn_depth[clicked] = 0.0
        fp_depth[clicked] = 0.0
    fn_max, fp_max = float(fn_depth.max()), float(fp_depth.max())
    if fn_max > fp_max:
        depth, positive = fn_depth, True
    elif fp_max > 0.0:
        depth, positive = fp_depth, False
    else:
        return None
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return int(y), int(x), positive


class RitmNoc(Protocol):
    """One deepest-error click per round on the worst slice until the target Dice (see module
    docstring)."""

    name = "ritm-noc"
    native_metrics = ("iou",)
    params_class = RitmParams
    params: RitmParams

    @property
    def max_rounds(self) -> int:
        """One round per click, up to the click budget."""
        return self.params.max_clicks

    def run_object(
        self,
        model: SliceModel,
        gt: np.ndarray,
        frames: np.ndarray | None,
        rng: np.random.Generator,
    ) -> Iterator[RoundOutcome]:
        p = self.params
        call, fm, g = begin_object(model, gt, frames)
        g_fg = g.any(axis=(1, 2))
        pred = np.zeros(g.shape, dtype=bool)
        clicked: dict[int, np.ndarray] = {}
        for k in range(1, p.max_clicks + 1):
            if dice(pred, g) >= p.target:
                return
            d2, errors = dice_per_slice(pred, g)
            candidates = g_fg.copy()
            if p.select_from == "all":
                candidates |= pred.any(axis=(1, 2)) & fm
            z = worst_slice(d2, errors, candidates)
            if z is None:
                return
            done = clicked.setdefault(z, np.zeros(g.shape[1:], dtype=bool))
            click = ritm_click(pred[z], g[z], done)
            if click is None:
                return
            y, x, positive = click
            done[y, x] = True
            call("add_clicks", z, np.array([[y, x]]), np.array([int(positive)]))
            pred = propagate_in_frames(call, fm)
            yield RoundOutcome(
                k, pred, [Prompt("point", z, y, x, positive)], len(clicked), k, call.lap()
            )
