"""The He et al. 2024 protocol ("A Short Review and Evaluation of SAM2's Performance in 3D CT
Image Segmentation", arXiv 2408.11210) and the ``he2024-vista`` variant that reproduces the
reference script (Project-MONAI/VISTA, ``val_multigpu_sam2_point_iterative.py``).

Rules (DESIGN section 5): a first positive click at the centre of the object's largest
component; up to 5 clicks on that slice, each on the larger eroded error region; propagation
through the volume (round 1); then up to 7 rounds that each put up to 3 clicks on the slice with
the lowest 2D Dice and propagate again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Iterator

import numpy as np

from annosim.metrics import dice_per_slice
from annosim.params import coerce_overrides
from annosim.models.base import SliceModel
from annosim.protocols.base import (
    Prompt,
    Protocol,
    RoundOutcome,
    begin_object,
    propagate_in_frames,
)
from annosim.protocols.clicks import (
    CENTER_RULES,
    eroded_errors,
    first_click,
    region_center,
    worst_slice,
)


@dataclass(frozen=True)
class He2024Params:
    """Parameters of the protocol; defaults are the paper's.

    Attributes
    ----------
    rounds : int
        Maximum number of propagations (1 initial + 7 corrective rounds = 8).
    initial_clicks : int
        Clicks computed on the starting slice, the first click included (5).
    initial_clicks_sent : int or None
        How many of those reach the model (``None``: all; the reference sends 4).
    clicks_per_round : int
        Clicks per corrective round, taken in the order: positive at the FN centre, negative at
        the FP centre, one random pixel of the larger region (3).
    erosion : int
        Side of the square that erodes error regions before a click (3; 1 = no erosion).
    select_from : str
        Candidate slices for the worst-slice choice: ``"gt"`` (frames where the truth has
        foreground) or ``"all"`` (also frames where only the prediction has foreground).
    center_rule : str
        ``"centroid"`` (paper) or ``"scalar-mean"`` (reference code), see
        :func:`annosim.protocols.clicks.region_center`.
    reset_initial : bool
        Reset the object before each prediction on the starting slice and resend all clicks at
        once (reference code) instead of adding them one by one.
    replace_in_rounds : bool
        Clicks of a corrective round replace earlier clicks on that slice (reference code:
        SAM2's ``clear_old_points=True``) instead of accumulating.
    """

    rounds: int = 8
    initial_clicks: int = 5
    initial_clicks_sent: int | None = None
    clicks_per_round: int = 3
    erosion: int = 3
    select_from: str = "gt"
    center_rule: str = "centroid"
    reset_initial: bool = False
    replace_in_rounds: bool = False

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.initial_clicks < 1 or self.clicks_per_round < 1:
            raise ValueError("rounds, initial_clicks and clicks_per_round must be >= 1")
        if self.select_from not in ("gt", "all"):
            raise ValueError(f"select_from must be 'gt' or 'all', got {self.select_from!r}")
        if self.center_rule not in CENTER_RULES:
            raise ValueError(f"center_rule must be one of {CENTER_RULES}")


#: The reference script's behaviour (DESIGN section 5, variant he2024-vista).
VISTA_PARAMS = He2024Params(
    initial_clicks_sent=4,
    center_rule="scalar-mean",
    reset_initial=True,
    replace_in_rounds=True,
)


class He2024(Protocol):
    """He et al. 2024 iterative click protocol (see module docstring)."""

    name = "he2024"
    params_class = He2024Params
    params: He2024Params

    def __init__(self, params: He2024Params | None = None, *, variant: str = "paper") -> None:
        super().__init__(params)
        self.variant = variant
        if variant == "vista":
            self.name = "he2024-vista"
            # The reference fed SAM2 JPEG frames of the array as stored on disk.
            self.orientation = "as-stored"
            self.model_options = {"frame_codec": "jpeg"}
        elif variant != "paper":
            raise ValueError(f"unknown he2024 variant {variant!r}")

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any], variant: str = "paper") -> "He2024":
        """The paper's defaults (``variant="paper"``) or the reference script's (``"vista"``)
        with ``overrides`` applied."""
        base = VISTA_PARAMS if variant == "vista" else He2024Params()
        return cls(replace(base, **coerce_overrides(He2024Params, overrides)), variant=variant)

    @property
    def max_rounds(self) -> int:
        return self.params.rounds

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "variant": self.variant, "max_rounds": self.max_rounds,
                "params": asdict(self.params)}

    def with_params(self, **overrides: Any) -> "He2024":
        """A copy with some parameters replaced."""
        return He2024(replace(self.params, **overrides), variant=self.variant)

    # ------------------------------------------------------------------------------------
    def run_object(
        self,
        model: SliceModel,
        gt: np.ndarray,
        frames: np.ndarray | None,
        rng: np.random.Generator,
    ) -> Iterator[RoundOutcome]:
        p = self.params
        gt = np.asarray(gt, dtype=bool)
        call, fm, g = begin_object(model, gt, frames)

        # Rule 1: first click at the centre of the largest component.
        z0, y0, x0 = first_click(g)
        points: list[tuple[int, int]] = [(y0, x0)]
        labels: list[int] = [1]
        prompts = [Prompt("point", z0, y0, x0, True)]
        slice_pred = call("add_clicks", z0, np.array(points), np.array(labels))
        n_sent = 1
        limit_sent = p.initial_clicks if p.initial_clicks_sent is None else p.initial_clicks_sent

        # Rule 2: up to `initial_clicks` clicks on the starting slice.
        g0 = gt[z0]
        for _ in range(p.initial_clicks - 1):
            fn, fp = eroded_errors(np.asarray(slice_pred, dtype=bool), g0, p.erosion)
            nfn, nfp = int(fn.sum()), int(fp.sum())
            if nfn > nfp:
                (cy, cx), positive = region_center(fn, p.center_rule), 1  # type: ignore[misc]
            elif nfp > 0:
                (cy, cx), positive = region_center(fp, p.center_rule), 0  # type: ignore[misc]
            else:
                break
            if n_sent >= limit_sent:
                break  # computed, never reaches the model (reference: the 5th click)
            points.append((cy, cx))
            labels.append(positive)
            prompts.append(Prompt("point", z0, cy, cx, bool(positive)))
            if p.reset_initial:
                call("start_object", frames)
                slice_pred = call("add_clicks", z0, np.array(points), np.array(labels))
            else:
                slice_pred = call("add_clicks", z0, np.array([(cy, cx)]), np.array([positive]))
            n_sent += 1

        # Rule 3: propagate -> round 1.
        pred = propagate_in_frames(call, fm)
        annotated = {z0}
        clicks = n_sent
        yield RoundOutcome(1, pred, prompts, len(annotated), clicks, call.lap())

        # Rule 4: corrective rounds on the worst slice.
        gt_fg = gt.any(axis=(1, 2)) & fm
        for rnd in range(2, p.rounds + 1):
            dice, errors = dice_per_slice(pred, gt)
            candidates = gt_fg.copy()
            if p.select_from == "all":
                candidates |= pred.any(axis=(1, 2)) & fm
            zs = worst_slice(dice, errors, candidates)
            if zs is None:
                return
            new = self._round_clicks(pred[zs], gt[zs], rng)
            if not new:
                return
            pts = np.array([(y, x) for y, x, _ in new])
            lbs = np.array([lab for _, _, lab in new])
            call("add_clicks", zs, pts, lbs, replace=p.replace_in_rounds)
            pred = propagate_in_frames(call, fm)
            annotated.add(zs)
            clicks += len(new)
            round_prompts = [Prompt("point", zs, y, x, bool(lab)) for y, x, lab in new]
            yield RoundOutcome(rnd, pred, round_prompts, len(annotated), clicks, call.lap())

    # ------------------------------------------------------------------------------------
    def _round_clicks(
        self, pred2d: np.ndarray, gt2d: np.ndarray, rng: np.random.Generator
    ) -> list[tuple[int, int, int]]:
        """Up to 3 clicks ``(y, x, label)`` on the chosen slice (rule 4)."""
        p = self.params
        fn, fp = eroded_errors(pred2d, gt2d, p.erosion)
        out: list[tuple[int, int, int]] = []
        c = region_center(fn, p.center_rule)
        if c is not None:
            out.append((c[0], c[1], 1))
        c = region_center(fp, p.center_rule)
        if c is not None:
            out.append((c[0], c[1], 0))
        larger, lab = (fn, 1) if int(fn.sum()) > int(fp.sum()) else (fp, 0)
        coords = np.argwhere(larger)
        if coords.shape[0]:
            y, x = coords[int(rng.integers(coords.shape[0]))]
            out.append((int(y), int(x), lab))
        return out[: p.clicks_per_round]

