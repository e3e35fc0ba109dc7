"""nnInteractive (MIC-DKFZ, PyPI ``nninteractive``) behind the plugin API: a native-3D model
driven by positive/negative points and 2D boxes.

Conventions (nnInteractive README, "Getting Started", and ``nnInteractiveInferenceSession``):
- The session works in voxel space of the array it is given, shaped ``(1, a, b, c)``; the README
  feeds ``SimpleITK.GetArrayFromImage(image)[None]``, i.e. axes ``(z, y, x)`` of an LPS-stored
  scan. annosim's canonical ``(Z, Y, X)`` volume (rows anterior -> posterior, columns right ->
  left, slices inferior -> superior) is that same array order, so the volume goes in as
  ``volume[None]`` and a click ``(z, y, x)`` is the session coordinate ``(z, y, x)`` unchanged.
  No resampling, no intensity change: the README forbids preprocessing (the session normalises
  with the image's own mean and standard deviation).
- A 2D box ``(y0, x0, y1, x1)`` (inclusive) on slice ``z`` is the half-open session box
  ``[[z, z + 1], [y0, y1 + 1], [x0, x1 + 1]]``.
- The checkpoint is a folder with ``plans.json``, ``dataset.json``, ``inference_info.json`` and one
  ``fold_*/checkpoint_final.pth`` (a dict with ``network_weights``, ``trainer_name`` and
  ``init_args["configuration"]``), loaded by ``initialize_from_trained_model_folder``. That
  function unpickles with ``weights_only=False``; this adapter first loads the file with
  ``weights_only=True`` (numpy scalars allowed) and refuses it if that fails.

Rounds for this native-3D model: every click (or box) triggers one session prediction that
updates the whole volume, as nnInteractive is meant to be used; ``propagate`` returns it.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from annosim.errors import ConfigError, InputError
from annosim.files import unloadable_checkpoint
from annosim.params import coerce_overrides
from annosim.models.base import SliceModelBase
from annosim.models.patch_slices import SlicePatchMixin

def _import_session_class() -> type:
    """``nnInteractiveInferenceSession``, or :class:`ConfigError` saying how to install it."""
    try:
        from nnInteractive.inference.inference_session import nnInteractiveInferenceSession
    except Exception as exc:  # ImportError, or a broken dependency raising something else
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ConfigError(
            f"nninteractive: the nnInteractive package cannot be imported ({type(exc).__name__}: {first}); "
            "install it: pip install 'annosim[nninteractive]'"
        ) from None
    return nnInteractiveInferenceSession


def _safe_numpy_globals() -> list[Any]:
    """numpy objects nnU-Net checkpoints may hold (scalars, small arrays), for weights_only loads."""
    items: list[Any] = [np.dtype, np.ndarray]
    core = getattr(np, "_core", None) or np.core  # numpy 2 / 1
    items += [core.multiarray.scalar, core.multiarray._reconstruct]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        items += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return items


def find_checkpoint_file(folder: Path, fold: int | str | None = None) -> Path:
    """The ``fold_*/checkpoint_final.pth`` the session will load (one fold folder unless ``fold``)."""
    for need in ("plans.json", "dataset.json"):
        if not (folder / need).is_file():
            raise InputError(folder, f"not an nnInteractive checkpoint folder: {need} missing")
    if fold is not None:
        fold_dirs = [folder / f"fold_{fold}"]
    else:
        fold_dirs = sorted(p for p in folder.glob("fold_*") if p.is_dir())
        if len(fold_dirs) != 1:
            raise InputError(
                folder, f"expected exactly one fold_* folder, found {len(fold_dirs)}; pass --model-arg fold=N"
            )
    ckpt = fold_dirs[0] / "checkpoint_final.pth"
    if not ckpt.is_file():
        raise InputError(ckpt, "checkpoint file not found")
    return ckpt


def check_weights_only(path: Path) -> None:
    """Load ``path`` with ``weights_only=True`` (plus numpy scalars); :class:`InputError` if unsafe."""
    try:
        with torch.serialization.safe_globals(_safe_numpy_globals()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise unloadable_checkpoint(path, exc, "fold_K/checkpoint_final.pth of an nnInteractive model folder, "
                                    "a torch.save dict with network_weights and trainer_name") from None
    if not isinstance(ckpt, dict) or "network_weights" not in ckpt or "trainer_name" not in ckpt:
        raise InputError(path, "not an nnInteractive checkpoint (network_weights/trainer_name missing)")


@dataclass(frozen=True)
class NNInteractiveOptions:
    """Options of :class:`NNInteractiveModel`, coerced from ``--model-arg`` strings by
    :func:`annosim.params.coerce_overrides` (:meth:`parse`).

    Attributes
    ----------
    checkpoint : str or Path
        The model folder (``plans.json``, ``dataset.json``, ``inference_info.json``,
        ``fold_0/checkpoint_final.pth``), e.g. what ``nninteractive-download`` stores under
        ``~/.nninteractive``. Required: annosim never downloads it.
    device : str, optional
        Torch device; default CUDA when available, else CPU.
    fold : int or str, optional
        Fold folder to use when the folder holds several.
    autozoom : bool
        nnInteractive's AutoZoom (default True, the package's default).
    verbose : bool
        Let the session print its progress (default False: its output is swallowed).
    """

    checkpoint: str | None = None
    device: str | None = None
    fold: int | str | None = None
    autozoom: bool = True
    verbose: bool = False

    @classmethod
    def parse(cls, **kwargs: Any) -> "NNInteractiveOptions":
        """The options from keyword values (strings converted); ConfigError on a bad one."""
        return cls(**coerce_overrides(cls, kwargs, "model 'nninteractive'"))


class NNInteractiveModel(SlicePatchMixin, SliceModelBase):
    """nnInteractive's ``nnInteractiveInferenceSession`` as a native-3D annosim model.

    Options: :class:`NNInteractiveOptions` (``--model-arg key=value``; ``patch_size`` and
    ``patch_spacing`` under the patch protocols). The patch twin shares the session, so the
    image the session holds has an owner: whoever prompts next gives the session its own
    volume again first (:meth:`_hold_session`).
    """

    name = "nninteractive"

    def __init__(self, **options: Any) -> None:
        super().__init__()
        o = NNInteractiveOptions.parse(**self._take_patch_args(options, "model 'nninteractive'"))
        self.options = o
        checkpoint, device, fold = o.checkpoint, o.device, o.fold
        session_cls = _import_session_class()
        if not checkpoint:
            raise ConfigError(
                "nninteractive: pass --checkpoint FOLDER (the model folder with plans.json and "
                "fold_0/checkpoint_final.pth, e.g. from nninteractive-download)"
            )
        self.checkpoint = Path(checkpoint).expanduser()
        if not self.checkpoint.is_dir():
            raise InputError(self.checkpoint, "nnInteractive checkpoint folder not found")
        self.verbose = o.verbose
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        ckpt_file = find_checkpoint_file(self.checkpoint, fold)
        check_weights_only(ckpt_file)
        with self._quiet():
            self.session = session_cls(
                device=self.device,
                use_torch_compile=False,
                verbose=self.verbose,
                torch_n_threads=torch.get_num_threads(),  # the session sets this process-wide
                do_autozoom=o.autozoom,
            )
            try:
                self.session.initialize_from_trained_model_folder(
                    str(self.checkpoint), use_fold=fold, checkpoint_name=ckpt_file.name
                )
            except (OSError, KeyError, RuntimeError, ValueError, AssertionError) as exc:
                first = str(exc).splitlines()[0] if str(exc) else ""
                raise InputError(
                    self.checkpoint, f"cannot load the nnInteractive model: {type(exc).__name__}: {first}"
                ) from None
        self.session.network.eval()
        self._target: torch.Tensor | None = None
        #: prompts of the current object in order: ("point", z, y, x, positive) or ("box", z, y0, x0, y1, x1)
        self._prompts: list[tuple[Any, ...]] = []
        self._started = False
        #: the token the session carries while it holds this model's volume
        self._holder = object()

    # -- bookkeeping ---------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "checkpoint": str(self.checkpoint),
            "device": str(self.device),
            "autozoom": bool(self.session.do_autozoom),
            "nninteractive_version": str(getattr(self.session, "INFERENCE_SESSION_VERSION", "?")),
            **self.patch_description(),
        }

    def _quiet(self) -> contextlib.AbstractContextManager:
        """Swallow the session's prints unless verbose."""
        return contextlib.nullcontext() if self.verbose else contextlib.redirect_stdout(io.StringIO())

    # -- case and object -------------------------------------------------------------------------------
    def set_volume(self, volume: np.ndarray, spacing: tuple[float, float, float]) -> None:
        """Give the session the HU volume as ``(1, Z, Y, X)`` float32 (no preprocessing)."""
        super().set_volume(volume, spacing)
        self._give_image()
        self._started = False

    def _give_image(self) -> None:
        """Hand the session this model's volume and a fresh target buffer; mark it the holder."""
        image = np.ascontiguousarray(self.case_volume, dtype=np.float32)[None]
        with self._quiet():
            self.session.set_image(image)
            self._target = torch.zeros(self.shape, dtype=torch.uint8)  # type: ignore[arg-type]
            self.session.set_target_buffer(self._target)
        self.session._annosim_holder = self._holder

    def _hold_session(self) -> None:
        """Give the session this model's volume again if a patch twin (or the case, for a twin)
        set another image since (the twin shares the session)."""
        if getattr(self.session, "_annosim_holder", None) is not self._holder:
            self._give_image()

    def _patch_twin(self) -> Any:
        """The mixin's twin with an owner token of its own (it shares the session)."""
        twin = super()._patch_twin()
        twin._holder = object()
        return twin

    def start_object(self, frames: np.ndarray | None = None) -> None:
        """Reset every interaction (and the prediction) of the session."""
        super().start_object(frames)
        self._hold_session()
        with self._quiet():
            self.session.reset_interactions()
        self._prompts = []
        self._started = True

    # -- prompts ---------------------------------------------------------------------------------------
    def add_clicks(
        self, z: int, points: np.ndarray, labels: np.ndarray, replace: bool = False
    ) -> np.ndarray:
        """Each click ``(y, x)`` on slice ``z`` becomes a session point ``(z, y, x)``, predicted
        one after the other. ``replace`` drops earlier clicks on ``z``: the session is reset and
        the remaining prompts are replayed in their order. Returns bool ``(Y, X)`` of slice ``z``."""
        self._require_started()
        pts = np.asarray(points, dtype=np.int64).reshape(-1, 2)
        labs = np.asarray(labels).reshape(-1)
        if pts.shape[0] != labs.shape[0]:
            raise ValueError("points and labels must have the same length")
        new = [("point", int(z), int(y), int(x), bool(lab)) for (y, x), lab in zip(pts, labs)]
        on_z = [p for p in self._prompts if p[0] == "point" and p[1] == int(z)]
        if replace and on_z:
            self._prompts = [p for p in self._prompts if p not in on_z]
            self._replay(self._prompts, reset=True)
        self._replay(new)
        self._prompts.extend(new)
        return self._current()[int(z)]

    def add_box(self, z: int, box: tuple[int, int, int, int]) -> np.ndarray:
        """Positive 2D box ``(y0, x0, y1, x1)`` inclusive on slice ``z``; returns slice ``z``."""
        self._require_started()
        y0, x0, y1, x1 = (int(v) for v in box)
        if y1 < y0 or x1 < x0:
            raise ValueError(f"box {box} has y1 < y0 or x1 < x0")
        prompt = ("box", int(z), y0, x0, y1, x1)
        self._replay([prompt])
        self._prompts.append(prompt)
        return self._current()[int(z)]

    def propagate(self) -> np.ndarray:
        """The session's current whole-volume prediction, bool ``(Z, Y, X)``, empty outside frames."""
        self._require_started()
        return self._current()

    # -- internals -------------------------------------------------------------------------------------
    def _require_started(self) -> None:
        if not self._started or self._target is None:
            raise RuntimeError("set_volume and start_object must be called before prompting")

    def _replay(self, prompts: list[tuple[Any, ...]], reset: bool = False) -> None:
        """Give ``prompts`` to the session in order, one prediction each (after a reset if asked).

        The session draws refinement boxes from numpy's global generator; it is seeded (0) for
        each prompt and restored afterwards, so a run is reproducible and leaves no trace.
        """
        saved = np.random.get_state()
        try:
            self._give(prompts, reset)
        finally:
            np.random.set_state(saved)

    def _give(self, prompts: list[tuple[Any, ...]], reset: bool) -> None:
        with self._quiet():
            if reset:
                self.session.reset_interactions()
            for kind, z, *rest in prompts:
                np.random.seed(0)
                if kind == "point":
                    y, x, positive = rest
                    self.session.add_point_interaction((z, y, x), include_interaction=positive)
                else:
                    y0, x0, y1, x1 = rest
                    self.session.add_bbox_interaction(
                        [[z, z + 1], [y0, y1 + 1], [x0, x1 + 1]], include_interaction=True
                    )

    def _current(self) -> np.ndarray:
        mask = self._target.numpy() > 0  # type: ignore[union-attr]
        outside = np.ones(mask.shape[0], dtype=bool)
        outside[self.frames] = False
        mask[outside] = False
        return mask


__all__ = ["NNInteractiveModel", "check_weights_only", "find_checkpoint_file"]
