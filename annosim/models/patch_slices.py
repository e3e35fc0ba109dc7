"""3D points on a patch for a model of the slice API (README, "Patch models"):
:class:`SlicePatchMixin` lets ``classical``, SAM2, VISTA3D and nnInteractive run under the patch
protocols, each with its own preprocessing of the HU patch.

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
from typing import Any

import numpy as np

from annosim.models.base import PatchPrediction, PatchSpec


class SlicePatchMixin:
    """Patch API for a :class:`~annosim.models.base.SliceModelBase` subclass (module docstring).
    The class sets ``patch_spec``; a model whose ``set_volume`` mutates shared state in place
    overrides :meth:`_patch_twin`."""

    #: SAM-Med3D's patch in HU: the model applies its own intensity preprocessing.
    patch_spec: PatchSpec | None = PatchSpec((128, 128, 128), (1.5, 1.5, 1.5), "hu")

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
