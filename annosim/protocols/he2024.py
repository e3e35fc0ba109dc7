"""The He et al. 2024 protocol ("A Short Review and Evaluation of SAM2's Performance in 3D CT
Image Segmentation", arXiv 2408.11210) and the ``he2024-vista`` variant that reproduces the
reference script (Project-MONAI/VISTA, ``val_multigpu_sam2_point_iterative.py``).

Rules (the paper's text read literally): a first positive click at the
voxel of the object nearest its centroid; up to 5 clicks in all on that slice, each at the
centre of the larger eroded error region (a tie goes positive); propagation through the volume
(round 1); then up to 7 rounds that each put up to 3 clicks on the slice with the lowest 2D Dice
among the frames where the truth or the prediction has foreground, and propagate again.
``he2024-vista`` changes the rules the reference script reads differently (see
:data:`VISTA_PARAMS` and :mod:`annosim.protocols.vista_rules`).
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
from annosim.protocols.vista_rules import (
    reference_center,
    reference_first_click,
    check_torch_installed,
    reference_slice_scores,
    require_torch,
)


#: Values of the rule parameters (README "he2024 and he2024-vista" lists which rule each changes).
FIRST_CLICKS = ("centroid", "largest-component", "reference")
START_TIES = ("positive", "negative")
SELECT_FROM = ("all", "gt")
HE_CENTER_RULES = CENTER_RULES + ("reference",)
SLICE_SCORES = ("exact", "reference")


@dataclass(frozen=True)
class He2024Params:
    """Parameters of the protocol; defaults are the paper's text (README, Protocols).

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
    first_click : str
        ``"centroid"`` (paper: the voxel of the whole foreground nearest its centroid),
        ``"largest-component"`` (the same on the largest 26-connected component) or
        ``"reference"`` (the reference's ``get_points_from_label`` computation, on the
        setting's frames stacked: :func:`annosim.protocols.vista_rules.reference_first_click`).
    start_tie : str
        Starting slice, equal eroded FN and FP: ``"positive"`` (paper: a negative click only
        when FP is larger) or ``"negative"`` (reference: a positive click only when FN is larger).
    select_from : str
        Candidate slices for the worst slice: ``"all"`` (paper: frames where the truth or the
        prediction has foreground) or ``"gt"`` (reference: frames where the truth has it).
    center_rule : str
        ``"centroid"`` (paper), ``"scalar-mean"`` (the reference's rule with exact arithmetic
        and lowest-index ties, see :func:`annosim.protocols.clicks.region_center`) or
        ``"reference"`` (the reference's computation, float32 and ``torch.sort``).
    slice_score : str
        Worst-slice score: ``"exact"`` (float64 Dice; ties: most ``|FN| + |FP|``, then lowest
        slice) or ``"reference"`` (float32 Dice; ties: most ``255·|FN| + |FP|``, the uint8
        wrap-around of the reference, then lowest slice).
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
    first_click: str = "centroid"
    start_tie: str = "positive"
    select_from: str = "all"
    center_rule: str = "centroid"
    slice_score: str = "exact"
    reset_initial: bool = False
    replace_in_rounds: bool = False

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.initial_clicks < 1 or self.clicks_per_round < 1:
            raise ValueError("rounds, initial_clicks and clicks_per_round must be >= 1")
        for name, allowed in (("first_click", FIRST_CLICKS), ("start_tie", START_TIES),
                              ("select_from", SELECT_FROM), ("center_rule", HE_CENTER_RULES),
                              ("slice_score", SLICE_SCORES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")

    @property
    def uses_torch(self) -> bool:
        """Whether a rule is computed with the reference's torch arithmetic."""
        return "reference" in (self.first_click, self.center_rule, self.slice_score)


#: The reference script's behaviour (README, "he2024-vista").
VISTA_PARAMS = He2024Params(
    initial_clicks_sent=4,
    first_click="reference",
    start_tie="negative",
    select_from="gt",
    center_rule="reference",
    slice_score="reference",
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
        if self.params.uses_torch:
            check_torch_installed()
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
        if p.uses_torch:
            require_torch()
        gt = np.asarray(gt, dtype=bool)
        call, fm, g = begin_object(model, gt, frames)

        # Rule 1: first click.
        z0, y0, x0 = self._first_click(g, frames)
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
            click = self._start_click(fn, fp)
            if click is None:
                break
            if n_sent >= limit_sent:
                break  # computed, never reaches the model (reference: the 5th click)
            cy, cx, positive = click
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
            if p.slice_score == "reference":
                dice, errors = reference_slice_scores(pred, gt)
            else:
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
    def _first_click(self, g: np.ndarray, frames: np.ndarray | None) -> tuple[int, int, int]:
        """Rule 1 on the truth ``g`` (bool (Z, Y, X), restricted to the frames)."""
        rule = self.params.first_click
        if rule == "reference":
            if frames is None:
                return reference_first_click(g)
            z, y, x = reference_first_click(g[frames])  # the reference's stacked video
            return int(frames[z]), y, x
        return first_click(g, "whole" if rule == "centroid" else "largest")

    def _center(self, region: np.ndarray) -> tuple[int, int] | None:
        """center(R) under the configured rule; ``None`` for an empty region."""
        if self.params.center_rule == "reference":
            return reference_center(region)
        return region_center(region, self.params.center_rule)  # type: ignore[return-value]

    def _start_click(self, fn: np.ndarray, fp: np.ndarray) -> tuple[int, int, int] | None:
        """Rule 2: the next click ``(y, x, label)`` on the starting slice, or ``None``."""
        nfn, nfp = int(fn.sum()), int(fp.sum())
        if self.params.start_tie == "positive":  # paper: negative only if FP' is larger
            region, label = (fp, 0) if nfp > nfn else (fn, 1)
        else:  # reference: positive only if FN' is larger
            region, label = (fn, 1) if nfn > nfp else (fp, 0)
        c = self._center(region)
        return None if c is None else (c[0], c[1], label)

    def _round_clicks(
        self, pred2d: np.ndarray, gt2d: np.ndarray, rng: np.random.Generator
    ) -> list[tuple[int, int, int]]:
        """Up to 3 clicks ``(y, x, label)`` on the chosen slice (rule 4)."""
        p = self.params
        fn, fp = eroded_errors(pred2d, gt2d, p.erosion)
        out: list[tuple[int, int, int]] = []
        c = self._center(fn)
        if c is not None:
            out.append((c[0], c[1], 1))
        c = self._center(fp)
        if c is not None:
            out.append((c[0], c[1], 0))
        larger, lab = (fn, 1) if int(fn.sum()) > int(fp.sum()) else (fp, 0)
        coords = np.argwhere(larger)
        if coords.shape[0]:
            y, x = coords[int(rng.integers(coords.shape[0]))]
            out.append((int(y), int(x), lab))
        return out[: p.clicks_per_round]
