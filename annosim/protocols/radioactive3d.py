"""RadioActive's 3D cropped prompters for patch models (MIC-DKFZ/radioactive @1796386,
``protocol-sources.md`` section 8, "3D prompters"; rules in
:mod:`annosim.protocols.radioactive3d_rules`, file abbreviations as there), as the source runs
them with its SAM-Med3D inferer (S3) and its ``NoPrevPoint`` classes.

Per object (class), in the source's model space (the case resampled to the model's spacing by
nnU-Net's torch resampling, RS/NR; annosim's RAS-ordered array stands for the file's voxel order):

1. **Initial point** (round 1), from the truth at the case's resolution turned to SAR:
   ``radioactive-3d-point`` (``threeDCroppedInteractivePrompterNoPrevPoint``, IP L347-354): one
   truth voxel drawn after ``np.random.seed(1)`` (P3 L26-47); ``radioactive-3d-center``
   (``threeDCroppedFromCenterInteractivePrompterNoPrevPoint``, IP L466-478): the
   point-interpolation line (5 seed slices), the points inside a 128^3 box around its centroid
   (in model space), the middle one after sorting by the 3rd model coordinate (P3 L168-200). The
   point goes to model space by the source's sparse rule (:func:`points_to_model`).
2. **Patch** (IP L404-408, IM L10-44, S3 L118-212): the resampled volume clipped to its 0.5/99.5
   percentiles (S3 L79-84), then a crop or pad to the model's patch (128^3) centred on the
   initial point's bounding box (torchio ``CropOrPad`` with the point as the mask:
   :func:`annosim.protocols.patch.crop_or_pad_begin`), zero padding, z-normalised over voxels
   > 0 (``zscore-positive``; an ``hu`` model gets the resampled HU as they are). ``set_patch``
   once: the crop is fixed for all rounds.
3. **Refinements** (rounds 2..6, IP L364-380, L417-436): truth (resampled as a label) and the
   model-space prediction kept inside ``[p - 64, p + 64)`` around the initial point (P3
   L100-114); one misclassified voxel drawn with ``randint`` after ``np.random.seed(1)`` (P3
   L117-137), labelled with the truth; sent alone (``NoPrevPoint``) with the previous low-res
   logits as the mask prompt (``prev_prompts=true``, ``WithPrevPoint``: the same point without
   them, see :class:`Radioactive3dParams`). 5 refinements, no early stop; where no voxel is
   misclassified the source crashes (``randint(0)``) and annosim stops the object. A truth that
   the resampling loses entirely gives 6 empty results without prompts (IP L387-395).
4. The prediction is the patch's logits > 0.5 (S3 L325) in the model volume, resampled back to
   the case grid as a label (S3 L101-106); scored with annosim's Dice (the source's ``nneval``
   Dice per class).

Where annosim cannot follow the source (README, "radioactive-*"): the source's model space is
the file's voxel order without reorientation and its spacing ``|diag(affine)|``; annosim uses the
RAS order of its canonical case (the same for files stored RAS; for others the raster order of
the draws and the sort's axis differ). Seeds are the source's (1), not ``--seed``.
``radioactive-3d-center-2dalgo`` continues the source's global numpy state between its unseeded
draws; annosim starts it afresh per object (exact for the first object a prompter sees). In ``fg-only``
the prediction is kept on the object's slices only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from annosim.data.orientation import canonical_to_ras, ras_points_to_canonical, ras_to_canonical
from annosim.models.base import SliceModel
from annosim.protocols import radioactive3d_rules as r3
from annosim.protocols import radioactive_rules as rr
from annosim.protocols.base import ModelTimer, Prompt, Protocol, RoundOutcome, frame_mask
from annosim.protocols.patch import crop_or_pad_begin, window, znorm_positive
from annosim.protocols.sammed3d import model_patch_spec


@dataclass(frozen=True)
class Radioactive3dParams:
    """Parameters of the RadioActive 3D prompters (defaults: the source's ``PromptConfig``, ER L38-52).

    Attributes
    ----------
    refinements : int
        Refinement steps after the initial point (``interactive_max_iter`` = 5: 6 results).
    slices : int
        Seed slices of the point-interpolation line (``radioactive-3d-center``; 5).
    prev_prompts : bool
        The source's ``WithPrevPoint`` classes (IP L862-903): the merged step carries no mask
        (IP L421-422) and the inferer keeps only the first point inside the patch, the newest
        (S3 L231-250), so each step sends its new point without the low-res logits (False:
        ``NoPrevPoint``, the new point with them).
    seed : int
        The source's seed (1, ER L96; ``np.random.seed`` before every draw; >= 1: the source
        reseeds only on a nonzero seed, P3 L123).
    """

    refinements: int = 5
    slices: int = 5
    prev_prompts: bool = False
    seed: int = rr.SOURCE_SEED

    def __post_init__(self) -> None:
        if self.refinements < 0 or self.slices < 1 or self.seed < 1:
            raise ValueError("refinements must be >= 0, slices >= 1 and seed >= 1")


class _Radioactive3d(Protocol):
    """The loop both prompters share (module docstring); subclasses give :meth:`initial_point`."""

    params_class = Radioactive3dParams
    params: Radioactive3dParams
    prompt_kinds = ("patch",)
    orientation = "canonical"
    orientation_fixed = True

    @property
    def requires(self) -> tuple[str, ...]:
        return ("set_patch", "predict_patch")

    @property
    def max_rounds(self) -> int:
        """The initial prediction and one round per refinement."""
        return 1 + self.params.refinements

    def initial_point(self, g_sar: np.ndarray, shape: tuple[int, ...], spacing: tuple[float, ...],
                      target: tuple[float, ...], size: tuple[int, int, int]) -> np.ndarray:
        """The model-space initial point, int ``(3,)`` RAS ``(i, j, k)``."""
        raise NotImplementedError

    def refine(self, pred: np.ndarray, gt: np.ndarray, rng: rr.SourceRandom) -> tuple[np.ndarray, int] | None:
        """One refinement on the isolated model-space masks: a reseeded misclassified voxel (P3
        L117-137); ``None`` where the source crashes."""
        return r3.misclassified_voxel(pred, gt, self.params.seed)

    def run_object(
        self, model: SliceModel, gt: np.ndarray, frames: np.ndarray | None, rng: np.random.Generator,
    ) -> Iterator[RoundOutcome]:
        p = self.params
        spec = model_patch_spec(model)
        volume, spacing = getattr(model, "case_volume", None), getattr(model, "spacing", None)
        if volume is None or spacing is None:
            raise RuntimeError("set_volume must be called before a patch protocol runs")
        g = np.asarray(gt, dtype=bool)
        if not g.any():
            return
        fm = frame_mask(g.shape[0], frames)
        call = ModelTimer(model)
        g_ras = canonical_to_ras(g)
        sp, target, size = tuple(float(s) for s in spacing)[::-1], tuple(spec.spacing)[::-1], tuple(spec.size)[::-1]
        image = r3.resample(canonical_to_ras(volume), sp, target)
        g_model = r3.resample(g_ras, sp, target, is_seg=True)
        if not g_model.any():  # IP L387-395: a truth lost by the resampling -> 6 empty results
            for k in range(1, self.max_rounds + 1):
                yield RoundOutcome(k, np.zeros(g.shape, dtype=bool), [], 0, 0, call.lap())
            return
        point = self.initial_point(rr.to_sar(g), g_ras.shape, sp, target, size)
        if np.any(point < 0) or np.any(point >= image.shape):
            raise RuntimeError(f"initial point {point.tolist()} outside the model volume {image.shape} "
                               "(the source fails indexing its crop mask, IM L27-32)")
        mark = np.zeros(image.shape, dtype=bool)
        mark[tuple(point)] = True
        begin = np.array(crop_or_pad_begin(mark, size))
        patch = window(r3.clip_percentiles(image) if spec.intensity == "zscore-positive" else image, begin, size)
        if spec.intensity == "zscore-positive":
            patch = znorm_positive(patch)
        call("set_patch", np.ascontiguousarray(ras_to_canonical(patch)))
        sent, label, low_res = point, 1, None
        source_rng = rr.SourceRandom(p.seed)  # the source's global numpy state, seeded when the prompter is built
        seg = np.zeros(image.shape, dtype=bool)
        annotated: set[int] = set()
        for k in range(1, self.max_rounds + 1):
            if k > 1:
                step = self.refine(r3.isolate(seg, point, size), r3.isolate(g_model, point, size), source_rng)
                if step is None:  # where the source raises (P3 L128: randint(0); IP L525: 0 / 0)
                    return
                sent, label = step
            local = sent - begin
            if np.any(local < 0) or np.any(local >= size):  # S3 L306-312 raises here
                return
            out = call("predict_patch", ras_points_to_canonical(local[None], size), np.array([label], dtype=np.int64),
                       low_res)
            logits = np.ascontiguousarray(canonical_to_ras(np.asarray(out.logits, dtype=np.float32)))
            if logits.shape != size:
                raise ValueError(f"predict_patch returned logits {np.asarray(out.logits).shape}, "
                                 f"expected the patch shape {tuple(spec.size)}")
            low_res = None if p.prev_prompts else out.low_res
            seg = np.zeros(image.shape, dtype=bool)
            window_paste(seg, logits > r3.LOGIT_THRESHOLD, begin)
            pred = ras_to_canonical(r3.resample(seg, target, sp, shape=g_ras.shape, is_seg=True)) & fm[:, None, None]
            cz, cy, cx = ras_points_to_canonical(case_voxel(sent, g_ras.shape, sp, target)[None], g_ras.shape)[0]
            annotated.add(int(cz))
            prompt = Prompt("point", int(cz), int(cy), int(cx), bool(label))
            yield RoundOutcome(k, np.ascontiguousarray(pred), [prompt], len(annotated), k, call.lap())


def window_paste(volume: np.ndarray, patch: np.ndarray, begin: np.ndarray) -> None:
    """S3 L326-333: write the in-volume part of ``patch`` into ``volume`` at ``begin`` (in place)."""
    dst, src = [], []
    for n, b, m in zip(volume.shape, begin, patch.shape):
        lo, hi = max(int(b), 0), min(int(b) + int(m), int(n))
        if hi <= lo:
            return
        dst.append(slice(lo, hi))
        src.append(slice(lo - int(b), hi - int(b)))
    volume[tuple(dst)] = patch[tuple(src)]


def case_voxel(point: np.ndarray, shape: tuple[int, ...], spacing: tuple[float, ...],
               target: tuple[float, ...]) -> np.ndarray:
    """The case voxel a model-space point is recorded at (``prompts.jsonl``): the inverse of
    :func:`radioactive3d_rules.points_to_model`'s factor, rounded and clipped to the case; int ``(3,)``."""
    new = np.array(r3.model_shape(shape, spacing, target))
    again = np.array(r3.model_shape(tuple(new), spacing, target))
    c = np.round(np.asarray(point, dtype=np.float64) * (new - 1) / np.maximum(again - 1, 1))
    return np.clip(c, 0, np.array(shape) - 1).astype(np.int64)


