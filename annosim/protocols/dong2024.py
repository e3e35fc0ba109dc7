"""Dong et al. 2024 ("Segment anything model 2: an application to 2D and 3D medical images",
arXiv:2408.00756; mazurowski-lab/segment-anything2-medical-evaluation, ``eval_sam2_3d.py`` and
``prompt_funcs.py``), as its code runs it (protocol-sources.md section 3).

Rules (truth restricted to the setting's frames; ``rng`` is the object's generator):

1. Frames (``frame``, P L13-69): ``median`` (source frame mode 2, default) =
   ``occupied[len // 2]``, the upper median of the occupied slices; ``first`` (mode 1) = the
   first occupied slice; ``largest`` (mode 3) = the first slice of largest area; ``spread``
   (mode 4) = ``occupied[::step]`` with ``step = max(1, n // 4)``, then its elements 1..3 when
   it has more than 4, else its first 3 (fewer when fewer slices are occupied).
2. Prompt on each frame, from the slice truth's 8-connected components sorted largest first
   (equal areas: the higher label id first; P L137-304): ``point`` (prompt mode 1, default) =
   one pixel drawn uniformly (``rng``) among those of maximal 5x5 chamfer depth
   (:mod:`annosim.protocols.dong_rules`) on the largest component; ``points`` (mode 2) = one
   such pixel on each of the up to 3 largest components, sent together; ``box`` (mode 3) = the
   largest component's tight inclusive box; ``mask`` (mode 5) = the slice truth. Mode 4 (up
   to 3 boxes) has no branch in ``eval_sam2_3d.py`` (E3 L118-126): ``dong2024-2d`` only.
3. Default: one forward pass from frame 0 over the whole volume
   (``propagate_pass(first frame)``, E3 L157); ``bidirectional=true`` (E3 L134-155): a reverse
   pass from the prompt frame down to 0 (with ``spread``: from its second frame), then a fresh
   object state, every prompt again, and a forward pass whose slices after the last prompt
   frame are taken; the slices in between are never predicted nor scored by the source (empty
   here, weight 0). One round.
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
    largest_components_8,
    upper_median_slice,
)
from annosim.protocols.prompts import bounding_box, foreground_slices

PROMPT_KINDS = ("point", "points", "box", "mask")
PROMPT_KINDS_2D = ("point", "points", "box", "boxes")
FRAME_MODES = ("median", "first", "largest", "spread")
#: What each prompt kind gives the model.
_PROMPT_METHOD = {"point": "point", "points": "point", "box": "box", "boxes": "box", "mask": "mask"}


@dataclass(frozen=True)
class Dong2024Params:
    """Parameters of ``dong2024`` (defaults: the source's frame_mode 2, prompt_mode 1).

    Attributes
    ----------
    prompt : str
        ``point`` (default, prompt mode 1), ``points`` (mode 2), ``box`` (mode 3) or ``mask``
        (mode 5).
    frame : str
        ``median`` (default, frame mode 2), ``first`` (1), ``largest`` (3) or ``spread`` (4).
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
        if self.prompt == "boxes":
            raise ValueError("prompt=boxes (the source's prompt mode 4) has no branch in eval_sam2_3d.py; "
                             "it is offered by dong2024-2d")
        if self.prompt not in PROMPT_KINDS:
            raise ValueError(f"prompt must be one of {PROMPT_KINDS}, got {self.prompt!r}")
        if self.frame not in FRAME_MODES:
            raise ValueError(f"frame must be one of {FRAME_MODES}, got {self.frame!r}")


def dong_frame(gt: np.ndarray, mode: str) -> int:
    """Prompt frame of a bool ``(Z, Y, X)`` truth for a single-frame ``mode`` (rule 1)."""
    if mode == "median":
        return upper_median_slice(gt)
    fg = foreground_slices(gt)
    if fg.size == 0:
        raise ValueError("empty ground truth: no slice to prompt")
    if mode == "first":
        return int(fg[0])
    if mode == "largest":
        areas = gt.reshape(gt.shape[0], -1).sum(axis=1)
        return int(np.argmax(areas))
    raise ValueError(f"frame mode {mode!r} gives several frames: use dong_frames")


def spread_frames(occupied: np.ndarray, count: int = 3) -> list[int]:
    """P L57-65 (frame mode 4, ``frame_num`` = 3): ``occupied[::max(1, n // (count + 1))]``, then
    its elements ``1..count`` when it is longer than ``count + 1``, else its first ``count``.

    >>> [spread_frames(np.arange(n)) for n in (2, 8, 9, 13)]
    [[0, 1], [0, 2, 4], [2, 4, 6], [3, 6, 9]]
    """
    occ = [int(v) for v in occupied]
    picked = occ[::max(1, len(occ) // (count + 1))]
    return picked[1:count + 1] if len(picked) > count + 1 else picked[:count]


def dong_frames(gt: np.ndarray, mode: str) -> list[int]:
    """Prompt frames of a bool ``(Z, Y, X)`` truth for frame ``mode`` (rule 1), increasing."""
    if mode == "spread":
        fg = foreground_slices(gt)
        if fg.size == 0:
            raise ValueError("empty ground truth: no slice to prompt")
        return spread_frames(fg)
    return [dong_frame(gt, mode)]


def dong_weights(fm: np.ndarray, z: int, bidirectional: bool, last: int | None = None) -> np.ndarray:
    """The source's per-frame weights (Z,) float: its global IoU list extended with itself
    counts every frame 2x, or, when bidirectional, 4x for frames 0..z (the reverse pass), 0 for
    frames z+1..``last`` (never yielded: the forward pass starts after the last prompt frame
    ``last``, default z) and 2x after; 0 off the frame mask ``fm``.

    >>> dong_weights(np.ones(4, bool), 1, True).tolist(), dong_weights(np.ones(5, bool), 1, True, 3).tolist()
    ([4.0, 4.0, 2.0, 2.0], [4.0, 4.0, 0.0, 0.0, 2.0])
    """
    w = np.where(fm, 2.0, 0.0)
    if bidirectional:
        w[: z + 1] *= 2.0
        w[z + 1: (z if last is None else last) + 1] = 0.0
    return w


def _deepest_pixel(comp: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """One pixel drawn uniformly among the chamfer-deepest of a component (P L192-207)."""
    cand = deepest_candidates(comp)
    y, x = (int(v) for v in cand[int(rng.integers(cand.shape[0]))])
    return y, x


def dong_prompt(
    sl: np.ndarray, z: int, kind: str, rng: np.random.Generator
) -> tuple[str, tuple[Any, ...], list[Prompt]]:
    """Model method, its arguments and the records for prompt ``kind`` on bool ``(Y, X)`` slice
    truth ``sl`` of frame ``z`` (rule 2). ``boxes`` gives ``add_box`` with a list of boxes (one
    per component, largest first: the source's padding repeats the last one)."""
    if kind == "mask":
        return "add_mask", (z, sl.copy()), [Prompt("mask", z)]
    if kind in ("box", "boxes"):
        boxes = [bounding_box(c) for c in largest_components_8(sl, 1 if kind == "box" else 3)]
        return "add_box", (z, boxes[0] if kind == "box" else boxes), [Prompt("box", z, box=b) for b in boxes]
    comps = largest_components_8(sl, 1 if kind == "point" else 3)
    pts = [_deepest_pixel(c, rng) for c in comps]
    return ("add_clicks", (z, np.array(pts), np.ones(len(pts), dtype=np.int64)),
            [Prompt("point", z, y, x, True) for y, x in pts])


class Dong2024(Protocol):
    """One point, box or mask on one frame, forward from frame 0 or bidirectional."""

    name = "dong2024"
    native_metrics = ("dong_iou_weighted", "dong_iou")

    params_class = Dong2024Params
    params: Dong2024Params

    @property
    def prompt_kinds(self) -> tuple[str, ...]:  # type: ignore[override]
        return (_PROMPT_METHOD[self.params.prompt],)

    def run_object(
        self,
        model: SliceModel,
        gt: np.ndarray,
        frames: np.ndarray | None,
        rng: np.random.Generator,
    ) -> Iterator[RoundOutcome]:
        p = self.params
        call, fm, g = begin_object(model, gt, frames)
        zs = dong_frames(g, p.frame)
        given = [dong_prompt(g[z], z, p.prompt, rng) for z in zs]
        prompts = [r for _, _, recs in given for r in recs]

        def prompt_all() -> None:
            for method, args, _ in given:
                call(method, *args)

        prompt_all()
        first = int(np.flatnonzero(fm)[0])
        z_rev = zs[1] if p.frame == "spread" and len(zs) > 1 else zs[-1]  # E3 L136-138
        if not p.bidirectional:
            pred = np.asarray(call("propagate_pass", first), dtype=bool)
        else:
            rev = np.asarray(call("propagate_pass", z_rev, reverse=True), dtype=bool)
            call("start_object", frames)
            prompt_all()
            fwd = np.asarray(call("propagate_pass", zs[-1]), dtype=bool)
            z = np.arange(g.shape[0])[:, None, None]
            pred = np.where(z > zs[-1], fwd, np.where(z <= z_rev, rev, False))
        pred &= fm[:, None, None]
        clicks = sum(r.kind == "point" for r in prompts)
        yield RoundOutcome(1, pred, prompts, len(zs), clicks, call.lap(),
                           dong_weights(fm, z_rev, p.bidirectional, zs[-1]))


@dataclass(frozen=True)
class Dong2024Slice2DParams:
    """Parameters of ``dong2024-2d`` (``eval_sam2_2d.py``).

    Attributes
    ----------
    prompt : str
        ``point`` (default, mode 1) or ``box`` (mode 3) from each slice's largest 8-connected
        component, ``points`` (mode 2) or ``boxes`` (mode 4) from its up to 3 largest (the
        per-box predictions OR-ed, E2 L150-160).
    """

    prompt: str = "point"

    def __post_init__(self) -> None:
        if self.prompt not in PROMPT_KINDS_2D:
            raise ValueError(f"prompt must be one of {PROMPT_KINDS_2D}, got {self.prompt!r}")


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
        zs = [int(v) for v in foreground_slices(g)]
        for z in zs:
            _, args, recs = dong_prompt(g[z], z, self.params.prompt, rng)
            if recs[0].kind == "box":
                for b in (args[1] if self.params.prompt == "boxes" else [args[1]]):
                    pred[z] |= np.asarray(call("predict_slice", z, box=b), dtype=bool)
            else:
                pred[z] = call("predict_slice", z, points=args[1], labels=args[2])
            prompts.extend(recs)
        clicks = sum(r.kind == "point" for r in prompts)
        yield RoundOutcome(1, pred, prompts, len(zs), clicks, call.lap())
