"""Dong et al. 2024 ("Segment anything model 2: an application to 2D and 3D medical images",
arXiv:2408.00756), as reviewed by He et al. 2024: one prompt on a single slice, on three
uniformly spaced slices, or on every slice, propagated once through the volume.

Rules (truth restricted to the setting's frames):

- slices ``1``: the middle slice (:func:`annosim.protocols.prompts.middle_slice`);
  ``3``: the slices at 1/4, 1/2 and 3/4 of the object's z extent
  (``z_min + floor(f * (z_max - z_min))``, each snapped to the nearest slice holding foreground,
  duplicates dropped: :func:`annosim.protocols.prompts.quantile_slices`);
  ``all``: every frame where the truth has foreground.
- prompt ``point``: one positive click at the deepest pixel (largest Euclidean distance to the
  boundary, the slice edge counting as boundary; ties lowest ``(y, x)``) of the slice truth's
  largest 8-connected component; ``box``: the tight box ``(y0, x0, y1, x1)`` of the slice's
  whole truth; ``mask``: the slice's truth with ``add_mask``.
- Prompts are given in increasing z, then one propagation: one round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from annosim.models.base import SliceModel
from annosim.protocols.base import (
    Prompt,
    Protocol,
    RoundOutcome,
    begin_object,
    propagate_in_frames,
)
from annosim.protocols.prompts import (
    bounding_box,
    deepest_point,
    foreground_slices,
    largest_component_2d,
    quantile_slices,
)

PROMPT_KINDS = ("point", "box", "mask")
SLICE_CHOICES = ("1", "3", "all")


@dataclass(frozen=True)
class Dong2024Params:
    """Parameters of ``dong2024``.

    Attributes
    ----------
    prompt : str
        ``point`` (default: the reviewed single point), ``box`` or ``mask``.
    slices : str
        ``1`` (default), ``3`` or ``all``: which slices get a prompt (module docstring).
    """

    prompt: str = "point"
    slices: str = "1"

    def __post_init__(self) -> None:
        object.__setattr__(self, "slices", str(self.slices))
        if self.prompt not in PROMPT_KINDS:
            raise ValueError(f"prompt must be one of {PROMPT_KINDS}, got {self.prompt!r}")
        if self.slices not in SLICE_CHOICES:
            raise ValueError(f"slices must be one of {SLICE_CHOICES}, got {self.slices!r}")


def dong_slices(gt: np.ndarray, choice: str) -> list[int]:
    """Prompted slices of a bool ``(Z, Y, X)`` truth for ``slices=choice`` (increasing)."""
    if choice == "1":
        return quantile_slices(gt, (0.5,))
    if choice == "3":
        return quantile_slices(gt, (0.25, 0.5, 0.75))
    if choice == "all":
        return [int(z) for z in foreground_slices(gt)]
    raise ValueError(f"slices must be one of {SLICE_CHOICES}, got {choice!r}")


class Dong2024(Protocol):
    """One point, box or mask on 1, 3 or all slices, one propagation (see module docstring)."""

    name = "dong2024"

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
        zs = dong_slices(g, p.slices)
        prompts: list[Prompt] = []
        for z in zs:
            if p.prompt == "point":
                y, x = deepest_point(largest_component_2d(g[z]))  # type: ignore[misc]
                call("add_clicks", z, np.array([[y, x]]), np.array([1]))
                prompts.append(Prompt("point", z, y, x, True))
            elif p.prompt == "box":
                box = bounding_box(g[z])
                call("add_box", z, box)
                prompts.append(Prompt("box", z, box=box))
            else:
                call("add_mask", z, g[z].copy())
                prompts.append(Prompt("mask", z))
        pred = propagate_in_frames(call, fm)
        clicks = len(zs) if p.prompt == "point" else 0
        yield RoundOutcome(1, pred, prompts, len(zs), clicks, call.lap())
