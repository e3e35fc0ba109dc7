"""RadioActive's 2D interactive prompters (MIC-DKFZ/radioactive @1796386, ``protocol-sources.md``
section 8; rules in :mod:`annosim.protocols.radioactive_rules`), as the source runs them with its
``NoPrevPoint`` prompters.

For one object (truth G restricted to the setting's frames):

1. **Initial prompt** (round 1), on the truth turned to the source's SAR model space:
   ``point-interpolation`` (5 seed slices), ``box-interpolation`` (3 seed boxes),
   ``point-propagation`` (5 random points on the median slice, then one centre point a slice up
   and down from each prediction) or ``one-point`` (one random truth pixel per slice). Only the
   slices that carry a prompt are inferred, each on its own through the one-shot
   ``predict_slice``; the others are empty.
2. **Refinements** (rounds 2..6, IP L132-162, L296-329): stop when the prediction equals G;
   otherwise a negative or positive step; only the slices the step prompts are inferred again,
   each from the step's points on it plus, where the slice was inferred in the previous call,
   that prediction as a mask prompt (``predict_slice_masked``); the other slices keep their
   prediction (``inferer.py`` L93-104).

Prompts on slices outside the setting's frames (interpolated points across a gap of the truth in
``fg-only``) are dropped. Random draws follow the source's seeds (seed 1, reseeded where it
reseeds), not ``--seed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from annosim.models.base import SliceModel
from annosim.protocols.base import ModelTimer, Prompt, Protocol, RoundOutcome, begin_object
from annosim.protocols import radioactive_rules as rr


@dataclass(frozen=True)
class RadioactiveParams:
    """Parameters of the RadioActive protocols (defaults: the source's ``PromptConfig``, ER L38-52).

    Attributes
    ----------
    refinements : int
        Refinement steps after the initial prompt (``interactive_max_iter`` = 5: 6 results).
    slices : int
        Seed slices of ``point-interpolation`` (5; ``box-interpolation``: 3, IP L775), seed
        points of ``point-propagation`` (5); unused by ``one-point``.
    mask_prompts : bool
        Send the previous prediction of a re-inferred slice as a mask prompt (True, IP L327).
    prev_prompts : bool
        The source's ``WithPrevPoint`` prompters (IP L137-142): every step resends, on every slice
        prompted so far, the new points followed by all earlier ones, so all those slices are
        inferred again (False: ``NoPrevPoint``, only the step's new points and slices).
    seed : int
        The source's seed (1, ER L96).
    """

    refinements: int = 5
    slices: int = 5
    mask_prompts: bool = True
    prev_prompts: bool = False
    seed: int = rr.SOURCE_SEED

    def __post_init__(self) -> None:
        if self.refinements < 0 or self.slices < 1:
            raise ValueError("refinements must be >= 0 and slices >= 1")


@dataclass(frozen=True)
class RadioactiveBoxParams(RadioactiveParams):
    """:class:`RadioactiveParams` of ``radioactive-box-interpolation``: 3 seed boxes (IP L775);
    no ``prev_prompts`` (the source's configs run ``BoxInterpolationInteractivePrompterNoPrevPoint``
    only)."""

    slices: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.prev_prompts:
            raise ValueError("prev_prompts=true is not offered for boxes (the source's configs run "
                             "BoxInterpolationInteractivePrompterNoPrevPoint only)")


#: A step's prompts on one slice: points (K, 2) canonical (y, x), labels (K,), box or None.
SlicePrompt = tuple[np.ndarray, np.ndarray, "tuple[int, int, int, int] | None"]


def group_points(coords: np.ndarray, labels: np.ndarray, shape: tuple[int, ...],
                 frames: np.ndarray) -> dict[int, SlicePrompt]:
    """SAR ``(K, 3)`` points and labels -> canonical per-slice prompts (source order kept),
    slices outside the bool ``(Z,)`` ``frames`` dropped."""
    can = rr.points_from_sar(coords, shape)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    out: dict[int, SlicePrompt] = {}
    for z in np.unique(can[:, 0]):
        if frames[int(z)]:
            sel = can[:, 0] == z
            out[int(z)] = (can[sel, 1:], labels[sel], None)
    return out


def merge_prompts(new: dict[int, SlicePrompt], old: dict[int, SlicePrompt]) -> dict[int, SlicePrompt]:
    """``merge_sparse_prompt_steps([new, old])`` (``prompt.py``) per slice: the new points first,
    then the old ones; a slice's box kept."""
    out = dict(old)
    for z, (pts, labs, box) in new.items():
        if z in old:
            o_pts, o_labs, o_box = old[z]
            out[z] = (np.concatenate([pts, o_pts]), np.concatenate([labs, o_labs]), box or o_box)
        else:
            out[z] = (pts, labs, box)
    return out


def prompt_records(prompts: dict[int, SlicePrompt]) -> list[Prompt]:
    """The ``prompts.jsonl`` records of one step's per-slice prompts, by slice."""
    recs: list[Prompt] = []
    for z in sorted(prompts):
        pts, labs, box = prompts[z]
        if box is not None:
            recs.append(Prompt("box", z, box=box))
        recs.extend(Prompt("point", z, int(y), int(x), bool(l)) for (y, x), l in zip(pts, labs))
    return recs


def infer_slice(call: ModelTimer, z: int, prompt: SlicePrompt, mask: np.ndarray | None) -> np.ndarray:
    """One slice as the source's SAM inferer infers it: its prompt and (``mask``) the previous
    prediction as a mask prompt; bool ``(Y, X)``."""
    pts, labs, box = prompt
    if mask is not None:
        return np.asarray(call("predict_slice_masked", z, mask, points=pts, labels=labs), dtype=bool)
    if box is not None:
        return np.asarray(call("predict_slice", z, box=box), dtype=bool)
    return np.asarray(call("predict_slice", z, points=pts, labels=labs), dtype=bool)


class RadioactiveBase(Protocol):
    """The refinement loop shared by the 2D prompters; subclasses give :meth:`initial_prompts`."""

    name = "radioactive"
    params_class = RadioactiveParams
    params: RadioactiveParams
    orientation = "canonical"

    @property
    def prompt_kinds(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("slice2d", "slice2d-mask") if self.params.mask_prompts and self.params.refinements else ("slice2d",)

    @property
    def max_rounds(self) -> int:
        """The initial prediction and one round per refinement."""
        return 1 + self.params.refinements

    def initial_prompts(self, call: ModelTimer, g_sar: np.ndarray, fm: np.ndarray,
                        rng: rr.SourceRandom) -> dict[int, SlicePrompt]:
        """Per-slice canonical prompts of round 1 from the SAR truth ``g_sar``."""
        raise NotImplementedError

    def run_object(
        self,
        model: SliceModel,
        gt: np.ndarray,
        frames: np.ndarray | None,
        rng: np.random.Generator,
    ) -> Iterator[RoundOutcome]:
        p = self.params
        call, fm, g = begin_object(model, gt, frames)
        if not g.any():
            return
        source_rng = rr.SourceRandom(p.seed)
        g_sar = rr.to_sar(g)
        prompts = self.initial_prompts(call, g_sar, fm, source_rng)
        pred = np.zeros(g.shape, dtype=bool)
        for z in sorted(prompts):
            pred[z] = infer_slice(call, z, prompts[z], None)
        annotated = set(prompts)
        clicks = sum(len(v[0]) for v in prompts.values())
        last, merged = set(prompts), prompts
        yield RoundOutcome(1, pred.copy(), prompt_records(prompts), len(annotated), clicks, call.lap())
        for k in range(2, p.refinements + 2):
            step = rr.refinement_step(g_sar, rr.to_sar(pred), source_rng)
            if step is None:
                return
            prompts = group_points(*step, g.shape, fm)
            merged = merge_prompts(prompts, merged) if p.prev_prompts else prompts
            for z in sorted(merged):
                mask = pred[z].copy() if (p.mask_prompts and z in last) else None
                pred[z] = infer_slice(call, z, merged[z], mask)
            annotated |= set(prompts)
            clicks += sum(len(v[0]) for v in prompts.values())
            last = set(merged)
            yield RoundOutcome(k, pred.copy(), prompt_records(prompts), len(annotated), clicks, call.lap())


class RadioactivePointInterpolation(RadioactiveBase):
    """``PointInterpolationInteractivePrompterNoPrevPoint`` (IP L735-761)."""

    name = "radioactive-point-interpolation"

    def initial_prompts(self, call: ModelTimer, g_sar: np.ndarray, fm: np.ndarray,
                        rng: rr.SourceRandom) -> dict[int, SlicePrompt]:
        n = min(self.params.slices, len(rr.gt_slices(g_sar)))
        pts = rr.interpolation_points(g_sar, n)
        return group_points(pts, np.ones(len(pts), dtype=np.int64), g_sar.shape, fm)


class RadioactiveBoxInterpolation(RadioactiveBase):
    """``BoxInterpolationInteractivePrompterNoPrevPoint`` (IP L764-790): 3 seed boxes."""

    name = "radioactive-box-interpolation"
    params_class = RadioactiveBoxParams

    def initial_prompts(self, call: ModelTimer, g_sar: np.ndarray, fm: np.ndarray,
                        rng: rr.SourceRandom) -> dict[int, SlicePrompt]:
        n = min(self.params.slices, len(rr.gt_slices(g_sar)))
        boxes = rr.interpolate_boxes(rr.seed_boxes(g_sar, n))
        none = np.zeros((0, 2), dtype=np.int64)
        return {z: (none, np.zeros(0, dtype=np.int64), rr.box_from_sar(b, g_sar.shape))
                for z, b in boxes.items() if fm[z]}


class RadioactiveOnePoint(RadioactiveBase):
    """``OnePointPer2DSliceInteractivePrompterNoPrevPoint`` (IP L713-732): one random truth pixel
    per slice."""

    name = "radioactive-one-point"

    def initial_prompts(self, call: ModelTimer, g_sar: np.ndarray, fm: np.ndarray,
                        rng: rr.SourceRandom) -> dict[int, SlicePrompt]:
        pts = rr.one_point_per_slice(g_sar, rng)
        return group_points(pts, np.ones(len(pts), dtype=np.int64), g_sar.shape, fm)


class RadioactivePointPropagation(RadioactiveBase):
    """``PointPropagationInteractivePrompterNoPrevPoint`` (IP L820-857; PU L509-573)."""

    name = "radioactive-point-propagation"

    def initial_prompts(self, call: ModelTimer, g_sar: np.ndarray, fm: np.ndarray,
                        rng: rr.SourceRandom) -> dict[int, SlicePrompt]:
        shape = g_sar.shape
        m = rr.median_seed_slice(g_sar)
        seed_yx = rr.random_slice_points(g_sar[m], self.params.slices, rng.reseed())
        seed = np.column_stack([np.full(len(seed_yx), m), seed_yx]).astype(np.int64)
        fg = rr.gt_slices(g_sar)
        up = self._propagate(call, seed, range(m, int(fg.max())), +1, fm, shape)
        down = self._propagate(call, seed, range(m, int(fg.min()), -1), -1, fm, shape)
        # PU L571: the downward list without its first n_points_propagation (5) entries
        coords = np.concatenate([up, down[self.params.slices:]], axis=0)
        return group_points(coords, np.ones(len(coords), dtype=np.int64), shape, fm)

    @staticmethod
    def _propagate(call: ModelTimer, seed: np.ndarray, todo: range, step: int,
                   fm: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """PU L527-557 in SAR coordinates: predict the current prompt's slice, take the
        prediction's :func:`bbox_centre_point`, move it one slice on; stop at an empty
        prediction. Returns every prompt point, the seed's first."""
        out = [seed]
        current = seed
        for z in todo:
            if not fm[z]:
                break
            prompt = group_points(current, np.ones(len(current), dtype=np.int64), shape, fm)
            seg_can = infer_slice(call, z, prompt[z], None) if z in prompt else None
            if seg_can is None or not seg_can.any():
                break
            y, x = rr.bbox_centre_point(seg_can[::-1, ::-1])
            current = np.array([[z + step, y, x]], dtype=np.int64)
            out.append(current)
        return np.concatenate(out, axis=0)
