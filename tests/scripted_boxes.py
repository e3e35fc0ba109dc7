"""ScriptedModel with box and mask prompts recorded (for the published protocols' rule tests)."""

from __future__ import annotations

import numpy as np

from scripted import ScriptedModel


class ScriptedBoxModel(ScriptedModel):
    """Also records ``add_box`` (``("add_box", z, box)``) and ``add_mask``
    (``("add_mask", z, mask)``) calls; both answer with ``slice_fn`` like ``add_clicks``."""

    def add_box(self, z, box):
        self.calls.append(("add_box", int(z), tuple(int(v) for v in box)))
        return self._slice(int(z))

    def add_mask(self, z, mask):
        self.calls.append(("add_mask", int(z), np.asarray(mask, dtype=bool).copy()))
        return self._slice(int(z))

    def _slice(self, z):
        if self.slice_fn is None:
            return np.zeros(self.shape[1:], dtype=bool)
        return np.asarray(self.slice_fn(self, z), dtype=bool)

    def calls_of(self, kind):
        return [c for c in self.calls if c[0] == kind]

    def kinds(self):
        return [c[0] for c in self.calls]
