"""The model plugin API (DESIGN section 3, Contract).

A model is any object with the methods of :class:`SliceModel`. Built-in models subclass
:class:`SliceModelBase`, which provides the optional methods as ``NotImplementedError`` and the
bookkeeping every adapter needs (the frames of the current object, their ordering).

Conventions: volumes are ``(Z, Y, X)`` float32 HU, spacing is ``(sz, sy, sx)`` in mm, points are
integer ``(y, x)`` on slice ``z`` (axis 0 index of the volume), masks are boolean.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class SliceModel(Protocol):
    """What the protocol engine calls. Plugins need not subclass anything."""

    def set_volume(self, volume: np.ndarray, spacing: tuple[float, float, float]) -> None:
        """Receive the case: ``volume`` float32 HU ``(Z, Y, X)``, ``spacing`` (sz, sy, sx) mm."""

    def start_object(self, frames: np.ndarray | None = None) -> None:
        """Forget all prompts; ``frames`` = increasing slice indices of this object's video."""

    def add_clicks(
        self, z: int, points: np.ndarray, labels: np.ndarray, replace: bool = False
    ) -> np.ndarray:
        """Add clicks ``points`` (K, 2) ``(y, x)`` with ``labels`` (K,) 1/0 on slice ``z``.

        Returns the bool ``(Y, X)`` prediction of slice ``z`` given every click on it so far
        (only these ones when ``replace``).
        """

    def propagate(self) -> np.ndarray:
        """Return the bool ``(Z, Y, X)`` prediction from every prompt so far."""


class SliceModelBase:
    """Convenience base class for models: optional methods and frame bookkeeping.

    Subclasses implement :meth:`set_volume`, :meth:`add_clicks` and :meth:`propagate`; they
    call ``super().set_volume`` and ``super().start_object`` to keep :attr:`shape` and
    :attr:`frames` up to date.
    """

    #: Registry name, written into run.json.
    name: str = "model"

    def __init__(self) -> None:
        self.shape: tuple[int, int, int] | None = None
        self.spacing: tuple[float, float, float] | None = None
        self.frames: np.ndarray = np.zeros(0, dtype=np.int64)

    # -- case and object -------------------------------------------------------------------
    def set_volume(self, volume: np.ndarray, spacing: tuple[float, float, float]) -> None:
        if volume.ndim != 3:
            raise ValueError(f"volume must be (Z, Y, X), got shape {volume.shape}")
        self.shape = tuple(int(s) for s in volume.shape)  # type: ignore[assignment]
        self.spacing = tuple(float(s) for s in spacing)  # type: ignore[assignment]

    def start_object(self, frames: np.ndarray | None = None) -> None:
        if self.shape is None:
            raise RuntimeError("set_volume must be called before start_object")
        if frames is None:
            self.frames = np.arange(self.shape[0], dtype=np.int64)
        else:
            frames = np.asarray(frames, dtype=np.int64)
            if frames.ndim != 1 or frames.size == 0 or np.any(np.diff(frames) <= 0):
                raise ValueError("frames must be a non-empty increasing 1D array of slice indices")
            if frames[0] < 0 or frames[-1] >= self.shape[0]:
                raise ValueError("frames out of range")
            self.frames = frames

    # -- prompts -----------------------------------------------------------------------------
    def add_clicks(
        self, z: int, points: np.ndarray, labels: np.ndarray, replace: bool = False
    ) -> np.ndarray:
        raise NotImplementedError

    def add_box(self, z: int, box: tuple[int, int, int, int]) -> np.ndarray:
        """Box ``(y0, x0, y1, x1)`` inclusive on slice ``z``; returns bool ``(Y, X)``."""
        raise NotImplementedError(f"model {self.name!r} does not accept boxes")

    def add_mask(self, z: int, mask: np.ndarray) -> np.ndarray:
        """Mask prompt bool ``(Y, X)`` on slice ``z``; returns bool ``(Y, X)``."""
        raise NotImplementedError(f"model {self.name!r} does not accept mask prompts")

    def propagate(self) -> np.ndarray:
        raise NotImplementedError

    # -- bookkeeping ---------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Parameters recorded in run.json (override to add checkpoint, config...)."""
        return {"name": self.name}

    def configure_protocol(self, **options: Any) -> None:
        """Protocol hints, e.g. ``frame_codec="jpeg"`` for ``he2024-vista``; ignored by default."""

    def frame_position(self, z: int) -> int:
        """Index of slice ``z`` within :attr:`frames`; ``ValueError`` if not a frame."""
        i = int(np.searchsorted(self.frames, z))
        if i >= self.frames.size or self.frames[i] != z:
            raise ValueError(f"slice {z} is not one of this object's frames")
        return i
