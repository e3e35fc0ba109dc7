"""The protocol registry: one static table of built-in protocols, each a lazy ``module:Class``
target with a one-line summary, the ground-truth information it uses (every protocol is an
oracle in its own way) and its source.

Adding a protocol is one :class:`ProtocolEntry` in :data:`PROTOCOLS` and a module that defines
a :class:`annosim.protocols.base.Protocol` subclass.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from annosim.errors import ConfigError
from annosim.protocols.base import Protocol


@dataclass(frozen=True)
class ProtocolEntry:
    """One registered protocol: ``target`` is ``module:Class``; ``options`` are passed to the
    class's ``from_overrides`` beside the user's parameter overrides."""

    name: str
    target: str
    summary: str
    uses_gt: str
    source: str
    options: dict[str, Any] = field(default_factory=dict)

    def protocol_class(self) -> type[Protocol]:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def build(self, overrides: dict[str, Any]) -> Protocol:
        return self.protocol_class().from_overrides(overrides, **self.options)


PROTOCOLS: tuple[ProtocolEntry, ...] = (
    ProtocolEntry(
        "he2024", "annosim.protocols.he2024:He2024",
        "He et al. 2024 (paper text): click at the object's centre, up to 5 clicks in all on its "
        "slice, then up to 7 rounds of up to 3 clicks on the worst slice (truth or prediction "
        "present); best of 8 rounds.",
        "GT clicks (error regions), worst slice by GT Dice, best-of-rounds",
        "He et al. 2024, arXiv:2408.11210, section 2",
    ),
    ProtocolEntry(
        "he2024-vista", "annosim.protocols.he2024:He2024",
        "He et al. 2024 as the reference script ran it, click for click: its float32/torch.sort "
        "centres, 4 clicks with reset on the start slice, uint8 worst-slice ties, replacing "
        "clicks, JPEG frames as stored.",
        "GT clicks (error regions), worst slice by GT Dice, best-of-rounds",
        "Project-MONAI/VISTA val_multigpu_sam2_point_iterative.py",
        options={"variant": "vista"},
    ),
    ProtocolEntry(
        "ma2024-box", "annosim.protocols.ma2024:Ma2024Box",
        "Ma et al. 2024 as its code runs it: the 3D box's extent on slice z_min + n//2 through the one-shot 2D "
        "prediction, its mask prompts two independent passes (forward; reset; reverse) over the GT z extent only "
        "(both settings).",
        "GT z extent (the video, in both settings), GT 3D box",
        "Ma et al. 2024, arXiv:2408.03322; bowang-lab/MedSAM branch MedSAM2 (infer_SAM2_3D_npz.py)",
    ),
    ProtocolEntry(
        "ma2024-flare22", "annosim.protocols.ma_flare22:Ma2024Flare22",
        "Ma et al. 2024 FLARE22 script: every slice of the GT z extent predicted on its own (one-shot 2D) "
        "from a box with a 5 px margin, starting on the lower-middle slice with the largest slice box, "
        "then each slice from the box of its neighbour's prediction (1024 grid), up then down.",
        "GT z extent, GT slice boxes (the largest one as the seed)",
        "Ma et al. 2024, arXiv:2408.03322; bowang-lab/MedSAM branch MedSAM2 (infer_sam2_flare22.py)",
    ),
    ProtocolEntry(
        "shen2024-points", "annosim.protocols.shen2024:Shen2024Points",
        "Shen et al. 2024: video = slices with >256 GT px (last dropped), up to 5 deepest-point "
        "clicks on its frame N//2 (skipped if <=100 px), forward then unreset reverse pass.",
        "GT slice counts (video), FN/FP error regions of the frame N//2",
        "Shen et al. 2024, arXiv:2408.02635; github.com/Chuyun-Shen/SAM_2_Medical_3D",
    ),
    ProtocolEntry(
        "shen2024-mask", "annosim.protocols.shen2024:Shen2024Mask",
        "Shen et al. 2024: video = slices with >256 GT px (last dropped), the GT mask of its frame "
        "N//2, forward then unreset reverse pass.",
        "GT slice counts (video), GT mask of the frame N//2",
        "Shen et al. 2024, arXiv:2408.02635; github.com/Chuyun-Shen/SAM_2_Medical_3D",
    ),
    ProtocolEntry(
        "dong2024", "annosim.protocols.dong2024:Dong2024",
        "Dong et al. 2024: a point at the deepest pixel (5x5 chamfer) of the largest 8-connected "
        "component (or its box, or the mask) on the upper-median occupied slice; forward pass from "
        "frame 0 (or bidirectional=true).",
        "GT point/box/mask on one slice chosen from the occupied slices",
        "Dong et al. 2024, arXiv:2408.00756; mazurowski-lab/segment-anything2-medical-evaluation",
    ),
    ProtocolEntry(
        "dong2024-2d", "annosim.protocols.dong2024:Dong2024Slice2D",
        "Dong et al. 2024 2D: every slice with truth predicted on its own (one-shot 2D) from a "
        "point or box of its largest 8-connected component.",
        "GT point or box on every occupied slice",
        "Dong et al. 2024, arXiv:2408.00756; mazurowski-lab/segment-anything2-medical-evaluation",
    ),
    ProtocolEntry(
        "zhu2024", "annosim.protocols.zhu2024:Zhu2024",
        "Zhu et al. 2024 (Medical SAM 2): GT box (or random GT point) on frames 0, 2, 4, ... of the "
        "first quarter of the GT z-slab, empty-mask prompts where absent; one forward pass; only "
        "that quarter is scored.",
        "GT z-slab, GT boxes or points on every other slice of its first quarter",
        "Zhu et al. 2024 (Medical SAM 2), arXiv:2408.00874; MedicineToken/Medical-SAM2",
    ),
    ProtocolEntry(
        "cvpr25", "annosim.protocols.cvpr25:Cvpr25",
        "CVPR 2025 interactive 3D challenge: 3D box (z-extent crop + 2D box on the upper-median "
        "slice, random margin), then exactly 5 click rounds at the deepest voxel of the largest 3D "
        "error component (seeded tie draw); 6 rounds.",
        "z-extent crop, GT box, GT clicks (3D error components)",
        "CVPR25_iter_eval.py, JunMa11/CVPR-MedSegFMCompetition",
    ),
    ProtocolEntry(
        "radioactive-point-interpolation", "annosim.protocols.radioactive:RadioactivePointInterpolation",
        "RadioActive (MIC-DKFZ): a centre point on 5 linspace seed slices, linearly interpolated on every "
        "slice between them (one-shot 2D), then 5 refinements (contour-scribble negatives or "
        "FN-component positives, previous slice masks); stop on a perfect prediction.",
        "GT seed slices and centre points, GT error regions (FP/FN ratio, FP plane, FN component), "
        "stop on a GT match",
        "RadioActive benchmark (DKFZ), MIC-DKFZ/radioactive @1796386 (interactive_prompter.py, prompt_utils.py)",
    ),
    ProtocolEntry(
        "radioactive-box-interpolation", "annosim.protocols.radioactive:RadioactiveBoxInterpolation",
        "RadioActive: GT boxes on 3 linspace seed slices, corners linearly interpolated on every slice "
        "between them (one-shot 2D), then 5 point refinements as in radioactive-point-interpolation.",
        "GT seed slices and boxes, GT error regions, stop on a GT match",
        "RadioActive benchmark (DKFZ), MIC-DKFZ/radioactive @1796386 (interactive_prompter.py, prompt_utils.py)",
    ),
    ProtocolEntry(
        "radioactive-point-propagation", "annosim.protocols.radioactive:RadioactivePointPropagation",
        "RadioActive: 5 random GT points on the median slice, then the prediction's centre point moved "
        "slice by slice up and down until an empty prediction or the GT's end, then 5 refinements.",
        "GT median slice and points, GT z extent, GT error regions, stop on a GT match",
        "RadioActive benchmark (DKFZ), MIC-DKFZ/radioactive @1796386 (interactive_prompter.py, prompt_utils.py)",
    ),
    ProtocolEntry(
        "radioactive-one-point", "annosim.protocols.radioactive:RadioactiveOnePoint",
        "RadioActive: one random GT pixel on every GT slice (one-shot 2D), then 5 refinements.",
        "GT point on every occupied slice, GT error regions, stop on a GT match",
        "RadioActive benchmark (DKFZ), MIC-DKFZ/radioactive @1796386 (interactive_prompter.py, prompt_utils.py)",
    ),
    ProtocolEntry(
        "radioactive-3d-point", "annosim.protocols.radioactive3d:Radioactive3dPoint",
        "RadioActive 3D cropped prompter for patch models: one random GT voxel (seed 1), the 128^3 patch "
        "centred on it (nnU-Net resampling to 1.5 mm, percentile clip, z-norm), fixed; then 5 refinements, "
        "each one random misclassified voxel within +-64 of the first point (reseeded), previous low-res logits.",
        "GT voxel (initial point), GT error voxels around it (model space)",
        "RadioActive benchmark (DKFZ), MIC-DKFZ/radioactive @1796386 (interactive_prompter.py, prompt_3d.py, "
        "model/SAMMed3D.py)",
    ),
    ProtocolEntry(
        "radioactive-3d-center", "annosim.protocols.radioactive3d:Radioactive3dCenter",
        "RadioActive 3D cropped prompter from the centre: the middle point (by the 3rd model axis) of the "
        "point-interpolation line within 128^3 of its centroid; then the same patch and 5 refinements as "
        "radioactive-3d-point.",
        "GT seed slices and centre points (initial point), GT error voxels around it (model space)",
        "RadioActive benchmark (DKFZ), MIC-DKFZ/radioactive @1796386 (interactive_prompter.py, prompt_3d.py, "
        "model/SAMMed3D.py)",
    ),
    ProtocolEntry(
        "radioactive-3d-center-2dalgo", "annosim.protocols.radioactive3d:Radioactive3dCenter2dAlgo",
        "RadioActive 3D cropped prompter from the centre with the 2D refinement logic: the initial point and "
        "patch of radioactive-3d-center; each of 5 refinements draws negative or positive by |FP|/(|FN|+|FP|) "
        "(no guards), a contour-scribble negative on the worst axis-1 plane (fallback 5 FP voxels) or the "
        "largest FN component's slice centroids, one point kept at random.",
        "GT seed slices and centre points (initial point), GT error regions around it (model space)",
        "RadioActive benchmark (DKFZ), MIC-DKFZ/radioactive @1796386 (interactive_prompter.py L481-669, "
        "prompt_3d.py, utils/interactivity.py)",
    ),
    ProtocolEntry(
        "ritm-noc", "annosim.protocols.ritm:RitmNoc",
        "RITM NoC: one click per round at the deepest point of the larger error (ties negative) on "
        "annosim's worst slice until IoU 0.90 or 20 clicks (NoC@80/85/90 in IoU).",
        "GT clicks (deepest error), worst slice by GT Dice, stop at a GT IoU target",
        "Sofiiuk et al. 2022, arXiv:2102.06583; SamsungLabs/ritm_interactive_segmentation (clicker.py, "
        "evaluation.py)",
    ),
    ProtocolEntry(
        "sammed3d", "annosim.protocols.sammed3d:SamMed3d",
        "SAM-Med3D (current code) for patch models: 1.5 mm, RAS, the 128^3 patch centred on the label's box, "
        "z-norm over voxels > 0; 1 random FN/FP click (RandomState(233); click_method=ritm), every click and "
        "the low-res logits resent; pasted back, DSC/NSD@1mm on the case grid.",
        "GT box centre (the crop), GT clicks (random error voxel)",
        "uni-medical/SAM-Med3D @f3de1fa (medim_val_dataset.py, utils/infer_utils.py, utils/metric_utils.py)",
    ),
    ProtocolEntry(
        "sammed3d-2024", "annosim.protocols.sammed3d:SamMed3d2024",
        "SAM-Med3D paper-era code: the same patch (CT clamped to +-1000), 5 clicks (2 ritm, then random, on "
        "logits > 0.5; RandomState(2023)), only the newest click sent; crop Dice/IoU after each click, "
        "best of 5 reported.",
        "GT box centre (the crop), GT clicks (EDT/random error voxel), best-of-clicks",
        "uni-medical/SAM-Med3D @84079e6 (validation.py, utils/click_method.py, utils/data_loader.py)",
    ),
)
_BY_NAME = {e.name: e for e in PROTOCOLS}


def list_protocols() -> list[ProtocolEntry]:
    """Registered protocols in table order."""
    return list(PROTOCOLS)


def get_protocol(name: str, **overrides: Any) -> Protocol:
    """Build protocol ``name`` with parameter ``overrides`` (strings are converted)."""
    entry = _BY_NAME.get(name)
    if entry is None:
        raise ConfigError(f"unknown protocol {name!r}; known protocols: {', '.join(_BY_NAME)}")
    try:
        return entry.build(overrides)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"protocol {name!r}: {exc}") from None


def native_object_metrics(name: str) -> tuple[str, ...]:
    """The object-level native metrics protocol ``name`` lists (empty for an unknown name)."""
    entry = _BY_NAME.get(name)
    return tuple(entry.protocol_class().native_object_metrics) if entry is not None else ()


def native_headline(name: str) -> str:
    """The native headline metric protocol ``name`` declares (empty when none or unknown)."""
    entry = _BY_NAME.get(name)
    return str(entry.protocol_class().native_headline) if entry is not None else ""
