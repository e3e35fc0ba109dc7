"""The model plugin API (the README's "Models and the plugin API").

A model is any object with the methods of :class:`SliceModel`. Built-in models subclass
:class:`SliceModelBase`, which declares every optional hook with its documented default and the
bookkeeping every adapter needs (the frames of the current object, their ordering). A plugin that
subclasses nothing is wrapped in :class:`PluginModel` when it is loaded, so the engine always
talks to a :class:`SliceModelBase` and never asks whether a hook exists.

Optional hooks and their defaults:

========================  ==========================================================================
``add_box``               raises NotImplementedError (the model takes no boxes)
``add_mask``              raises NotImplementedError (no mask prompts)
``predict_slice``         raises NotImplementedError (no one-shot 2D prediction)
``predict_slice_masked``  raises NotImplementedError (no one-shot 2D prediction with a mask prompt)
``propagate_pass``        :meth:`propagate` restricted to the frames one pass visits (a model without
                          pass-level control, e.g. a native 3D model)
``set_target``            no-op: the label value and name of the object about to start
``configure_protocol``    no-op: hints of the protocol about to run (e.g. ``frame_codec="jpeg"``)
``release_case``          no-op: free the previous case's state before the next memory check
``estimate_memory``       ``None``: annosim's default estimate (:mod:`annosim.memory`)
``describe``              ``{"name": name}``: recorded in run.json
``prompt_free``           ``False``; True makes every protocol one round of ``propagate()``
``patch_spec``            ``None``; a :class:`PatchSpec` makes the model a patch model (below)
``set_patch``             raises NotImplementedError (no patch input)
``predict_patch``         raises NotImplementedError (no 3D points on a patch)
========================  ==========================================================================

Patch models (SAM-Med3D and the like) see a fixed crop. The model declares its
:class:`PatchSpec` (patch size, spacing, intensity scaling); a patch protocol
(:mod:`annosim.protocols.patch`) resamples, reorients, crops, normalises and pastes the
prediction back, once for every such model. Per object it calls :meth:`set_patch` once (the image
encoder runs there) and :meth:`predict_patch` once per click with 3D points ``(z, y, x)`` in the
patch and the previous low-resolution logits the model returned (``None`` at first).

A protocol declares the methods it calls (:attr:`annosim.protocols.base.Protocol.requires`); a
run refuses, before reading any case, a model that does not implement one (:meth:`supports`).

Conventions: volumes are ``(Z, Y, X)`` float32 HU, spacing is ``(sz, sy, sx)`` in mm, points are
integer ``(y, x)`` on slice ``z`` (axis 0 index of the volume), masks are boolean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

#: Intensity scalings a patch model may ask for (:attr:`PatchSpec.intensity`).
PATCH_INTENSITIES = ("zscore-positive", "hu")


@dataclass(frozen=True)
class PatchSpec:
    """What a patch model declares.

    Attributes
    ----------
    size : tuple of 3 ints
        Patch shape ``(Z, Y, X)`` in voxels (SAM-Med3D: 128^3).
    spacing : tuple of 3 floats
        Voxel size ``(sz, sy, sx)`` in mm the case is resampled to (SAM-Med3D: 1.5 isotropic).
    intensity : str
        ``zscore-positive``: HU z-normalised with the mean and standard deviation (ddof 1, as
        torch) of the voxels > 0 (torchio ``ZNormalization(masking_method=x > 0)``); ``hu``: HU
        as they are (a model with its own preprocessing).
    """

    size: tuple[int, int, int] = (128, 128, 128)
    spacing: tuple[float, float, float] = (1.5, 1.5, 1.5)
    intensity: str = "zscore-positive"

    def __post_init__(self) -> None:
        if len(self.size) != 3 or min(int(s) for s in self.size) < 1:
            raise ValueError(f"patch size must be 3 positive ints, got {self.size}")
        if len(self.spacing) != 3 or not all(float(s) > 0 and np.isfinite(float(s)) for s in self.spacing):
            raise ValueError(f"patch spacing must be 3 positive mm values, got {self.spacing}")
        if self.intensity not in PATCH_INTENSITIES:
            raise ValueError(f"patch intensity must be one of {PATCH_INTENSITIES}, got {self.intensity!r}")


@dataclass
class PatchPrediction:
    """What :meth:`SliceModelBase.predict_patch` returns.

    ``logits``: float32 ``(Z, Y, X)`` of the patch's shape, > 0 where the model predicts the
    object (sigmoid > 0.5); ``low_res``: the model's low-resolution logits (any shape, e.g.
    SAM-Med3D's 32^3), handed back unchanged with the next click (``None``: the model keeps none).
    """

    logits: np.ndarray
    low_res: np.ndarray | None = None


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
        self.case_volume: np.ndarray | None = None
        self.frames: np.ndarray = np.zeros(0, dtype=np.int64)

    # -- case and object -------------------------------------------------------------------
    def set_volume(self, volume: np.ndarray, spacing: tuple[float, float, float]) -> None:
        if volume.ndim != 3:
            raise ValueError(f"volume must be (Z, Y, X), got shape {volume.shape}")
        self.shape = tuple(int(s) for s in volume.shape)  # type: ignore[assignment]
        self.spacing = tuple(float(s) for s in spacing)  # type: ignore[assignment]
        self.case_volume = volume  # a reference (no copy): what a patch protocol crops from

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

    def predict_slice(
        self, z: int, points: np.ndarray | None = None, labels: np.ndarray | None = None,
        box: tuple[int, int, int, int] | None = None,
    ) -> np.ndarray:
        """One-shot bool ``(Y, X)`` prediction of slice ``z`` that leaves the object's prompts
        untouched (points (K, 2) ``(y, x)``, labels (K,), box ``(y0, x0, y1, x1)`` inclusive)."""
        raise NotImplementedError(f"model {self.name!r} has no one-shot 2D prediction")

    def predict_slice_masked(
        self, z: int, mask: np.ndarray, points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
    ) -> np.ndarray:
        """One-shot bool ``(Y, X)`` prediction of slice ``z`` like :meth:`predict_slice`, with
        ``mask`` (bool ``(Y, X)``, the slice's previous prediction) as a mask prompt beside the
        clicks (points (K, 2) ``(y, x)``, labels (K,)); the object's prompts stay untouched."""
        raise NotImplementedError(f"model {self.name!r} has no one-shot 2D prediction with a mask prompt")

    def propagate_pass(self, start: int, reverse: bool = False) -> np.ndarray:
        """One propagation pass from slice ``start`` (a frame), forward (increasing z) or
        ``reverse``, from every prompt so far; bool ``(Z, Y, X)``, empty outside the frames the
        pass visits (``frames >= start``, or ``<= start`` when ``reverse``). Prompts and state
        are kept, so a second pass continues from the first (as ``propagate_in_video`` with
        ``start_frame_idx`` does). Default: :meth:`propagate` restricted to those frames."""
        pred = np.asarray(self.propagate(), dtype=bool)
        z = np.arange(pred.shape[0])
        keep = (z <= start) if reverse else (z >= start)
        frames = getattr(self, "frames", None)
        if frames is not None and len(frames):
            keep &= np.isin(z, frames)
        return pred & keep[:, None, None]

    # -- patch models ---------------------------------------------------------------------------
    #: A patch model's declaration (patch size, spacing, intensity); ``None`` for other models.
    patch_spec: PatchSpec | None = None

    def set_patch(self, patch: np.ndarray) -> None:
        """The object's patch: float32 ``(Z, Y, X)`` of ``patch_spec.size``, canonical axes,
        scaled as ``patch_spec.intensity`` says. Once per object (image encoder here)."""
        raise NotImplementedError(f"model {self.name!r} takes no 3D patch")

    def predict_patch(
        self, points: np.ndarray, labels: np.ndarray, low_res: np.ndarray | None = None,
    ) -> PatchPrediction:
        """Predict the patch from ``points`` int ``(K, 3)`` ``(z, y, x)`` patch indices with
        ``labels`` ``(K,)`` 1/0 (exactly the points the protocol sends this time) and the
        previous call's ``low_res`` logits (``None`` at the first click)."""
        raise NotImplementedError(f"model {self.name!r} takes no 3D points on a patch")

    # -- hooks ---------------------------------------------------------------------------------
    #: True for a model that segments without prompts (every protocol becomes one round).
    prompt_free: bool = False

    def set_target(self, label: int, name: str) -> None:
        """The object about to start: its label value and name (e.g. VISTA3D's class); no-op."""

    def configure_protocol(self, **options: Any) -> None:
        """Protocol hints, e.g. ``frame_codec="jpeg"`` for ``he2024-vista``; ignored by default."""

    def release_case(self) -> None:
        """Free the previous case's state (feature caches...) before the next case; no-op."""

    def estimate_memory(self, shape: tuple[int, int, int]) -> int | None:
        """Bytes of model state for a ``(Z, Y, X)`` case; ``None``: annosim's default estimate."""
        return None

    def describe(self) -> dict[str, Any]:
        """Parameters recorded in run.json (override to add checkpoint, config...)."""
        return {"name": self.name}

    def supports(self, method: str) -> bool:
        """Whether the model implements the optional prompt method ``method`` (``add_box``...)."""
        impl = getattr(type(self), method, None)
        return impl is not None and impl is not getattr(SliceModelBase, method, None)

    def frame_position(self, z: int) -> int:
        """Index of slice ``z`` within :attr:`frames`; ``ValueError`` if not a frame."""
        i = int(np.searchsorted(self.frames, z))
        if i >= self.frames.size or self.frames[i] != z:
            raise ValueError(f"slice {z} is not one of this object's frames")
        return i


_DELEGATED = ("set_volume", "start_object", "add_clicks", "propagate")
_OPTIONAL = ("add_box", "add_mask", "predict_slice", "predict_slice_masked", "propagate_pass", "set_target",
             "configure_protocol", "release_case", "estimate_memory", "describe", "set_patch", "predict_patch")


class PluginModel(SliceModelBase):
    """A plugin object that does not subclass :class:`SliceModelBase`, with the base's defaults
    for the hooks it lacks. Other attributes (``device``, ``name``...) are read from the plugin."""

    def __init__(self, plugin: Any) -> None:
        missing = [m for m in _DELEGATED if not callable(getattr(plugin, m, None))]
        if missing:
            raise TypeError(f"lacks the plugin method(s) {', '.join(missing)}")
        self.plugin = plugin
        self.name = str(getattr(plugin, "name", type(plugin).__name__))
        self.prompt_free = bool(getattr(plugin, "prompt_free", False))
        self.patch_spec = getattr(plugin, "patch_spec", None)
        self.case_volume = None
        self.spacing = None

    def __getattr__(self, attr: str) -> Any:  # only called for attributes not found here
        if attr == "plugin":
            raise AttributeError(attr)
        return getattr(self.plugin, attr)

    def set_volume(self, volume: np.ndarray, spacing: tuple[float, float, float]) -> None:
        self.plugin.set_volume(volume, spacing)
        self.case_volume, self.spacing = volume, tuple(float(s) for s in spacing)

    def start_object(self, frames: np.ndarray | None = None) -> None:
        self.plugin.start_object(frames)

    def add_clicks(self, z: int, points: np.ndarray, labels: np.ndarray, replace: bool = False) -> np.ndarray:
        return self.plugin.add_clicks(z, points, labels, replace=replace)

    def propagate(self) -> np.ndarray:
        return self.plugin.propagate()

    def supports(self, method: str) -> bool:
        return callable(getattr(self.plugin, method, None))

    def _own(self, method: str) -> Any:
        return getattr(self.plugin, method, None) if callable(getattr(self.plugin, method, None)) else None

    def add_box(self, z: int, box: tuple[int, int, int, int]) -> np.ndarray:
        own = self._own("add_box")
        return own(z, box) if own else super().add_box(z, box)

    def add_mask(self, z: int, mask: np.ndarray) -> np.ndarray:
        own = self._own("add_mask")
        return own(z, mask) if own else super().add_mask(z, mask)

    def predict_slice(self, z: int, points: Any = None, labels: Any = None, box: Any = None) -> np.ndarray:
        own = self._own("predict_slice")
        return own(z, points=points, labels=labels, box=box) if own else super().predict_slice(z, points, labels, box)

    def predict_slice_masked(self, z: int, mask: np.ndarray, points: Any = None, labels: Any = None) -> np.ndarray:
        own = self._own("predict_slice_masked")
        if own:
            return own(z, mask, points=points, labels=labels)
        return super().predict_slice_masked(z, mask, points, labels)

    def propagate_pass(self, start: int, reverse: bool = False) -> np.ndarray:
        own = self._own("propagate_pass")
        return own(start, reverse=reverse) if own else super().propagate_pass(start, reverse)

    def set_patch(self, patch: np.ndarray) -> None:
        own = self._own("set_patch")
        return own(patch) if own else super().set_patch(patch)

    def predict_patch(self, points: np.ndarray, labels: np.ndarray, low_res: Any = None) -> PatchPrediction:
        own = self._own("predict_patch")
        return own(points, labels, low_res) if own else super().predict_patch(points, labels, low_res)

    def set_target(self, label: int, name: str) -> None:
        own = self._own("set_target")
        if own:
            own(label, name)

    def configure_protocol(self, **options: Any) -> None:
        own = self._own("configure_protocol")
        if own:
            own(**options)

    def release_case(self) -> None:
        own = self._own("release_case")
        if own:
            own()

    def estimate_memory(self, shape: tuple[int, int, int]) -> int | None:
        own = self._own("estimate_memory")
        return own(shape) if own else None

    def describe(self) -> dict[str, Any]:
        own = self._own("describe")
        return dict(own()) if own else {"class": type(self.plugin).__qualname__}


def as_model(obj: Any) -> SliceModelBase:
    """``obj`` itself when it subclasses :class:`SliceModelBase`, else wrapped in :class:`PluginModel`."""
    return obj if isinstance(obj, SliceModelBase) else PluginModel(obj)
