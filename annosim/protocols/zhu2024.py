"""Zhu et al. 2024 ("Medical SAM 2: segment medical images as video via segment anything model
2", arXiv:2408.00874), as reviewed by He et al. 2024: each slice is prompted at random with
probability 0.25, then one propagation through the volume.

Rules (truth restricted to the setting's frames; ``rng`` is the object's generator):

1. Let ``S`` be the frames where the truth has foreground, in increasing z. Draw
   ``u = rng.random(len(S))``; slice ``S[i]`` is prompted when ``u[i] < probability``.
2. Fallback: when no slice is drawn, the middle slice
   (:func:`annosim.protocols.prompts.middle_slice`) alone is prompted, so that every object
   gets at least one prompt.
3. On each prompted slice, in increasing z: prompt ``box`` gives the tight box
   ``(y0, x0, y1, x1)`` of the slice's truth; prompt ``point`` gives one positive click at a
   truth pixel drawn uniformly, ``coords[rng.integers(len(coords))]`` with ``coords`` the
   slice's truth pixels in raster order (draws made after all of rule 1's).
4. One propagation: one round.
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
    foreground_slices,
    middle_slice,
)

PROMPT_KINDS = ("box", "point")


@dataclass(frozen=True)
class Zhu2024Params:
    """Parameters of ``zhu2024``.

    Attributes
    ----------
    probability : float
        Chance that a foreground slice is prompted (0.25), drawn independently per slice.
    prompt : str
        ``box`` (default) or ``point`` (one random truth pixel).
    """

    probability: float = 0.25
    prompt: str = "box"

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {self.probability}")
        if self.prompt not in PROMPT_KINDS:
            raise ValueError(f"prompt must be one of {PROMPT_KINDS}, got {self.prompt!r}")


def zhu_slices(gt: np.ndarray, probability: float, rng: np.random.Generator) -> list[int]:
    """Slices of a bool ``(Z, Y, X)`` truth prompted by rules 1-2 (increasing z)."""
    fg = foreground_slices(gt)
    if fg.size == 0:
        raise ValueError("empty ground truth: no slice to prompt")
    chosen = fg[rng.random(fg.size) < probability]
    return [int(z) for z in chosen] if chosen.size else [middle_slice(gt)]


class Zhu2024(Protocol):
    """Random slices (p = 0.25) with a box or a random truth point (see module docstring)."""

    name = "zhu2024"

    params_class = Zhu2024Params
    params: Zhu2024Params

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
        zs = zhu_slices(g, p.probability, rng)
        prompts: list[Prompt] = []
        for z in zs:
            if p.prompt == "box":
                box = bounding_box(g[z])
                call("add_box", z, box)
                prompts.append(Prompt("box", z, box=box))
            else:
                coords = np.argwhere(g[z])
                y, x = (int(v) for v in coords[int(rng.integers(coords.shape[0]))])
                call("add_clicks", z, np.array([[y, x]]), np.array([1]))
                prompts.append(Prompt("point", z, y, x, True))
        pred = propagate_in_frames(call, fm)
        clicks = len(zs) if p.prompt == "point" else 0
        yield RoundOutcome(1, pred, prompts, len(zs), clicks, call.lap())
