"""Ma et al. 2024's FLARE22 protocol as its code runs it: slice-wise box propagation
(bowang-lab/MedSAM branch MedSAM2 @6abb0ad, ``infer_sam2_flare22.py`` = C;
``protocol-sources.md`` section 1b). A different protocol from ``ma2024-box``.

Rules, per object (truth restricted to the setting's frames):

- **Slice boxes** (C L128-139, L260-263): on every slice with truth, the tight box grown by
  ``margin`` = 5 px each side, clipped to ``[0, X]`` and ``[0, Y]`` (the source clips to the
  width, not the last column).
- **Seed box** (C L265-269): the box of largest area ``(x1 - x0) * (y1 - y0)``, first slice on
  ties.
- **Start slice** (C L271): ``z_mid = int((z_max - z_min) / 2 + z_min)``, the lower middle,
  which gets the seed box although the seed came from another slice.
- **Up** (C L273-297): ``z_mid .. z_max``, each slice predicted on its own (one-shot 2D,
  ``predict_slice``); above ``z_mid`` the box is that of the prediction of the slice below, made
  on the model's input grid (``grid`` = 1024: the mask resized nearest to 1024 x 1024 as
  ``cv2.INTER_NEAREST`` does, grown by ``margin`` there, clipped to ``[0, 1024]``) and mapped
  back to slice pixels; an empty prediction below gives the seed box again.
- **Down** (C L300-321): ``z_mid - 1 .. z_min`` the same way from the slice above.
- Nothing is predicted outside ``z_min .. z_max``; there is no other stop rule. One round; every
  slice of the extent counts as annotated (each gets a box).
- In ``fg-only`` the walk visits only the setting's frames (a slice without truth inside the
  extent is skipped; the next one takes the box of the last visited slice), and a start slice
  outside the frames moves to the first frame above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from annosim.models.base import SliceModel
from annosim.protocols.base import ModelTimer, Prompt, Protocol, RoundOutcome, frame_mask
from annosim.protocols.prompts import foreground_slices, grid_bounding_box

#: A box as the model gets it: ``(y0, x0, y1, x1)`` in slice pixels (floats on the 1024 grid).
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class MaFlare22Params:
    """Parameters of ``ma2024-flare22`` (defaults: the source's).

    Attributes
    ----------
    margin : int
        Pixels added to each side of every box (the source's ``bbox_shift`` = 5).
    grid : int
        Side of the square grid on which boxes of predictions are taken (1024: SAM2's input, as
        the source; 0: the slice's own pixels).
    """

    margin: int = 5
    grid: int = 1024

    def __post_init__(self) -> None:
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")
        if self.grid < 0:
            raise ValueError(f"grid must be >= 0 (0: slice pixels), got {self.grid}")


def margin_box(mask2d: np.ndarray, margin: int) -> tuple[int, int, int, int]:
    """C ``get_bbox``: tight box ``(y0, x0, y1, x1)`` of a non-empty bool ``(H, W)`` mask grown
    by ``margin``, clipped to ``[0, H]`` and ``[0, W]``.

    >>> m = np.zeros((8, 10), bool); m[1, 2:9] = True
    >>> margin_box(m, 5)
    (0, 0, 6, 10)
    """
    m = np.asarray(mask2d, dtype=bool)
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        raise ValueError("empty mask: no bounding box")
    h, w = m.shape
    return (max(0, int(rows[0]) - margin), max(0, int(cols[0]) - margin),
            min(h, int(rows[-1]) + margin), min(w, int(cols[-1]) + margin))


def seed_box(g: np.ndarray, margin: int) -> tuple[int, tuple[int, int, int, int]]:
    """``(z, box)``: the slice of bool ``(Z, Y, X)`` truth ``g`` whose margin box has the largest
    area (first on ties; C L265-269) and that box."""
    zs = foreground_slices(g)
    if zs.size == 0:
        raise ValueError("empty ground truth: no seed box")
    boxes = [margin_box(g[z], margin) for z in zs]
    areas = [(x1 - x0) * (y1 - y0) for y0, x0, y1, x1 in boxes]
    i = int(np.argmax(areas))
    return int(zs[i]), boxes[i]


def start_slice(g: np.ndarray) -> int:
    """C L271: ``int((z_max - z_min) / 2 + z_min)`` of bool ``(Z, Y, X)`` truth (lower middle).

    >>> g = np.zeros((9, 1, 1), bool); g[2:6] = True   # slices 2..5
    >>> start_slice(g)
    3
    """
    zs = foreground_slices(g)
    if zs.size == 0:
        raise ValueError("empty ground truth: no start slice")
    return int((int(zs[-1]) - int(zs[0])) / 2 + int(zs[0]))


def grid_box(mask2d: np.ndarray, margin: int, grid: int) -> Box:
    """The box of a non-empty bool ``(H, W)`` prediction as C L290-293 takes it: the mask resized
    nearest to ``grid`` x ``grid``, its margin box there (clipped to ``[0, grid]``), mapped back to
    slice pixels (``* H / grid``, ``* W / grid``); ``grid`` 0: :func:`margin_box` on the slice.

    >>> m = np.zeros((512, 512), bool); m[100:201, 10] = True
    >>> grid_box(m, 5, 1024)   # rows 200..401, cols 20..21 on the 1024 grid, +-5
    (97.5, 7.5, 203.0, 13.0)
    """
    m = np.asarray(mask2d, dtype=bool)
    if grid == 0:
        return tuple(float(v) for v in margin_box(m, margin))  # type: ignore[return-value]
    h, w = m.shape
    r0, c0, r1, c1 = grid_bounding_box(m, grid)
    y0, x0 = max(0, r0 - margin), max(0, c0 - margin)
    y1, x1 = min(grid, r1 + margin), min(grid, c1 + margin)
    return (y0 * h / grid, x0 * w / grid, y1 * h / grid, x1 * w / grid)


def record_box(box: Box) -> tuple[int, int, int, int]:
    """Whole-pixel box for ``prompts.jsonl``: a fractional box rounded outwards."""
    y0, x0, y1, x1 = box
    return int(np.floor(y0)), int(np.floor(x0)), int(np.ceil(y1)), int(np.ceil(x1))


class Ma2024Flare22(Protocol):
    """Slice-wise box propagation from the lower-middle slice (seed: the largest margin box)."""

    name = "ma2024-flare22"
    params_class = MaFlare22Params
    prompt_kinds = ("slice2d",)
    native_metrics = ("ma_dsc", "ma_nsd")
    native_headline = "ma_dsc"
    params: MaFlare22Params

    def run_object(
        self,
        model: SliceModel,
        gt: np.ndarray,
        frames: np.ndarray | None,
        rng: np.random.Generator,
    ) -> Iterator[RoundOutcome]:
        p = self.params
        fm = frame_mask(gt.shape[0], frames)
        g = np.asarray(gt, dtype=bool) & fm[:, None, None]
        zs = foreground_slices(g)
        if zs.size == 0:
            return
        video = np.flatnonzero(fm[zs[0]:zs[-1] + 1]) + zs[0]  # z_min..z_max within the frames
        call = ModelTimer(model)
        call("start_object", video)
        _, seed = seed_box(g, p.margin)
        z_mid = start_slice(g)
        up = video[video >= z_mid]
        down = video[video < z_mid][::-1]
        pred = np.zeros(g.shape, dtype=bool)
        prompts: list[Prompt] = []
        for walk in (up, down):
            prev: np.ndarray | None = None
            if walk is down and up.size:
                prev = pred[up[0]]
            for z in (int(v) for v in walk):
                box: Box = tuple(float(v) for v in seed)  # type: ignore[assignment]
                if prev is not None and prev.any():
                    box = grid_box(prev, p.margin, p.grid)
                pred[z] = np.asarray(call("predict_slice", z, box=box), dtype=bool)
                prompts.append(Prompt("box", z, box=record_box(box)))
                prev = pred[z]
        yield RoundOutcome(1, pred, prompts, len(prompts), 0, call.lap())
