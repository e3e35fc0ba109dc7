"""3D points on a patch for a model of the slice API (README, "Patch models"):
:class:`SlicePatchMixin` lets ``classical``, SAM2, VISTA3D and nnInteractive run under the patch
protocols, each with its own preprocessing of the HU patch. The patch is SAM-Med3D's (128^3 at 1.5 mm) unless
``--model-arg patch_size=N|Z,Y,X`` and ``patch_spacing=MM|SZ,SY,SX`` say otherwise
(:class:`SlicePatchArgs`, read by :meth:`SlicePatchMixin._take_patch_args`).

The patch becomes a volume of its own, given to a twin of the model (:meth:`_patch_twin`: a
shallow copy sharing the network, whose ``set_volume`` rebinds the per-case state on the copy
only, so the case the model holds is untouched). Each
:meth:`predict_patch` starts the twin's object afresh: on every slice ``z`` that holds a point,
the previous prediction's slice (``low_res``, when given) is the mask prompt and the points of
that slice are clicks ``(y, x)``; then ``propagate()``. The logits are +1 inside the
prediction and -1 outside, and the prediction itself is handed back as ``low_res``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from annosim.errors import ConfigError
from annosim.models.base import PatchPrediction, PatchSpec
from annosim.params import coerce_overrides

#: SAM-Med3D's patch, 128^3 at 1.5 mm (:class:`PatchSpec`'s defaults, ``medim_val_dataset.py``).
_SAMMED3D = PatchSpec()


@dataclass(frozen=True)
class SlicePatchArgs:
    """The patch of a slice model under the patch protocols (``--model-arg``; strings converted).

    Attributes
    ----------
    patch_size : int or 3 ints
        Voxels per axis ``(Z, Y, X)``, one value for all three (default 128).
    patch_spacing : float or 3 floats
        mm per voxel ``(Z, Y, X)``, one value for all three (default 1.5).
    """

    patch_size: tuple[int, ...] | int = _SAMMED3D.size
    patch_spacing: tuple[float, ...] | float = _SAMMED3D.spacing

    @classmethod
    def parse(cls, owner: str, **kwargs: Any) -> "SlicePatchArgs":
        """From keyword values (``"32"``, ``"64,64,32"``, ints, floats or sequences); a bad one
        is a one-line :class:`ConfigError` naming the argument and ``owner``."""
        args = cls(**coerce_overrides(cls, kwargs, owner))
        size, spacing = _three(args.patch_size), _three(args.patch_spacing)
        if size is None or any(not float(v).is_integer() or v < 1 for v in size):
            raise ConfigError(f"{owner}: patch_size must be 1 or 3 positive integers, got {kwargs.get('patch_size')!r}")
        if spacing is None or any(not (math.isfinite(v) and v > 0) for v in spacing):
            raise ConfigError(f"{owner}: patch_spacing must be 1 or 3 positive mm, got {kwargs.get('patch_spacing')!r}")
        return cls(tuple(int(v) for v in size), tuple(float(v) for v in spacing))

    def spec(self) -> PatchSpec:
        """The :class:`PatchSpec` (intensity ``hu``: the model preprocesses the patch itself)."""
        return PatchSpec(tuple(self.patch_size), tuple(self.patch_spacing), "hu")  # type: ignore[arg-type]


def _three(value: Any) -> tuple[float, ...] | None:
    """One number or a sequence of one or three -> three floats; ``None`` otherwise."""
    vals = list(value) if isinstance(value, (tuple, list)) else [value]
    try:
        out = tuple(float(v) for v in vals)
    except (TypeError, ValueError):
        return None
    return out * 3 if len(out) == 1 else out if len(out) == 3 else None


class SlicePatchMixin:
    """Patch API for a :class:`~annosim.models.base.SliceModelBase` subclass (module docstring).
    The class sets ``patch_spec``; a model whose ``set_volume`` mutates shared state in place
    overrides :meth:`_patch_twin`; its ``__init__`` passes its keyword arguments through
    :meth:`_take_patch_args`."""

    #: SAM-Med3D's patch in HU: the model applies its own intensity preprocessing.
    patch_spec: PatchSpec | None = SlicePatchArgs().spec()

    def _take_patch_args(self, kwargs: dict[str, Any], owner: str, keys: tuple[str, ...] = (
            "patch_size", "patch_spacing"), **given: Any) -> dict[str, Any]:
        """Set :attr:`patch_spec` from the ``keys`` of ``kwargs`` (and the values ``given``
        directly) by :meth:`SlicePatchArgs.parse`; returns the other keyword arguments."""
        rest = dict(kwargs)
        values = {k: rest.pop(k) for k in keys if k in rest}
        self.patch_spec = SlicePatchArgs.parse(owner, **values, **given).spec()
        return rest

    def patch_description(self) -> dict[str, Any]:
        """``{"patch": {"size": [Z, Y, X], "spacing": [sz, sy, sx]}}`` for ``describe()``."""
        spec = self.patch_spec
        assert spec is not None
        return {"patch": {"size": list(spec.size), "spacing": list(spec.spacing)}}

    def _patch_twin(self) -> Any:
        """A shallow copy of the model (the network shared), without the previous twin."""
        twin = copy.copy(self)
        twin._twin = None
        return twin

    def set_patch(self, patch: np.ndarray) -> None:
        """The object's patch, float32 ``(Z, Y, X)`` at ``patch_spec.spacing`` mm."""
        spec = self.patch_spec
        if spec is None:
            raise RuntimeError("set_patch needs a patch_spec")
        self._twin = None
        twin = self._patch_twin()
        twin.set_volume(np.asarray(patch, dtype=np.float32), tuple(float(s) for s in spec.spacing))
        self._twin = twin

    def predict_patch(self, points: np.ndarray, labels: np.ndarray,
                      low_res: np.ndarray | None = None) -> PatchPrediction:
        """Points int ``(K, 3)`` ``(z, y, x)``, labels ``(K,)``; ``low_res`` the previous
        prediction this returned (or ``None``). Logits float32 ``(Z, Y, X)``, +1 / -1."""
        twin = getattr(self, "_twin", None)
        if twin is None:
            raise RuntimeError("set_patch must be called before predict_patch")
        pts = np.asarray(points, dtype=np.int64).reshape(-1, 3)
        lab = np.asarray(labels, dtype=np.int64).reshape(-1)
        if lab.shape[0] != pts.shape[0]:
            raise ValueError(f"{pts.shape[0]} points but {lab.shape[0]} labels")
        twin.start_object(None)
        for z in np.unique(pts[:, 0]):
            on = pts[:, 0] == z
            if low_res is not None and twin.supports("add_mask"):
                prev = np.asarray(low_res)[int(z)] > 0
                if prev.any():
                    twin.add_mask(int(z), prev)
            twin.add_clicks(int(z), pts[on, 1:], lab[on])
        mask = np.asarray(twin.propagate(), dtype=bool)
        logits = np.where(mask, np.float32(1.0), np.float32(-1.0))
        return PatchPrediction(logits, logits.copy())
