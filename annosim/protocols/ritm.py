"""The RITM number-of-clicks protocol (Sofiiuk et al. 2022, "Reviving iterative training with
mask guidance for interactive segmentation", ICIP; SamsungLabs/ritm_interactive_segmentation
@b9b4460, ``../shared/reference/protocol-sources.md`` section 6: K = ``isegm/inference/clicker.py``,
Ev = ``isegm/inference/evaluation.py``, Ut = ``isegm/inference/utils.py``), on CT: one click per
round until the IoU reaches a target or the click budget is spent.

The source is 2D. Which slice of the volume gets each click is **annosim's adaptation** (the
source has no such rule): the slice with the lowest 2D Dice among the candidate frames
(``select_from``: ``gt`` = frames where the truth has foreground; ``all`` = also frames where
only the prediction has), ties: most error pixels, then lowest z
(:func:`annosim.protocols.clicks.worst_slice`); with the empty start that is the slice with the
largest truth area. On that slice the source's rules apply:

1. Click (K L29-56): FN = ``G & ~P``, FP = ``P & ~G``; their exact Euclidean distance
   transforms with the slice edge counting as background (1 px zero padding); pixels already
   clicked on that slice set to 0. Positive iff the FN maximum is strictly larger than the FP
   maximum; **a tie, including both being 0, gives a negative click**. The click lands on the
   first pixel in raster order at the chosen map's maximum (with both maps 0, pixel ``(0, 0)``).
2. The click is added to the slice's earlier clicks, the volume propagated: one round.
3. Stop (Ev L42-54) once the IoU over the setting's frames is >= ``target`` (0.90, at least one
   click made), or after ``max_clicks`` (20) clicks. ``target > 1`` never stops (the source's
   ``--iou-analysis`` uses 1.01, so that every object gets all 20 clicks).

Rows carry the native ``iou`` per round; the report computes NoC@80/85/90 in IoU with failure
= the click budget and mIoU@k from them (:mod:`annosim.metrics.native_object`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from annosim.metrics import dice_per_slice
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
        IoU at which clicking stops (0.90; the source clamps it to >= 0.8, and so does this
        check; above 1: never stop).
    max_clicks : int
        Click budget (20, the source's; NoC counts it for an object that never reaches the
        threshold).
    select_from : str
        Candidate slices (annosim's 3D adaptation): ``gt`` (default) or ``all``.
    """

    target: float = 0.90
    max_clicks: int = 20
    select_from: str = "gt"

    def __post_init__(self) -> None:
        if not self.target >= 0.8:
            raise ValueError(f"target must be >= 0.8 (the source clamps it there), got {self.target}")
        if self.max_clicks < 1:
            raise ValueError(f"max_clicks must be >= 1, got {self.max_clicks}")
        if self.select_from not in ("gt", "all"):
            raise ValueError(f"select_from must be 'gt' or 'all', got {self.select_from!r}")


def ritm_click(
    pred2d: np.ndarray, gt2d: np.ndarray, clicked: np.ndarray | None = None
) -> tuple[int, int, bool]:
    """Rule 1 on one slice (K L29-56): ``(y, x, positive)``.

    ``pred2d``, ``gt2d`` bool ``(Y, X)``; ``clicked`` bool ``(Y, X)`` marks pixels already
    clicked (depth 0). Ties between the two maxima (0 included) give a negative click; the
    location is the first raster-order pixel at the chosen map's maximum.
    """
    fn_depth = depth_map(gt2d & ~pred2d)
    fp_depth = depth_map(pred2d & ~gt2d)
    if clicked is not None:
        fn_depth[clicked] = 0.0
        fp_depth[clicked] = 0.0
    positive = float(fn_depth.max()) > float(fp_depth.max())
    depth = fn_depth if positive else fp_depth
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return int(y), int(x), positive


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU ``|P & G| / |P | G|`` of bool arrays (Ut L69-76; 1 when both are empty)."""
    union = int(np.count_nonzero(pred | gt))
    return 1.0 if union == 0 else int(np.count_nonzero(pred & gt)) / union


class RitmNoc(Protocol):
    """One deepest-error click per round on the worst slice until the target IoU (see module
    docstring)."""

    name = "ritm-noc"
    native_metrics = ("iou",)
    native_object_metrics = ("ritm_noc80", "ritm_noc85", "ritm_noc90", "ritm_over_max85",
                             "ritm_over_max90", "ritm_miou1", "ritm_miou2", "ritm_miou3",
                             "ritm_miou5", "ritm_miou10", "ritm_miou20")
    native_headline = "ritm_noc90"
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
            if k > 1 and iou(pred, g) >= p.target:
                return
            d2, errors = dice_per_slice(pred, g)
            candidates = g_fg.copy()
            if p.select_from == "all":
                candidates |= pred.any(axis=(1, 2)) & fm
            z = worst_slice(d2, errors, candidates)
            if z is None:
                return
            done = clicked.setdefault(z, np.zeros(g.shape[1:], dtype=bool))
            y, x, positive = ritm_click(pred[z], g[z], done)
            done[y, x] = True
            call("add_clicks", z, np.array([[y, x]]), np.array([int(positive)]))
            pred = propagate_in_frames(call, fm)
            yield RoundOutcome(
                k, pred, [Prompt("point", z, y, x, positive)], len(clicked), k, call.lap()
            )
