"""Registers the published protocols reviewed by He et al. 2024 (and two interactive-benchmark
protocols) with :mod:`annosim.protocols.registry`; imported by the registry on first use."""

from __future__ import annotations

from typing import Any, Callable

from annosim.params import coerce_overrides
from annosim.protocols.base import Protocol
from annosim.protocols.cvpr25 import Cvpr25, Cvpr25Params
from annosim.protocols.dong2024 import Dong2024, Dong2024Params
from annosim.protocols.ma2024 import Ma2024Box, Ma2024Params
from annosim.protocols.registry import ProtocolInfo, register
from annosim.protocols.ritm import RitmNoc, RitmParams
from annosim.protocols.shen2024 import (
    Shen2024Mask,
    Shen2024MaskParams,
    Shen2024Points,
    Shen2024PointsParams,
)
from annosim.protocols.zhu2024 import Zhu2024, Zhu2024Params


def _factory(cls: type[Protocol], params: type) -> Callable[..., Protocol]:
    def build(**overrides: Any) -> Protocol:
        return cls(params(**coerce_overrides(params, overrides)))  # type: ignore[call-arg]

    return build


_ENTRIES = (
    ProtocolInfo(
        "ma2024-box",
        _factory(Ma2024Box, Ma2024Params),
        "Ma et al. 2024: one GT-tight box on the object's middle slice, one propagation.",
        "GT box on the middle slice of the GT z extent",
        "Ma et al. 2024, arXiv:2408.03322 (reviewed in He et al. 2024)",
    ),
    ProtocolInfo(
        "shen2024-points",
        _factory(Shen2024Points, Shen2024PointsParams),
        "Shen et al. 2024: up to 5 iterative clicks on the centre slice (he2024 initial-slice "
        "rule), one propagation.",
        "GT clicks (error regions) on the GT-centre slice",
        "Shen et al. 2024, arXiv:2408.02635 (reviewed in He et al. 2024)",
    ),
    ProtocolInfo(
        "shen2024-mask",
        _factory(Shen2024Mask, Shen2024MaskParams),
        "Shen et al. 2024: the GT mask of the centre slice as the prompt, one propagation.",
        "GT mask of the GT-centre slice",
        "Shen et al. 2024, arXiv:2408.02635 (reviewed in He et al. 2024)",
    ),
    ProtocolInfo(
        "dong2024",
        _factory(Dong2024, Dong2024Params),
        "Dong et al. 2024: a point at the deepest pixel of the largest 2D component (or a box, "
        "or the mask) on 1, 3 evenly spaced, or all slices; one propagation.",
        "GT points/boxes/masks on slices chosen from the GT z extent",
        "Dong et al. 2024, arXiv:2408.00756 (reviewed in He et al. 2024)",
    ),
    ProtocolInfo(
        "zhu2024",
        _factory(Zhu2024, Zhu2024Params),
        "Zhu et al. 2024: each GT slice prompted with probability 0.25 (GT box or random GT "
        "point); one propagation.",
        "GT boxes or points on randomly drawn GT slices",
        "Zhu et al. 2024 (Medical SAM 2), arXiv:2408.00874 (reviewed in He et al. 2024)",
    ),
    ProtocolInfo(
        "cvpr25",
        _factory(Cvpr25, Cvpr25Params),
        "CVPR 2025 interactive 3D challenge: 3D box (z-extent crop + middle-slice 2D box), then "
        "5 clicks at the deepest voxel of the largest 3D error component; 6 rounds.",
        "z-extent crop, GT box, GT clicks (3D error components)",
        "CVPR25_iter_eval.py, JunMa11/CVPR-MedSegFMCompetition",
    ),
    ProtocolInfo(
        "ritm-noc",
        _factory(RitmNoc, RitmParams),
        "RITM-style NoC: one click per round at the deepest point of the larger error on the "
        "worst slice until Dice 0.90 or 20 clicks (NoC@85/@90).",
        "GT clicks (deepest error), worst slice by GT Dice, stop at a GT Dice target",
        "Sofiiuk et al. 2022, arXiv:2102.06583 (RITM clicker)",
    ),
)

for _info in _ENTRIES:
    register(_info)
