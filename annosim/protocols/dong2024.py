"""Dong et al. 2024 ("Segment anything model 2: an application to 2D and 3D medical images",
arXiv:2408.00756; mazurowski-lab/segment-anything-medical-evaluation, ``eval_sam2_3d.py`` and
``prompt_funcs.py``), as its code runs it (protocol-sources.md section 3).

Rules (truth restricted to the setting's frames; ``rng`` is the object's generator):

1. Frame (``frame``): ``median`` (source mode 2, default) = ``occupied[len // 2]``, the upper
   median of the occupied slices; ``first`` (mode 1) = the first occupied slice; ``largest``
   (mode 3) = the first slice of largest area.
2. Prompt on that frame, from the slice truth's largest 8-connected component (equal areas:
   the higher label id): ``point`` (mode 1, default) = one pixel drawn uniformly (``rng``) among
   those of maximal 5x5 chamfer depth (:mod:`annosim.protocols.dong_rules`); ``box`` (mode 3)
   = its tight inclusive box; ``mask`` (mode 5) = the slice truth.
3. Default: one forward pass from frame 0 over the whole volume
   (``propagate_pass(first frame)``); ``bidirectional=true``: a reverse pass from the prompt
   frame down to 0, then a fresh object state, the same prompt again, and a forward pass whose
   slices after the prompt frame are taken. One round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from annosim.models.base import SliceModel
from annosim.protocols.base import Prompt, Protocol, RoundOutcome, begin_object
from annosim.protocols.dong_rules import (
    deepest_candidates,
    largest_component_8,
    upper_median_slice,
)
from annosim.protocols.prompts import bounding_box, foreground_slices

PROMPT_KINDS = ("point", "box", "mask")
FRAME_MODES = ("median", "first", "largest")


@dataclass(frozen=True)
class Dong2024Params:
    """Parameters of ``dong2024`` (defaults: the source's frame_mode 2, prompt_mode 1).

    Attributes
    ----------
    prompt : str
        ``point`` (default), ``box`` or ``mask``.
    frame : str
        ``median`` (default), ``first`` or ``largest``.
    bidirectional : bool
        The source's ``--bidirectional`` flag (default False: forward from frame 0).
    """

    prompt: str = "point"
    frame: str = "median"
    bidirectional: bool = False

    def __post_init__(self) -> None:
        b = self.bidirectional
        if isinstance(b, str):
            if b.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"bidirectional must be true or false, got {b!r}")
            object.__setattr__(self, "bidirectional", b.lower() in ("true", "1"))
        if self.prompt not in PROMPT_KINDS:
            raise ValueError(f"prompt must be one of {PROMPT_KINDS}, got {self.prompt!r}")
        if self.frame not in FRAME_MODES:
            raise ValueError(f"frame must be one of {FRAME_MODES}, got {self.frame!r}")


def dong_frame(gt: np.ndarray, mode: str) -> int:
    """Prompt frame of a bool ``(Z, Y, X)`` truth for frame ``mode`` (rule 1)."""
    if mode == "median":
        return upper_median_slice(gt)
    fg = foreground_slices(gt)
    if fg.size == 0:
        raise ValueError("empty ground truth: no slice to prompt")
    if mode == "first":
        return int(fg[0])
    areas = gt.reshape(gt.shape[0], -1).sum(axis=1)
    return int(np.argmax(areas))


def dong_weights(fm: np.ndarray, z: int, bidirectional: bool) -> np.ndarray:
    """The source's per-frame weights (Z,) float: its global IoU list extended with itself
    counts every frame 2x, or 4x for frames 0..z and 2x after when bidirectional; 0 off the
    frame mask ``fm``.

    >>> dong_weights(np.ones(4, bool), 1, True).tolist()
    [4.0, 4.0, 2.0, 2.0]
    """
    w = np.where(fm, 2.0, 0.0)
    if bidirectional:
        w[: z + 1] *= 2.0
    return w


def dong_prompt(
    sl: np.ndarray, z: int, kind: str, rng: np.random.Generator
) -> tuple[str, tuple[Any, ...], Prompt]:
    """Model method, its arguments and the record for prompt ``kind`` on bool ``(Y, X)`` slice
    truth ``sl`` of frame ``z`` (rule 2)."""
    if kind == "mask":
        return "add_mask", (z, sl.copy()), Prompt("mask", z)
    comp = largest_component_8(sl)
    if kind == "box":
        box = bounding_box(comp)
        return "add_box", (z, box), Prompt("box", z, box=box)
    cand = deepest_candidates(comp)
    y, x = (int(v) for v in cand[int(rng.integers(cand.shape[0]))])
    return "add_clicks", (z, np.array([[y, x]]), np.array([1])), Prompt("point", z, y, x, True)


class Dong2024(Protocol):
    """One point, box or mask on one frame, forward from frame 0 or bidirectional."""

    name = "dong2024"
    native_metrics = ("dong_iou_weighted", "dong_iou")

    params_class = Dong2024Params
    params: Dong2024Params

    @property
    def prompt_kinds(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.params.prompt,)

    def run_object(
        self,
        model: SliceModel,
        gt: np.ndarray,
        frames: np.ndarray | None,
        rng: np.random.Generator,
    ) -> Iterator[RoundOutcome]:
        p = self.params
        call, fm, g = begin_object(model, gt, frames)
        z = dong_frame(g, p.frame)
        method, args, prompt = dong_prompt(g[z], z, p.prompt, rng)
        call(method, *args)
        first = int(np.flatnonzero(fm)[0])
        if not p.bidirectional:
            pred = np.asarray(call("propagate_pass", first), dtype=bool)
        else:
            rev = np.asarray(call("propagate_pass", z, reverse=True), dtype=bool)
            call("start_object", frames)
            call(method, *args)
            fwd = np.asarray(call("propagate_pass", z), dtype=bool)
            after = np.arange(g.shape[0]) > z
            pred = np.where(after[:, None, None], fwd, rev)
        pred &= fm[:, None, None]
        clicks = 1 if p.prompt == "point" else 0
        yield RoundOutcome(1, pred, [prompt], 1, clicks, call.lap(),
                           dong_weights(fm, z, p.bidirectional))


@dataclass(frozen=True)
class Dong2024Slice2DParams:
    """Parameters of ``dong2024-2d`` (``eval_sam2_2d.py``).

    Attributes
    ----------
    prompt : str
        ``point`` (default) or ``box``, from each slice's largest 8-connected component.
    """

    prompt: str = "point"

    def __post_init__(self) -> None:
        if self.prompt not in ("point", "box"):
            raise ValueError(f"prompt must be one of ('point', 'box'), got {self.prompt!r}")


class Dong2024Slice2D(Protocol):
    """Every slice holding truth predicted on its own with ``predict_slice``; slices without
    truth are skipped by the source and left empty here. One round, no propagation."""

    name = "dong2024-2d"
    native_metrics = ("dong_iou",)
    prompt_kinds = ("slice2d",)

    params_class = Dong2024Slice2DParams
    params: Dong2024Slice2DParams

    def run_object(
        self,
        model: SliceModel,
        gt: np.ndarray,
        frames: np.ndarray | None,
        rng: np.random.Generator,
    ) -> Iterator[RoundOutcome]:
        call, fm, g = begin_object(model, gt, frames)
        pred = np.zeros(g.shape, dtype=bool)
        prompts: list[Prompt] = []
        for z in (int(v) for v in foreground_slices(g)):
            _, args, prompt = dong_prompt(g[z], z, self.params.prompt, rng)
            if prompt.kind == "box":
                pred[z] = call("predict_slice", z, box=args[1])
            else:
                pred[z] = call("predict_slice", z, points=args[1], labels=args[2])
            prompts.append(prompt)
        clicks = len(prompts) if self.params.prompt == "point" else 0
        yield RoundOutcome(1, pred, prompts, len(prompts), clicks, call.lap())
