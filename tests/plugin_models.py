"""Plugin models defined in the tests folder, loaded with ``--model tests/plugin_models.py:Class``.

``ThresholdGrow`` is a small deterministic interactive model: a positive click grows the
connected region of pixels whose HU lies within ``tolerance`` of the clicked pixel's HU; a
negative click removes the region that holds it; propagation carries the mask slice to slice
(SAM2's order), keeping on each slice the in-range component that overlaps the previous mask.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import ndimage

from annosim.models.base import SliceModelBase


class ThresholdGrow(SliceModelBase):
    name = "threshold-grow"

    def __init__(self, tolerance: str | float = 60.0, delay: str | float = 0.0) -> None:
        super().__init__()
        self.tolerance = float(tolerance)
        self.delay = float(delay)
        self.volume: np.ndarray | None = None
        self.prompted: dict[int, np.ndarray] = {}
        self.clicks: dict[int, list[tuple[int, int, int]]] = {}

    def set_volume(self, volume, spacing):
        super().set_volume(volume, spacing)
        self.volume = np.asarray(volume, dtype=np.float32)

    def start_object(self, frames=None):
        super().start_object(frames)
        self.prompted, self.clicks = {}, {}

    def _segment(self, z: int) -> np.ndarray:
        img = self.volume[z]
        mask = np.zeros(img.shape, bool)
        for y, x, lab in self.clicks[z]:
            inrange = np.abs(img - img[y, x]) <= self.tolerance
            comps, _ = ndimage.label(inrange)
            region = comps == comps[y, x]
            mask = (mask | region) if lab else (mask & ~region)
        return mask

    def add_clicks(self, z, points, labels, replace=False):
        new = [(int(y), int(x), int(l)) for (y, x), l in zip(np.asarray(points), np.asarray(labels))]
        self.clicks[z] = new if replace else self.clicks.get(z, []) + new
        self.prompted[z] = self._segment(z)
        return self.prompted[z]

    def propagate(self):
        time.sleep(self.delay)
        out = np.zeros(self.shape, bool)
        if not self.prompted:
            return out
        frames = list(self.frames)
        start = frames.index(min(self.prompted))
        for order in (frames[start:], frames[: start + 1][::-1]):
            prev = None
            for z in order:
                if z in self.prompted:
                    cur = self.prompted[z]
                elif prev is None or not prev.any():
                    cur = np.zeros(self.shape[1:], bool)
                else:
                    ref = float(np.median(self.volume[prev_z][prev]))
                    comps, _ = ndimage.label(np.abs(self.volume[z] - ref) <= self.tolerance)
                    keep = np.unique(comps[prev & (comps > 0)])
                    cur = np.isin(comps, keep[keep > 0])
                    if cur.sum() > 2 * prev.sum() + 50:
                        cur = np.zeros_like(cur)  # leak: stop
                out[z] = cur
                prev, prev_z = cur, z
        return out


class InterruptAfter(ThresholdGrow):
    """ThresholdGrow that raises KeyboardInterrupt (as Ctrl-C does) in its ``after``-th
    propagation of the process, counting from 1 (``after=0``: when it is built)."""

    name = "interrupt-after"
    calls = 0

    def __init__(self, after: str | int = 2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.after = int(after)
        if self.after == 0:  # Ctrl-C while the model loads
            raise KeyboardInterrupt

    def propagate(self):
        InterruptAfter.calls += 1
        if InterruptAfter.calls == self.after:
            raise KeyboardInterrupt
        return super().propagate()
