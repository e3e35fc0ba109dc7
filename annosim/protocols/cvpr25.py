"""The CVPR 2025 challenge "Foundation Models for Interactive 3D Biomedical Image Segmentation"
(evaluation script ``CVPR25_iter_eval.py``, JunMa11/CVPR-MedSegFMCompetition): a 3D bounding
box, then 5 clicks, each at the centre of the largest 3D error component; a prediction after the
box and after every click (6 in all).

The challenge's 3D box is given as the z extent ``z_min..z_max`` plus a 2D box on a middle
slice ``z_mid``. The slice API has only a 2D ``add_box``, so the box maps onto it as:

1. **z extent as a crop.** With ``crop_z`` (default) the object's video is restricted to the
   setting's frames within ``z_min..z_max`` of the truth (``start_object`` gets those frames);
   slices outside it are predicted empty. This is an oracle the report names.
2. **2D box** ``(y0, x0, y1, x1)``, the truth's tight box on the middle slice
   (:func:`annosim.protocols.prompts.middle_slice`), grown by ``margin``; one propagation:
   round 1.
3. **Rounds 2..6**, one click each: the error ``E = P xor G`` over the frames; its largest
   26-connected component (ties: first in ``(z, y, x)`` order); the voxel of that component
   farthest from the component's boundary (Euclidean distance transform in **voxel units**,
   as the challenge computes it, voxels outside the volume counting as outside; ties: lowest
   ``(z, y, x)`` where the challenge draws one at random with a fixed seed). The click is
   positive when the truth holds that voxel (a false negative), negative otherwise; it is added
   to the earlier prompts on its slice and the volume propagated. No error left ends the
   protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

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
from annosim.protocols.prompts import (
    bounding_box,
    deepest_point,
    middle_slice,
    z_extent,
)


@dataclass(frozen=True)
class Cvpr25Params:
    """Parameters of ``cvpr25``.

    Attributes
    ----------
    clicks : int
        Corrective clicks after the box, one per round (5).
    crop_z : bool
        Restrict the object's video to the truth's z extent (the 3D box's z range; True).
    margin : int
        Pixels added to each side of the 2D box on the middle slice (0).
    """

    clicks: int = 5
    crop_z: bool = True
    margin: int = 0

    def __post_init__(self) -> None:
        if self.clicks < 0 or self.margin < 0:
            raise ValueError("clicks and margin must be >= 0")


def error_click(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int, int, bool] | None:
    """Rule 3 on bool ``(Z, Y, X)`` masks: ``(z, y, x, positive)`` or ``None`` if no error."""
    comp = largest_component(pred ^ gt)
    point = deepest_point(comp)
    if point is None:
        return None
    z, y, x = point
    return z, y, x, bool(gt[z, y, x])


class Cvpr25(Protocol):
    """Box (z extent + middle-slice 2D box) then 5 error-centre clicks (see module docstring)."""

    name = "cvpr25"
    params_class = Cvpr25Params
    prompt_kinds = ("box", "point")
    params: Cvpr25Params

    @property
    def max_rounds(self) -> int:
        """The box round and one round per click."""
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

        z = middle_slice(g)
        box = bounding_box(g[z], p.margin)
        call("add_box", z, box)
        pred = propagate_in_frames(call, fm)
        annotated = {z}
        yield RoundOutcome(1, pred, [Prompt("box", z, box=box)], 1, 0, call.lap())

        for k in range(1, p.clicks + 1):
            click = error_click(pred, g)
            if click is None:
                return
            cz, cy, cx, positive = click
            call("add_clicks", cz, np.array([[cy, cx]]), np.array([int(positive)]))
            pred = propagate_in_frames(call, fm)
            annotated.add(cz)
            prompt = Prompt("point", cz, cy, cx, positive)
            yield RoundOutcome(k + 1, pred, [prompt], len(annotated), k, call.lap())