class Radioactive3dPoint(_Radioactive3d):
    """``threeDCroppedInteractivePrompterNoPrevPoint`` (IP L332-436): a random truth voxel."""

    name = "radioactive-3d-point"

    def initial_point(self, g_sar: np.ndarray, shape: tuple[int, ...], spacing: tuple[float, ...],
                      target: tuple[float, ...], size: tuple[int, int, int]) -> np.ndarray:
        return r3.points_to_model(r3.random_fg_voxel(g_sar, self.params.seed), shape, spacing, target)[0]


class Radioactive3dCenter(_Radioactive3d):
    """``threeDCroppedFromCenterInteractivePrompterNoPrevPoint`` (IP L439-478): the middle point
    of the interpolation line inside the patch-sized box around its centroid."""

    name = "radioactive-3d-center"

    def initial_point(self, g_sar: np.ndarray, shape: tuple[int, ...], spacing: tuple[float, ...],
                      target: tuple[float, ...], size: tuple[int, int, int]) -> np.ndarray:
        line = r3.points_to_model(r3.interpolation_line(g_sar, self.params.slices), shape, spacing, target)
        return r3.middle_point(r3.subset_to_box(line, size))[0]


class Radioactive3dCenter2dAlgo(Radioactive3dCenter):
    """``threeDCroppedFromCenterAnd2dAlgoInteractivePrompterNoPrevPoint`` (IP L481-669): the
    initial point and patch of ``radioactive-3d-center``; each refinement applies the 2D
    negative / positive logic inside the isolated patch region (:func:`radioactive3d_rules.algo2d_step`)."""

    name = "radioactive-3d-center-2dalgo"

    def refine(self, pred: np.ndarray, gt: np.ndarray, rng: rr.SourceRandom) -> tuple[np.ndarray, int] | None:
        return r3.algo2d_step(pred, gt, rng)
