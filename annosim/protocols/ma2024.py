"""Ma et al. 2024 ("Segment anything in medical images and videos: benchmark and deployment",
arXiv:2408.03322) as its code runs it: bowang-lab/MedSAM, branch MedSAM2 @6abb0ad,
``exp_inference/infer_SAM2_3D_npz.py`` (A), ``protocol-sources.md`` section 1.

Rules, per object:

- **Video** = the slices ``z_min..z_max`` of the object's ground truth, inclusive (A L195-204),
  in both settings (intersected with the setting's frames); nothing is predicted outside it.
- **Box** = the in-plane extent of the object's 3D box, ``(y0, x0, y1, x1)`` inclusive (A L202,
  L249: ``box[[0, 1, 3, 4]]`` of the 3D box), grown by ``margin`` pixels (0 as the source: its
  boxes carry no jitter).
- **Box slice** = ``z_min + (z_max - z_min + 1) // 2``, the upper middle for an even count
  (A L205-206); in ``fg-only`` a slice without truth there gives the nearest frame above.
- **Model calls** (A L209-223): the box goes through the one-shot 2D prediction
  (``predict_slice``, SAM2's image predictor in the source), whose mask is the prompt of the video
  model (``add_mask``); a forward pass from the box slice; a reset (``start_object``); the same
  mask again; a reverse pass. The two passes are independent and OR-ed (they meet on the box
  slice). One round, one annotated slice, no click.
- **Metric**: the branch has no metric code for this script; its only one,
  ``metrics/compute_metrics_flare22.py`` (the README's "Evaluation"), scores each label on the
  whole volume: DSC and the DeepMind surfel NSD at 2 mm (``ma_dsc``, ``ma_nsd``).

``prompt=box`` gives the box straight to the video model (``add_box``) instead of its 2D mask, with
the same video and passes: not the source, but what a model without ``predict_slice`` can run;
it is recorded in run.json and named in the README.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from annosim.models.base import SliceModel
from annosim.protocols.base import ModelTimer, Prompt, Protocol, RoundOutcome, frame_mask
from annosim.protocols.prompts import bounding_box


@dataclass(frozen=True)
class Ma2024Params:
    """Parameters of ``ma2024-box``.

    Attributes
    ----------
    margin : int
        Pixels added to each side of the box, clipped to the slice (0, as the source).
    prompt : str
        ``mask2d`` (the source: the box through ``predict_slice``, its mask to ``add_mask``) or
        ``box`` (the box to ``add_box``; not the source).
    """

    margin: int = 0
    prompt: str = "mask2d"

    def __post_init__(self) -> None:
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")
        if self.prompt not in ("mask2d", "box"):
            raise ValueError(f"prompt must be mask2d or box, got {self.prompt!r}")


def ma_video(g: np.ndarray, frames: np.ndarray | None) -> np.ndarray:
    """Slices ``z_min..z_max`` (inclusive) of bool ``(Z, Y, X)`` truth ``g`` within the setting's
    ``frames`` (None: all); empty when ``g`` is empty (A L195-204).

    >>> g = np.zeros((8, 2, 2), bool); g[[2, 5], 0, 0] = True
    >>> ma_video(g, None).tolist(), ma_video(g, np.array([2, 5])).tolist()
    ([2, 3, 4, 5], [2, 5])
    """
    zs = np.flatnonzero(np.asarray(g, dtype=bool).reshape(g.shape[0], -1).any(axis=1))
    if zs.size == 0:
        return np.zeros(0, dtype=np.int64)
    video = np.arange(zs[0], zs[-1] + 1, dtype=np.int64)
    return video if frames is None else video[np.isin(video, frames)]


def ma_box_slice(g: np.ndarray) -> int:
    """``z_min + (z_max - z_min + 1) // 2`` of bool ``(Z, Y, X)`` ``g`` (A L205-206).

    >>> g = np.zeros((8, 2, 2), bool); g[2:6, 0, 0] = True  # 4 slices: 2, 3, 4, 5
    >>> ma_box_slice(g)
    4
    """
    zs = np.flatnonzero(np.asarray(g, dtype=bool).reshape(g.shape[0], -1).any(axis=1))
    if zs.size == 0:
        raise ValueError("empty ground truth: no box slice")
    return int(zs[0] + (zs[-1] - zs[0] + 1) // 2)


class Ma2024Box(Protocol):
    """3D-box extent -> one-shot 2D mask on the upper-middle slice -> two independent passes."""

    name = "ma2024-box"
    params_class = Ma2024Params
    prompt_kinds = ("box", "slice2d", "mask")
    #: The branch's metric script (metrics/compute_metrics_flare22.py): whole-volume DSC and
    #: surfel NSD at 2 mm per label (annosim.metrics.native).
    native_metrics = ("ma_dsc", "ma_nsd")
    native_headline = "ma_dsc"
    params: Ma2024Params

    @property
    def requires(self) -> tuple[str, ...]:
        """``mask2d``: the one-shot 2D prediction and mask prompts; ``box``: box prompts."""
        return ("predict_slice", "add_mask", "propagate") if self.params.prompt == "mask2d" else ("add_box", "propagate")

    def run_object(
        self,
        model: SliceModel,
        gt: np.ndarray,
        frames: np.ndarray | None,
        rng: np.random.Generator,
    ) -> Iterator[RoundOutcome]:
        g = np.asarray(gt, dtype=bool) & frame_mask(gt.shape[0], frames)[:, None, None]
        video = ma_video(g, frames)
        if video.size == 0:
            return
        z = ma_box_slice(g)
        z = int(video[min(int(np.searchsorted(video, z)), video.size - 1)])  # fg-only: nearest frame above
        box = bounding_box(g.any(axis=0), self.params.margin)
        call = ModelTimer(model)
        call("start_object", video)
        prompts = [Prompt("box", z, box=box)]
        if self.params.prompt == "mask2d":
            mask = np.asarray(call("predict_slice", z, box=box), dtype=bool)
            prompts.append(Prompt("mask", z))

            def prompt() -> None:
                call("add_mask", z, mask)
        else:
            def prompt() -> None:
                call("add_box", z, box)
        prompt()
        forward = np.asarray(call("propagate_pass", z, reverse=False), dtype=bool)
        call("start_object", video)  # reset_state
        prompt()
        reverse = np.asarray(call("propagate_pass", z, reverse=True), dtype=bool)
        pred = (forward | reverse) & frame_mask(gt.shape[0], video)[:, None, None]
        yield RoundOutcome(1, pred, prompts, 1, 0, call.lap())
