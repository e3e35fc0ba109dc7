"""Zhu et al. 2024 (Medical SAM 2, arXiv:2408.00874; MedicineToken/Medical-SAM2,
``func_3d/function.py``, ``func_3d/dataset/btcv.py``), 3D validation as its code runs it
(protocol-sources.md section 4).

Rules (truth restricted to the setting's frames; ``rng`` is the object's generator):

1. Slab: the frames from the first to the last slice holding truth; test mode keeps only its
   first ``floor(n / fraction)`` frames (``fraction`` 4, at least one frame: the source would
   have an empty video), the evaluated frames (:attr:`RoundOutcome.scored_frames`).
2. Prompt frames: evaluated frames 0, ``prompt_freq``, 2 ``prompt_freq``, ... (default 2).
   Where the object is present: its tight inclusive box (``box``, default) taken as the source
   takes it, on the mask resized to ``grid`` x ``grid`` (1024, the source's ``image_size``) by
   Pillow's nearest neighbour (D L86-98, U L107-137), mapped back to slice pixels (so a
   512-pixel slice's box ends half a pixel beyond the last truth pixel; ``grid=0``: the tight
   box on the slice), or one truth pixel drawn uniformly with ``rng`` (``point``; raster
   order, ``rng.integers``); where absent: an all-zero mask prompt (``add_mask``, F L261-267).
3. One forward pass from the first evaluated frame; the prediction is kept on the evaluated
   frames only. One round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from annosim.models.base import SliceModel
from annosim.protocols.base import Prompt, Protocol, RoundOutcome, begin_object
from annosim.protocols.prompts import bounding_box, foreground_slices, grid_bounding_box

PROMPT_KINDS = ("box", "point")


@dataclass(frozen=True)
class Zhu2024Params:
    """Parameters of ``zhu2024`` (defaults: the source's ``prompt='bbox'``, ``prompt_freq=2``,
    ``video_length = int(num_frame / 4)``).

    Attributes
    ----------
    prompt : str
        ``box`` (default) or ``point`` (one random truth pixel).
    prompt_freq : int
        Every ``prompt_freq``-th evaluated frame gets a prompt (2).
    fraction : int
        The evaluated frames are the first ``floor(n / fraction)`` of the truth's slab (4).
    grid : int
        Side of the grid the source resizes masks to before taking boxes (its ``image_size``
        1024); 0: the box on the slice's own pixels.
    """

    prompt: str = "box"
    prompt_freq: int = 2
    fraction: int = 4
    grid: int = 1024

    def __post_init__(self) -> None:
        for name in ("prompt_freq", "fraction"):
            v = int(getattr(self, name))
            if v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
            object.__setattr__(self, name, v)
        if int(self.grid) < 0:
            raise ValueError(f"grid must be >= 0 (0: slice pixels), got {self.grid}")
        object.__setattr__(self, "grid", int(self.grid))
        if self.prompt not in PROMPT_KINDS:
            raise ValueError(f"prompt must be one of {PROMPT_KINDS}, got {self.prompt!r}")


def zhu_box(mask2d: np.ndarray, grid: int) -> tuple[float, float, float, float]:
    """The source's box of a non-empty bool ``(H, W)`` slice mask, ``(y0, x0, y1, x1)`` in slice
    pixels: the tight box of the mask resized to ``grid`` x ``grid`` by Pillow's nearest
    neighbour, times ``H / grid`` and ``W / grid`` (rule 2). ``grid`` 0, or a mask that the
    resize loses (the source's box would be NaN): the tight box on the slice.

    >>> m = np.zeros((512, 512), bool); m[10:20, 30:40] = True
    >>> zhu_box(m, 1024)
    (10.0, 30.0, 19.5, 39.5)
    """
    m = np.asarray(mask2d, dtype=bool)
    if grid:
        try:
            r0, c0, r1, c1 = grid_bounding_box(m, grid, centre=True)
        except ValueError:
            pass
        else:
            h, w = m.shape
            return (r0 * h / grid, c0 * w / grid, r1 * h / grid, c1 * w / grid)
    return tuple(float(v) for v in bounding_box(m))  # type: ignore[return-value]


def zhu_frames(gt: np.ndarray, fm: np.ndarray, fraction: int, prompt_freq: int) -> tuple[np.ndarray, np.ndarray]:
    """Evaluated frames and prompt frames (int arrays, increasing) of a bool ``(Z, Y, X)``
    truth with frame mask ``fm`` (rules 1-2)."""
    fg = foreground_slices(gt)
    if fg.size == 0:
        raise ValueError("empty ground truth: no slice to prompt")
    slab = np.flatnonzero(fm)
    slab = slab[(slab >= fg[0]) & (slab <= fg[-1])]
    evaluated = slab[: max(1, slab.size // fraction)]
    return evaluated, evaluated[::prompt_freq]


class Zhu2024(Protocol):
    """Boxes (or random points) on every other frame of the first quarter of the slab."""

    name = "zhu2024"
    native_metrics = ("zhu_dice", "zhu_iou")

    params_class = Zhu2024Params
    params: Zhu2024Params

    @property
    def prompt_kinds(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.params.prompt, "mask")

    def run_object(
        self,
        model: SliceModel,
        gt: np.ndarray,
        frames: np.ndarray | None,
        rng: np.random.Generator,
    ) -> Iterator[RoundOutcome]:
        p = self.params
        call, fm, g = begin_object(model, gt, frames)
        evaluated, prompted = zhu_frames(g, fm, p.fraction, p.prompt_freq)
        prompts: list[Prompt] = []
        clicks = 0
        for z in (int(v) for v in prompted):
            if not g[z].any():
                call("add_mask", z, np.zeros(g.shape[1:], dtype=bool))
                prompts.append(Prompt("mask", z))
            elif p.prompt == "box":
                box = zhu_box(g[z], p.grid)
                call("add_box", z, box)
                prompts.append(Prompt("box", z, box=bounding_box(g[z])))
            else:
                coords = np.argwhere(g[z])
                y, x = (int(v) for v in coords[int(rng.integers(coords.shape[0]))])
                call("add_clicks", z, np.array([[y, x]]), np.array([1]))
                prompts.append(Prompt("point", z, y, x, True))
                clicks += 1
        scored = np.zeros(g.shape[0], dtype=bool)
        scored[evaluated] = True
        pred = np.asarray(call("propagate_pass", int(evaluated[0])), dtype=bool)
        pred &= scored[:, None, None]
        yield RoundOutcome(1, pred, prompts, len(prompted), clicks, call.lap(), scored)
