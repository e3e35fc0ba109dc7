"""VISTA3D (MONAI) behind the plugin API: a native-3D model with point, automatic and
automatic-plus-point modes (He et al. 2024, Table 1).

Where each convention comes from
--------------------------------
- Network: ``monai.networks.nets.vista3d132`` (MONAI 1.6), the configuration of the VISTA3D paper
  and of the MONAI bundle ``vista3d``. The encoder width is read from the checkpoint
  (``image_encoder.encoder.conv_init.weight`` has ``encoder_embed_dim`` output channels; 48 for
  the released weights), so smaller networks load through the same path.
- Weights: the bundle's ``models/model.pt``, a plain state dict, loaded with
  ``torch.load(weights_only=True)``.
- Preprocessing (Project-MONAI/VISTA ``vista3d/configs/supported_eval/infer_patch_*.yaml``):
  orientation RAS, voxels resampled to 1.5 mm (trilinear, corner-aligned), HU scaled linearly
  from [-963.8247715525971, 1053.678477684517] to [0, 1] and clipped. The reference also crops to
  the foreground (HU > 0, margin 10); this adapter does not (it only saves time).
- Inference (bundle ``scripts/inferer.py``, ``Vista3dInferer``): automatic segmentation with
  ``SlidingWindowInfererAdapt`` (ROI 128^3, ``with_coord=True``, replicate padding, class prompt
  as ``class_vector`` and ``prompt_class``); point prompts with
  ``monai.apps.vista3d.inferer.point_based_window_inferer`` (one 128^3 window centred on each new
  click; the previous logits are kept elsewhere and passed as ``prev_mask``, so the network edits
  the connected components touched by the clicks). Point-only predictions keep only the
  components that contain a positive click (``keep_components_with_positive_points``, as the
  bundle's ``VistaPostTransformd``). Logits > 0 are foreground. Both steps run on the network's
  device (:mod:`annosim.models.vista3d_device`: MONAI's inferer stitches on the CPU and labels
  components with scikit-image): the logits never leave the device.
- Back to the case's grid (:class:`~annosim.models.native3d_grid.NetToCase`): a click resamples
  and copies to the host only the slice it returns; ``propagate`` resamples the volume once per
  new prediction (cached), bit for bit the same slices.
- Class indices: ``vista3d/data/jsons/label_dict.json`` of Project-MONAI/VISTA (liver 1,
  kidney 2, spleen 3, pancreas 4, right kidney 5, ...); :data:`DEFAULT_LABEL_MAP` holds the
  abdominal structures.

Every ``add_clicks`` runs the network around the new clicks. Mode ``auto`` is prompt-free
(:attr:`VISTA3DModel.prompt_free`): one round from ``propagate()``; clicks are ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from annosim.errors import ConfigError, InputError
from annosim.params import coerce_overrides
from annosim.models.base import SliceModelBase
from annosim.models.patch_slices import SlicePatchMixin
from annosim.models.native3d_grid import NetToCase, RASGrid
from annosim.models.vista3d_device import as_device_tensor, keep_positive_components, point_window_logits
from annosim.models.vista3d_weights import download_bundle_weights, load_vista3d

#: HU window of the VISTA3D bundle's ScaleIntensityRanged (a_min, a_max) -> [0, 1], clipped.
HU_WINDOW = (-963.8247715525971, 1053.678477684517)
#: Voxel size (mm) of the bundle's Spacingd.
TARGET_SPACING = 1.5
#: Patch size of the bundle's inferers.
PATCH_SIZE = (128, 128, 128)
#: Modes of He et al. 2024 Table 1.
MODES = ("point", "auto", "auto+point")

#: VISTA3D class ids (Project-MONAI/VISTA ``label_dict.json``) of common abdominal structures,
#: under names as TotalSegmentator / BTCV / MSD write them. Matching ignores case, separators and
#: word order (``kidney_right`` = ``right kidney``), see :func:`name_key`.
DEFAULT_LABEL_MAP: dict[str, int] = {
    "liver": 1,
    "kidney": 2,
    "spleen": 3,
    "pancreas": 4,
    "kidney_right": 5,
    "aorta": 6,
    "inferior_vena_cava": 7,
    "postcava": 7,
    "adrenal_gland_right": 8,
    "adrenal_gland_left": 9,
    "gallbladder": 10,
    "esophagus": 11,
    "stomach": 12,
    "duodenum": 13,
    "kidney_left": 14,
    "bladder": 15,
    "urinary_bladder": 15,
    "portal_vein_and_splenic_vein": 17,
    "small_bowel": 19,
    "colon": 62,
}


def name_key(name: str) -> tuple[str, ...]:
    """Normalised structure name: lower-case words, sorted.

    >>> name_key("Kidney_Right") == name_key("right kidney")
    True
    """
    return tuple(sorted(w for w in re.split(r"[^0-9a-z]+", name.lower()) if w))


def parse_label_map(spec: Mapping[str, Any] | str | None) -> dict[tuple[str, ...], int]:
    """Label map (annosim label name -> VISTA3D class id) keyed by :func:`name_key`.

    ``spec`` is a mapping, a JSON file holding one, or ``"name=id,name=id"`` (``--model-arg``);
    entries override :data:`DEFAULT_LABEL_MAP`. ``None`` gives the default map.
    """
    merged: dict[tuple[str, ...], int] = {name_key(k): int(v) for k, v in DEFAULT_LABEL_MAP.items()}
    if spec is None or spec == "":
        return merged
    if isinstance(spec, str):
        path = Path(spec).expanduser()
        if path.suffix.lower() == ".json" or path.is_file():
            try:
                spec = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise InputError(path, f"cannot read label map: {exc}") from None
            if not isinstance(spec, dict):
                raise InputError(path, "label map must be a JSON object {name: class id}")
        else:
            pairs = {}
            for item in filter(None, (s.strip() for s in spec.split(","))):
                name, sep, value = item.rpartition("=")
                if not sep or not name.strip():
                    raise ConfigError(f"label_map entry {item!r}: expected name=class_id")
                pairs[name.strip()] = value.strip()
            spec = pairs
    for name, value in dict(spec).items():
        try:
            merged[name_key(str(name))] = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"label_map: class id of {name!r} must be an integer, got {value!r}") from None
    return merged


def _patch_size(value: int | str | tuple[int, ...] | list[int]) -> tuple[int, int, int]:
    """``128``, ``"64"``, ``"64,64,32"`` or a 3-sequence -> 3 ints, each a multiple of 16."""
    if isinstance(value, str):
        value = [int(v) for v in value.replace("x", ",").split(",") if v.strip()]
    if isinstance(value, int):
        value = [value]
    vals = [int(v) for v in value]
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3 or any(v < 16 or v % 16 for v in vals):
        raise ConfigError(f"patch_size must be 1 or 3 multiples of 16, got {value!r}")
    return (vals[0], vals[1], vals[2])


@dataclass
class _Object:
    """Prompt state of the current object."""

    points: np.ndarray  # (N, 3) canonical (z, y, x)
    labels: np.ndarray  # (N,) 1/0
    logits: torch.Tensor | None  # (1, 1, *net_shape) raw network output on the device, or None
    start_logits: torch.Tensor | None  # automatic prediction the clicks edit (auto modes)
    outside: torch.Tensor  # bool (Z,) on the device: slices outside the object's frames


@dataclass(frozen=True)
class Vista3DOptions:
    """Options of :class:`VISTA3DModel`, coerced from ``--model-arg`` strings by
    :func:`annosim.params.coerce_overrides` (:meth:`parse`).

    Attributes
    ----------
    checkpoint : str or Path, optional
        The bundle's ``models/model.pt`` (state dict). ``None``: download the bundle ``vista3d``
        into :func:`default_cache_dir` (a clear error when offline).
    mode : {"point", "auto", "auto+point"}
        ``point``: clicks only. ``auto``: the class head's prediction for the structure's class,
        prompt-free (one round). ``auto+point``: the automatic prediction, edited by the clicks.
    label_map : mapping, JSON path or "name=id,..." string, optional
        annosim label names -> VISTA3D class ids, merged over :data:`DEFAULT_LABEL_MAP`. The
        class is needed by the auto modes; in point mode a mapped class only switches the
        special-class click labels of the network (tumours, vessels).
    device : str, optional
        Torch device; default CUDA when available, else CPU.
    patch_size : int or 3 ints
        Window size (default 128^3, the bundle's; RAS axes); multiples of 16. Under the patch
        protocols also the patch's size (one window), beside ``patch_spacing`` (default 1.5 mm,
        :class:`~annosim.models.patch_slices.SlicePatchArgs`).
    target_spacing : float or "none"
        Network voxel size in mm (default 1.5); ``"none"`` keeps the case's voxels.
    overlap : float
        Sliding-window overlap of the automatic prediction (default 0.25, what the bundle's
        ``SlidingWindowInfererAdapt`` uses).
    amp : bool
        Mixed precision on CUDA (default True, as the bundle); ignored on CPU.
    """

    checkpoint: str | None = None
    mode: str = "point"
    label_map: str | None = None
    device: str | None = None
    patch_size: tuple[int, ...] | int | str = PATCH_SIZE
    target_spacing: float | None = TARGET_SPACING
    overlap: float = 0.25
    amp: bool = True

    @classmethod
    def parse(cls, **kwargs: Any) -> "Vista3DOptions":
        """The options from keyword values (strings converted); ConfigError on a bad one."""
        spacing = kwargs.get("target_spacing")
        if isinstance(spacing, str) and spacing.strip().lower() == "native":
            kwargs["target_spacing"] = None
        opts = cls(**coerce_overrides(cls, kwargs, "model 'vista3d'"))
        if opts.mode not in MODES:
            raise ConfigError(f"vista3d mode must be one of {', '.join(MODES)}; got {opts.mode!r}")
        if opts.target_spacing is not None and opts.target_spacing <= 0:
            raise ConfigError(f"target_spacing must be > 0 mm, got {opts.target_spacing}")
        if not 0.0 <= opts.overlap < 1.0:
            raise ConfigError(f"overlap must be in [0, 1), got {opts.overlap}")
        return opts


class VISTA3DModel(SlicePatchMixin, SliceModelBase):
    """MONAI VISTA3D as a native-3D annosim model; options :class:`Vista3DOptions`."""

    name = "vista3d"

    def __init__(self, **options: Any) -> None:
        super().__init__()
        rest = {k: v for k, v in options.items() if k != "patch_spacing"}
        o = Vista3DOptions.parse(**rest)
        self.options = o
        self.mode = o.mode
        self.label_map = parse_label_map(o.label_map)
        self.patch_size = _patch_size(o.patch_size)
        # the patch protocols' patch is one window (patch_size is RAS (X, Y, Z), the patch (Z, Y, X))
        self._take_patch_args(options, "model 'vista3d'", ("patch_spacing",), patch_size=self.patch_size[::-1])
        self.target_spacing = o.target_spacing
        self.overlap = float(o.overlap)
        self.device = torch.device(o.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.amp = o.amp and self.device.type == "cuda"
        checkpoint = o.checkpoint
        self.checkpoint = Path(checkpoint).expanduser() if checkpoint else download_bundle_weights()
        self.network = load_vista3d(self.checkpoint, self.device)
        self.grid: RASGrid | None = None
        self.resampler: NetToCase | None = None
        self.image: torch.Tensor | None = None
        self.class_id: int | None = None
        self.label_name: str | None = None
        self._auto_cache: dict[int, torch.Tensor] = {}
        self._obj: _Object | None = None
        self._net: torch.Tensor | None = None  # (H, W, D) logits thresholded at 0, or None: empty
        self._pred_dev: torch.Tensor | None = None  # bool canonical (Z, Y, X), made when first needed
        self._pred: np.ndarray | None = None  # its host copy, made by propagate

    # -- engine hints ------------------------------------------------------------------------------
    @property
    def prompt_free(self) -> bool:
        """True in mode ``auto``: the engine records one round from :meth:`propagate`, no clicks."""
        return self.mode == "auto"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": self.mode,
            "checkpoint": str(self.checkpoint),
            "patch_size": list(self.patch_size),
            "target_spacing": self.target_spacing,
            "overlap": self.overlap,
            "hu_window": list(HU_WINDOW),
            "device": str(self.device),
            "amp": self.amp,
            **self.patch_description(),
        }

    # -- case and object ---------------------------------------------------------------------------
    def set_volume(self, volume: np.ndarray, spacing: tuple[float, float, float]) -> None:
        """Resample to the network grid (RAS, :attr:`target_spacing`) and scale HU to [0, 1]."""
        super().set_volume(volume, spacing)
        self.grid = RASGrid(self.shape, self.spacing, self.target_spacing)  # type: ignore[arg-type]
        self.resampler = self.grid.net_to_case(self.device)
        hu = self.grid.volume_to_net(np.asarray(volume, dtype=np.float32))
        lo, hi = HU_WINDOW
        self.image = ((hu - lo) / (hi - lo)).clamp_(0.0, 1.0).to(self.device)
        self._auto_cache = {}
        self._obj = None
        self._set_prediction(None)

    def set_target(self, label_value: int, label_name: str) -> None:
        """Name the structure of the next object; looks up its VISTA3D class in :attr:`label_map`."""
        self.label_name = str(label_name)
        self.class_id = self.label_map.get(name_key(self.label_name))

    def start_object(self, frames: np.ndarray | None = None) -> None:
        """Forget all clicks; in the auto modes, start from the automatic prediction."""
        super().start_object(frames)
        start = None
        if self.mode != "point":
            if self.class_id is None:
                raise ConfigError(
                    f"vista3d mode {self.mode!r}: no VISTA3D class for structure {self.label_name!r}; "
                    "pass --model-arg label_map=NAME=CLASS_ID"
                )
            start = self._auto_logits(self.class_id)
        outside = np.ones(self.shape[0], dtype=bool)  # type: ignore[index]
        outside[self.frames] = False
        self._obj = _Object(
            np.zeros((0, 3), np.int64), np.zeros(0, np.int64), start, start,
            torch.from_numpy(outside).to(self.device),
        )
        self._set_prediction(start)

    # -- prompts -----------------------------------------------------------------------------------
    def add_clicks(
        self, z: int, points: np.ndarray, labels: np.ndarray, replace: bool = False
    ) -> np.ndarray:
        """Clicks ``(K, 2)`` ``(y, x)`` on slice ``z`` -> VISTA3D points; returns slice ``z``.

        The network-grid prediction is updated (windows centred on the new clicks); only slice
        ``z`` is resampled to the case's grid. ``replace``
        drops earlier clicks on slice ``z`` and reruns every click from the starting state. In
        mode ``auto`` the clicks are ignored.
        """
        obj = self._require_object()
        pts = np.asarray(points, dtype=np.int64).reshape(-1, 2)
        labs = np.asarray(labels, dtype=np.int64).reshape(-1)
        if pts.shape[0] != labs.shape[0]:
            raise ValueError("points and labels must have the same length")
        if self.mode == "auto" or pts.shape[0] == 0:
            return self._slice(int(z))
        new = np.column_stack([np.full(len(pts), int(z)), pts])
        if replace:
            keep = obj.points[:, 0] != int(z)
            obj.points, obj.labels = obj.points[keep], obj.labels[keep]
            obj.logits = obj.start_logits
            first_new = 0
        else:
            first_new = len(obj.points)
        obj.points = np.concatenate([obj.points, new])
        obj.labels = np.concatenate([obj.labels, (labs > 0).astype(np.int64)])
        obj.logits = self._point_logits(obj, first_new)
        self._set_prediction(self._kept_logits(obj.logits, obj))
        return self._slice(int(z))

    def propagate(self) -> np.ndarray:
        """The current whole-volume prediction, bool ``(Z, Y, X)`` (empty outside the frames):
        resampled and copied to the host once per new prediction."""
        self._require_object()
        if self._pred is None:
            self._pred = self._volume_mask().cpu().numpy().copy()
        return self._pred.copy()

    # -- internals ---------------------------------------------------------------------------------
    def _require_object(self) -> _Object:
        if self._obj is None:
            raise RuntimeError("start_object must be called before prompting")
        return self._obj

    def _set_prediction(self, net_logits: torch.Tensor | None) -> None:
        """New network-grid prediction ``(1, 1, *net_shape)`` (``None``: empty); drops the
        case-grid mask and its host copy."""
        self._net = None if net_logits is None else net_logits[0, 0]
        self._pred_dev = None
        self._pred = None

    def _volume_mask(self) -> torch.Tensor:
        """The case-grid mask, bool ``(Z, Y, X)`` on the device, empty outside the frames:
        resampled once per prediction (:meth:`NetToCase.volume`) and cached."""
        obj = self._require_object()
        if self._pred_dev is None:
            if self._net is None:
                self._pred_dev = torch.zeros(self.shape, dtype=torch.bool, device=self.device)  # type: ignore[arg-type]
            else:
                mask = self.resampler.volume(self._net) > 0  # type: ignore[union-attr]
                self._pred_dev = mask & ~obj.outside[:, None, None]
        return self._pred_dev

    def _slice(self, z: int) -> np.ndarray:
        """Slice ``z`` of the current prediction, bool ``(Y, X)``: the per-click host copy. Only
        that slice is resampled (:meth:`NetToCase.slice`, bitwise the volume's slice) unless the
        volume is already there."""
        obj = self._require_object()
        if self._pred_dev is not None:
            return self._pred_dev[z].cpu().numpy().copy()
        if self._net is None:
            return np.zeros(self.shape[1:], dtype=bool)  # type: ignore[index]
        mask = (self.resampler.slice(self._net, z) > 0) & ~obj.outside[z]  # type: ignore[union-attr]
        return mask.cpu().numpy().copy()

    def _autocast(self) -> Any:
        return torch.autocast(self.device.type, enabled=self.amp)

    def _auto_logits(self, class_id: int) -> torch.Tensor:
        """Class-head logits ``(1, 1, *net_shape)`` for ``class_id`` (cached per case)."""
        if class_id not in self._auto_cache:
            from monai.inferers import SlidingWindowInfererAdapt

            cls = torch.tensor([[class_id]], device=self.device)
            inferer = SlidingWindowInfererAdapt(
                roi_size=self.patch_size,
                sw_batch_size=1,
                overlap=self.overlap,
                with_coord=True,
                padding_mode="replicate",
            )
            with torch.no_grad(), self._autocast():
                out = inferer(
                    self.image,
                    self.network,
                    transpose=True,
                    class_vector=cls,
                    prompt_class=cls,
                    point_coords=None,
                    point_labels=None,
                )
            self._auto_cache[class_id] = as_device_tensor(out, self.device)
        return self._auto_cache[class_id]

    def _point_arrays(self, obj: _Object) -> tuple[np.ndarray, np.ndarray]:
        """All clicks on the host: network-grid points ``(N, 3)`` int64 and network labels ``(N,)``
        (special-class labels for a mapped class, ``convert_point_label``)."""
        coords = self.grid.points_to_net(obj.points)  # type: ignore[union-attr]
        labels = torch.as_tensor(obj.labels[None], dtype=torch.int64)
        if self.class_id is not None:
            labels = self.network.convert_point_label(labels, label_set=[self.class_id])
        return coords, labels[0].numpy()

    def _point_logits(self, obj: _Object, first_new: int) -> torch.Tensor:
        """Run windows centred on clicks ``first_new..`` (all clicks seen); returns new logits
        ``(1, 1, *net_shape)`` float32, kept on the device."""
        coords, labels = self._point_arrays(obj)
        cls = None if self.class_id is None else torch.tensor([[self.class_id]], device=self.device)
        class_vector = cls if self.mode == "auto+point" else None
        with torch.no_grad(), self._autocast():
            out = point_window_logits(
                self.image,  # type: ignore[arg-type]
                self.patch_size,
                self.network,
                torch.as_tensor(coords[None], dtype=torch.float32).to(self.device),
                torch.as_tensor(labels[None]).to(self.device),
                coords,
                class_vector=class_vector,
                prompt_class=cls,
                prev_mask=obj.logits,
                point_start=first_new,
            )
        # voxels no window reached (first clicks, no previous prediction) are background
        return torch.nan_to_num(out.float(), nan=float(self.network.NINF_VALUE))

    def _kept_logits(self, logits: torch.Tensor, obj: _Object) -> torch.Tensor:
        """The logits ``(1, 1, *net_shape)`` the mask is read from, on the network grid and the
        device: in mode ``point`` only the components holding a positive click keep logits > 0."""
        if self.mode == "point" and len(obj.points):
            return keep_positive_components(logits, *self._point_arrays(obj))
        return logits
