"""SAM-Med3D's click evaluation (uni-medical/SAM-Med3D; ``../shared/reference/protocol-sources.md``
section 7) for patch models (:class:`annosim.models.base.PatchSpec`).

``sammed3d`` (7A, current code @f3de1fa, IU = ``utils/infer_utils.py``) per object (class):

1. The patch (:mod:`annosim.protocols.patch`): resample to the model's spacing (1.5 mm for
   SAM-Med3D), RAS order, ``CropOrPad`` to its size (128^3) around the label's bounding-box
   centre, z-normalisation over voxels > 0 (IU L246-272). ``set_patch`` once (the encoder).
2. ``clicks`` = 1 (``num_clicks``, medim_val_dataset L33); a ``numpy.random.RandomState(233)``
   (IU L384-385) gives the draws. Click ``k`` follows ``click_method``: ``random`` (default)
   over FN ∪ FP of the current patch prediction (initially empty), or ``ritm`` on the voxels
   deeper than half the maximal EDT (:mod:`annosim.protocols.sammed3d_rules`).
3. ``predict_patch`` receives **every click so far** and the previous low-res logits (IU
   L110-169); the next click reads logits > 0 (sigmoid > 0.5). A truth empty inside the patch
   gives an empty prediction and no click (IU L104-108).
4. Each round's patch mask is pasted back on the case grid by the nearest voxel (IU L275-353).
   Native metrics: ``sammed3d_dsc`` and ``sammed3d_nsd`` (1 mm) on the case grid (MU L11-136).

``sammed3d-2024`` (7B, paper-era @84079e6, VA = ``validation.py``, CM = ``utils/click_method.py``):
5 clicks (VA L34), seed 2023 (VA L43-50), CT clamped to [-1000, 1000] after the resampling (done
offline in the source) and before the normalisation (DL L51-52), clicks 1-2 by the ritm rule and then random (VA L249-250), both on the previous
**logits > 0.5** and without fallback (no error: the object stops, where the source crashes),
**only the newest click** sent with the previous low-res logits (VA L253-273); after every click
Dice and IoU on the crop rounded to 4 decimals (VA L274-283), reported as the best over clicks
(VA L378-382; ``sammed3d_best_dice``).

Where annosim cannot follow the source (README, "SAM-Med3D"): the source seeds once per case
(7A) or once per run (7B) and the classes of a case continue one stream, while each annosim
object starts its own ``RandomState(seed)`` (exact for the first class of a case); 7A pastes the
classes into one label map where later classes overwrite earlier ones, annosim scores each
class's own paste-back. ``sammed3d_nsd`` is DeepMind's surfel-area NSD at 1 mm, as the source's
metric code computes it. In ``fg-only`` the pasted prediction is kept on the object's slices only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from annosim.data.orientation import canonical_to_ras, ras_points_to_canonical, ras_to_canonical
from annosim.errors import ConfigError
from annosim.models.base import PatchSpec, SliceModel
from annosim.protocols.base import ModelTimer, Prompt, Protocol, RoundOutcome, frame_mask
from annosim.protocols.patch import PatchGeometry, znorm_positive
from annosim.protocols.sammed3d_rules import Click, random_click, ritm_click

CLICK_METHODS = ("random", "ritm")


@dataclass(frozen=True)
class SamMed3dParams:
    """Parameters of ``sammed3d`` (defaults: 7A's ``medim_val_dataset.py``).

    Attributes
    ----------
    clicks : int
        Clicks per object, one round each (``num_clicks`` = 1).
    click_method : str
        ``random`` (the default: a voxel of FN ∪ FP) or ``ritm`` (deeper than half the maximal EDT).
    seed : int
        ``RandomState`` seed of the draws (233).
    """

    clicks: int = 1
    click_method: str = "random"
    seed: int = 233

    def __post_init__(self) -> None:
        if self.clicks < 1:
            raise ValueError("clicks must be >= 1")
        if self.click_method not in CLICK_METHODS:
            raise ValueError(f"click_method must be one of {CLICK_METHODS}, got {self.click_method!r}")


@dataclass(frozen=True)
class SamMed3d2024Params:
    """Parameters of ``sammed3d-2024`` (defaults: 7B's ``validation.py``).

    Attributes
    ----------
    clicks : int
        Clicks per object (``num_clicks`` = 5), one round each.
    ritm_clicks : int
        Leading clicks by the ritm rule before the switch to random (2: ``num_click > 1``).
    seed : int
        ``RandomState`` seed (2023).
    clamp_ct : bool
        HU clamped to [-1000, 1000] after the resampling, before the normalisation (the loader
        does it for ``/ct_`` paths).
    newest_only : bool
        Only the newest click reaches the model (True); False sends every click so far.
    """

    clicks: int = 5
    ritm_clicks: int = 2
    seed: int = 2023
    clamp_ct: bool = True
    newest_only: bool = True

    def __post_init__(self) -> None:
        if self.clicks < 1 or self.ritm_clicks < 0:
            raise ValueError("clicks must be >= 1 and ritm_clicks >= 0")


def model_patch_spec(model: SliceModel) -> PatchSpec:
    """The model's :class:`PatchSpec`; ConfigError for a model that declares none."""
    spec = getattr(model, "patch_spec", None)
    if not isinstance(spec, PatchSpec):
        raise ConfigError(f"model {getattr(model, 'name', type(model).__name__)!r} declares no patch_spec "
                          "(a patch protocol needs a patch model)")
    return spec


class _PatchProtocol(Protocol):
    """The loop both variants share (module docstring); subclasses give the rules."""

    prompt_kinds = ("patch",)
    #: The case arrives canonical (Z, Y, X) and is reordered to RAS: no other orientation.
    orientation = "canonical"
    orientation_fixed = True
    #: Threshold on the logits for the mask the next click reads (7A: 0, 7B: 0.5).
    click_threshold: float = 0.0
    clamp: tuple[float, float] | None = None

    @property
    def requires(self) -> tuple[str, ...]:
        return ("set_patch", "predict_patch")

    @property
    def max_rounds(self) -> int:
        return int(self.params.clicks)

    def _click(self, k: int, pred: np.ndarray, gt: np.ndarray, rs: np.random.RandomState) -> Click | None:
        raise NotImplementedError

    def _sent(self, points: list[tuple[int, int, int]], labels: list[int]) -> tuple[list, list]:
        return points, labels

    def run_object(
        self, model: SliceModel, gt: np.ndarray, frames: np.ndarray | None, rng: np.random.Generator,
    ) -> Iterator[RoundOutcome]:
        spec = model_patch_spec(model)
        volume = getattr(model, "case_volume", None)
        spacing = getattr(model, "spacing", None)
        if volume is None or spacing is None:
            raise RuntimeError("set_volume must be called before a patch protocol runs")
        fm = frame_mask(gt.shape[0], frames)
        call = ModelTimer(model)
        ras_spacing = tuple(float(s) for s in spacing)[::-1]
        geo, gt_patch = PatchGeometry.around(canonical_to_ras(np.asarray(gt, dtype=bool)), ras_spacing,
                                             tuple(spec.spacing)[::-1], tuple(spec.size)[::-1])
        image = geo.image(canonical_to_ras(volume))
        if self.clamp is not None:  # 7B: the loader clamps data resampled offline (padding 0 stays 0)
            image = np.clip(image, *self.clamp)
        if spec.intensity == "zscore-positive":
            image = znorm_positive(image)
        call("set_patch", np.ascontiguousarray(ras_to_canonical(image)))
        rs = np.random.RandomState(int(self.params.seed))
        logits = np.zeros(gt_patch.shape, dtype=np.float32)
        low_res = None
        points: list[tuple[int, int, int]] = []
        labels: list[int] = []
        annotated: set[int] = set()
        for k in range(1, self.max_rounds + 1):
            prompts: list[Prompt] = []
            if not gt_patch.any():  # IU L104-108: empty truth in the crop -> empty output
                mask = np.zeros(gt_patch.shape, dtype=bool)
            else:
                click = self._click(k, logits > self.click_threshold, gt_patch, rs)
                if click is None:
                    return
                (pi, pj, pk), positive = click
                points.append((pi, pj, pk))
                labels.append(int(positive))
                sent_p, sent_l = self._sent(points, labels)
                zyx = ras_points_to_canonical(np.array(sent_p), geo.size)
                out = call("predict_patch", zyx, np.array(sent_l, dtype=np.int64), low_res)
                logits = np.ascontiguousarray(canonical_to_ras(np.asarray(out.logits, dtype=np.float32)))
                if logits.shape != gt_patch.shape:
                    raise ValueError(f"predict_patch returned logits {np.asarray(out.logits).shape}, "
                                     f"expected the patch shape {tuple(spec.size)}")
                low_res = out.low_res
                mask = logits > 0
                cz, cy, cx = ras_points_to_canonical(np.array([geo.case_point((pi, pj, pk))]), geo.shape)[0]
                annotated.add(int(cz))
                prompts.append(Prompt("point", int(cz), int(cy), int(cx), bool(positive)))
            pred = ras_to_canonical(geo.paste(mask)) & fm[:, None, None]
            yield RoundOutcome(k, np.ascontiguousarray(pred), prompts, len(annotated), len(points), call.lap(),
                               patch=(mask, gt_patch))


class SamMed3d(_PatchProtocol):
    """7A: current code (module docstring)."""

    name = "sammed3d"
    params_class = SamMed3dParams
    native_metrics = ("sammed3d_dsc", "sammed3d_nsd")
    native_headline = "sammed3d_dsc"
    params: SamMed3dParams

    def _click(self, k: int, pred: np.ndarray, gt: np.ndarray, rs: np.random.RandomState) -> Click | None:
        rule = ritm_click if self.params.click_method == "ritm" else random_click
        return rule(pred, gt, rs, fallback=True)


class SamMed3d2024(_PatchProtocol):
    """7B: paper-era code (module docstring)."""

    name = "sammed3d-2024"
    params_class = SamMed3d2024Params
    native_metrics = ("sammed3d_crop_dice", "sammed3d_crop_iou")
    native_object_metrics = ("sammed3d_best_dice", "sammed3d_best_iou")
    native_headline = "sammed3d_best_dice"
    click_threshold = 0.5
    params: SamMed3d2024Params

    def __init__(self, params: SamMed3d2024Params | None = None) -> None:
        super().__init__(params)
        self.clamp = (-1000.0, 1000.0) if self.params.clamp_ct else None

    def _click(self, k: int, pred: np.ndarray, gt: np.ndarray, rs: np.random.RandomState) -> Click | None:
        rule = ritm_click if k <= self.params.ritm_clicks else random_click
        return rule(pred, gt, rs, fallback=False)

    def _sent(self, points: list[tuple[int, int, int]], labels: list[int]) -> tuple[list, list]:
        return (points[-1:], labels[-1:]) if self.params.newest_only else (points, labels)
