"""The CVPR 2025 challenge "Foundation Models for Interactive 3D Biomedical Image Segmentation"
(JunMa11/CVPR-MedSegFMCompetition @748e862: ``get_boxes.py`` = B, ``CVPR25_iter_eval.py`` = I;
``../shared/reference/protocol-sources.md`` section 5): a 3D box, then exactly 5 click rounds,
each click at the deepest voxel of the largest 3D error component; six predictions in all.

Rules (truth G restricted to the setting's frames):

1. **Box** (B L44-86). The z extent ``z_min..z_max`` of G and a 2D box on ``z_mid``, the
   *upper median of the occupied slices* (sorted distinct z of G, index ``n // 2``). The 2D box
   is G's tight box on ``z_mid`` grown by one draw ``s`` in ``0..5`` (``randint(0, 6)``, here
   from the object's generator, where the source's 16 forked workers share one seeded stream):
   ``int(s * Y / 256)`` rows and ``int(s * X / 256)`` columns each side, clipped to the slice.
   The slice API has no 3D box, so the z extent becomes the object's video (``crop_z``, an
   oracle the report names) and the 2D box goes to ``add_box``; one propagation: round 1.
2. **Clicks** (I L377-426), rounds 2..6, one each, always 6 rounds (no early stop):
   the error ``P xor G``; its largest 26-connected component (ties: the lowest label, i.e. the
   component first met in C raster order, as ``cc3d`` numbers a C-ordered array); the exact
   Euclidean distance transform **in voxel units** of that component alone, cropped to its box
   and zero-padded by ``max(int(0.25 * extent), 1)`` per axis (above 60,000,000 padded voxels
   the source max-pools 2x2x2, transforms and repeats back: reproduced), times the component
   (all zero -> the component itself); among the voxels at the maximum, listed in C order, the
   one ``numpy.random.RandomState(42).choice(n)`` draws (the source reseeds numpy's global
   generator with 42 before every click: a local ``RandomState`` gives the same draw). Negative
   when G does not hold it, else positive. A round whose prediction has no error adds no click
   and repeats the prediction (the source runs the model again on unchanged prompts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from scipy import ndimage

from annosim.models.base import SliceModel
from annosim.protocols.base import (
    ModelTimer,
    Prompt,
    Protocol,
    RoundOutcome,
    frame_mask,
    propagate_in_frames,
)
from annosim.protocols.clicks import largest_component
from annosim.protocols.prompts import bounding_box, foreground_slices, upper_median_slice, z_extent

#: Padded crops above this many voxels are max-pooled 2x2x2 before the EDT (I L207-225).
LARGE_ROI_VOXELS = 60_000_000
#: The source reseeds numpy with this before every click (I L164-175).
CLICK_SEED = 42


@dataclass(frozen=True)
class Cvpr25Params:
    """Parameters of ``cvpr25``.

    Attributes
    ----------
    clicks : int
        Click rounds after the box (5, the challenge's ``n_clicks``).
    crop_z : bool
        The object's video is the truth's z extent (the 3D box's z range; True).
    max_shift : int
        The box margin draw ``s`` is uniform in ``0..max_shift`` (5, the source's
        ``randint(0, 6)``); 0 gives the tight box.
    """

    clicks: int = 5
    crop_z: bool = True
    max_shift: int = 5

    def __post_init__(self) -> None:
        if self.clicks < 0 or self.max_shift < 0:
            raise ValueError("clicks and max_shift must be >= 0")


def challenge_box(gt2d: np.ndarray, shift: int) -> tuple[int, int, int, int]:
    """The 2D box ``(y0, x0, y1, x1)`` (inclusive) of B L44-63: bool ``(Y, X)`` ``gt2d``'s tight
    box grown by ``int(shift * Y / 256)`` rows and ``int(shift * X / 256)`` columns each side,
    clipped to the slice.

    >>> m = np.zeros((512, 256), bool); m[100:201, 50:61] = True
    >>> challenge_box(m, 5)
    (90, 45, 210, 65)
    """
    y0, x0, y1, x1 = bounding_box(gt2d, 0)
    ny, nx = np.shape(gt2d)
    my, mx = (int(shift) * ny) // 256, (int(shift) * nx) // 256
    return max(y0 - my, 0), max(x0 - mx, 0), min(y1 + my, ny - 1), min(x1 + mx, nx - 1)


def component_edt(component: np.ndarray) -> np.ndarray:
    """I L178-244 and L402-406 on a bool ``(Z, Y, X)`` component: its exact EDT in voxel units
    (float64, same shape) computed on its box zero-padded by ``max(int(0.25 * extent), 1)`` per
    axis (2x2x2 max-pooled and repeated back above :data:`LARGE_ROI_VOXELS` padded voxels), times
    the component; the component itself (as 0/1) when that is all zero."""
    comp = np.asarray(component, dtype=bool)
    out = np.zeros(comp.shape, dtype=np.float64)
    coords = np.argwhere(comp)
    if coords.shape[0] == 0:
        return out
    lo, hi = coords.min(axis=0), coords.max(axis=0) + 1
    extent = hi - lo
    pad = np.maximum((extent * 0.25).astype(int), 1)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    crop = np.pad(comp[box], [(int(p), int(p)) for p in pad])
    if crop.size > LARGE_ROI_VOXELS:
        # skimage's block_reduce(..., (2, 2, 2), np.max): zero-pad the end to even sizes
        even = np.pad(crop, [(0, s % 2) for s in crop.shape])
        z, y, x = (s // 2 for s in even.shape)
        pooled = even.reshape(z, 2, y, 2, x, 2).max(axis=(1, 3, 5))
        edt = ndimage.distance_transform_edt(pooled)
        edt = edt.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)
    else:
        edt = ndimage.distance_transform_edt(crop)
    inner = tuple(slice(int(p), int(p) + int(e)) for p, e in zip(pad, extent))
    out[box] = edt[inner]
    out *= comp
    if not out.any():
        out = comp.astype(np.float64)
    return out


def seeded_argmax(values: np.ndarray) -> tuple[int, ...]:
    """I L164-175: the index of ``values`` (any dimension) at its maximum that
    ``RandomState(42).choice(n)`` picks among the ``n`` maxima in ``np.argwhere`` (C) order."""
    at_max = np.argwhere(values == values.max())
    pick = np.random.RandomState(CLICK_SEED).choice(len(at_max))
    return tuple(int(v) for v in at_max[pick])


def error_click(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int, int, bool] | None:
    """Rule 2 on bool ``(Z, Y, X)`` masks: ``(z, y, x, positive)``, or ``None`` without error."""
    comp = largest_component(np.asarray(pred, dtype=bool) ^ np.asarray(gt, dtype=bool))
    if not comp.any():
        return None
    z, y, x = seeded_argmax(component_edt(comp))
    return z, y, x, bool(gt[z, y, x])


class Cvpr25(Protocol):
    """Box (z-extent crop + upper-median 2D box with the source's margin draw), then 5 click
    rounds at the deepest voxel of the largest 3D error component (see module docstring)."""

    name = "cvpr25"
    params_class = Cvpr25Params
    prompt_kinds = ("box", "point")
    native_metrics = ("cvpr25_nsd",)
    native_object_metrics = ("cvpr25_dsc_auc", "cvpr25_nsd_auc", "cvpr25_dsc_final", "cvpr25_nsd_final")
    native_headline = "cvpr25_dsc_auc"
    params: Cvpr25Params

    @property
    def max_rounds(self) -> int:
        """The box round and one round per click: always all of them."""
        return 1 + self.params.clicks

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
        video = frames
        if p.crop_z:
            lo, hi = z_extent(g)
            fm[:lo] = False
            fm[hi + 1 :] = False
            video = np.flatnonzero(fm)
        call = ModelTimer(model)
        call("start_object", video)

        z = upper_median_slice(g)
        shift = int(rng.integers(0, p.max_shift + 1))
        box = challenge_box(g[z], shift)
        call("add_box", z, box)
        pred = propagate_in_frames(call, fm)
        annotated = {z}
        yield RoundOutcome(1, pred, [Prompt("box", z, box=box)], 1, 0, call.lap())

        clicks = 0
        for k in range(2, p.clicks + 2):
            click = error_click(pred, g)
            prompts: list[Prompt] = []
            if click is not None:
                cz, cy, cx, positive = click
                call("add_clicks", cz, np.array([[cy, cx]]), np.array([int(positive)]))
                pred = propagate_in_frames(call, fm)
                annotated.add(cz)
                clicks += 1
                prompts.append(Prompt("point", cz, cy, cx, positive))
            yield RoundOutcome(k, pred, prompts, len(annotated), clicks, call.lap())
