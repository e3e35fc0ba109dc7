"""A scripted model for protocol tests: predictions are fixed functions of the prompts."""

from __future__ import annotations

from typing import Callable

import numpy as np

from annosim.models.base import SliceModelBase


class ScriptedModel(SliceModelBase):
    """Records every call; ``slice_fn(model, z)`` gives add_clicks' answer and
    ``volume_fn(model)`` gives propagate's. Defaults: empty slice, empty volume."""

    name = "scripted"

    def __init__(
        self,
        slice_fn: Callable[["ScriptedModel", int], np.ndarray] | None = None,
        volume_fn: Callable[["ScriptedModel"], np.ndarray] | None = None,
    ) -> None:
        super().__init__()
        self.slice_fn = slice_fn
        self.volume_fn = volume_fn
        self.calls: list[tuple] = []
        self.clicks: dict[int, list[tuple[int, int, int]]] = {}
        self.n_propagate = 0

    def start_object(self, frames=None):
        super().start_object(frames)
        self.calls.append(("start_object", None if frames is None else tuple(int(f) for f in frames)))
        self.clicks = {}

    def add_clicks(self, z, points, labels, replace=False):
        pts = [(int(y), int(x), int(lab)) for (y, x), lab in zip(np.asarray(points), np.asarray(labels))]
        self.calls.append(("add_clicks", int(z), pts, bool(replace)))
        self.clicks[int(z)] = pts if replace else self.clicks.get(int(z), []) + pts
        if self.slice_fn is None:
            return np.zeros(self.shape[1:], dtype=bool)
        return np.asarray(self.slice_fn(self, int(z)), dtype=bool)

    def propagate(self):
        self.n_propagate += 1
        self.calls.append(("propagate",))
        if self.volume_fn is None:
            return np.zeros(self.shape, dtype=bool)
        return np.asarray(self.volume_fn(self), dtype=bool)

    def click_calls(self):
        return [c for c in self.calls if c[0] == "add_clicks"]
