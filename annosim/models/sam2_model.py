"""SAM2 / SAM2.1 (and SAM2-architecture fine-tunes such as MedSAM2) behind the slice-model API.

The adapter drives the official ``sam2.sam2_video_predictor.SAM2VideoPredictor`` (sam2 1.1.0)
exactly as the reference script calls it, with two changes that leave every mask bitwise equal:

- frames come from the HU volume in memory (:mod:`annosim.models.sam2_frames`), reproducing
  SAM2's JPEG-folder reader; ``configure_protocol(frame_codec="jpeg")`` adds the reference's
  lossy JPEG round trip (variant ``he2024-vista``);
- the image encoder runs at most once per slice per case (:mod:`annosim.models.sam2_features`),
  shared by every label, round and setting.

Mapping of the plugin API onto the predictor: one object (``obj_id`` 1) per
:meth:`start_object`, which starts a fresh inference state over the video ``frames`` (video frame
``i`` = slice ``frames[i]``); :meth:`add_clicks` = ``add_new_points_or_box`` with points turned
from ``(y, x)`` into ``(x, y)`` and ``clear_old_points=replace``; :meth:`propagate` =
``propagate_in_video`` forward and then with ``reverse=True``, both from the earliest prompted
frame, the later pass overwriting the one frame both cover; slices outside ``frames`` are empty.
On CUDA every call runs under bf16 autocast, as in the reference; a ``cuda:K`` device is made the
current CUDA device before the model is built (:func:`annosim.models.devices.select_cuda_device`).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from annosim.errors import ConfigError, InputError
from annosim.models.base import SliceModelBase
from annosim.models.patch_slices import SlicePatchMixin
from annosim.models.devices import release_cached_memory, select_cuda_device
from annosim.models.sam2_checkpoints import (
    VARIANTS,
    build_video_predictor,
    check_state_dict,
    fetch_checkpoint,
    get_variant,
    load_state_dict,
)
from annosim.files import sha256_file
from annosim.models.sam2_frames import CODECS, SliceFrames, hu_to_uint8
from annosim.models.sam2_passes import Sam2PassesMixin, _quiet_sam2_progress
from annosim.models.sam2_runtime import collect_pass
from annosim.params import coerce_overrides

#: Registry names served by :class:`SAM2Model`.
MODEL_NAMES: tuple[str, ...] = tuple(VARIANTS)


@dataclass(frozen=True)
class Sam2Options:
    """Options of :class:`SAM2Model` (``--model-arg key=value``; strings are converted).

    Attributes
    ----------
    model_name : str
        Registry name (``sam2.1-hiera-tiny`` ...): config and official weights.
    checkpoint : str or None
        Local weights file; ``None`` downloads the official one into the cache folder.
    config : str or None
        Config inside the ``sam2`` package or a YAML path (fine-tunes); ``None``: the variant's.
    image_size : int or None
        Model input size override (``None``: the config's, 1024).
    device : str or None
        ``cpu``, ``cuda`` or ``cuda:N``; ``None``: ``cuda`` when available.
    cache_device : str or None
        Where the feature cache lives (``cpu`` offloads long volumes); ``None``: ``device``.
    cache_dtype : str
        ``native`` (the encoder's dtype: exact) or ``bfloat16``.
    window : (float, float)
        HU mapped to grey levels 0 and 255.
    """

    model_name: str = "sam2.1-hiera-tiny"
    checkpoint: str | None = None
    config: str | None = None
    image_size: int | None = None
    device: str | None = None
    cache_device: str | None = None
    cache_dtype: str = "native"
    window: tuple[float, float] = (-1000.0, 1000.0)

    @classmethod
    def parse(cls, **kwargs: Any) -> "Sam2Options":
        """Build from keyword values that may be strings (``window="-1000,1000"``), converted by
        :func:`annosim.params.coerce_overrides`, then checked."""
        values = coerce_overrides(cls, kwargs, "model 'sam2'")
        if values.get("cache_dtype") == "bf16":
            values["cache_dtype"] = "bfloat16"
        opts = cls(**values)
        if opts.image_size is not None and (opts.image_size < 64 or opts.image_size % 32):
            raise ConfigError(f"image_size must be a multiple of 32 >= 64, got {opts.image_size}")
        window = tuple(opts.window)
        if len(window) != 2:
            raise ConfigError(f"window must be 'lo,hi' in HU, got {kwargs.get('window')!r}")
        if not window[1] > window[0]:
            raise ConfigError(f"window must satisfy lo < hi, got {kwargs.get('window')!r}")
        if opts.cache_dtype not in ("native", "bfloat16"):
            raise ConfigError(f"cache_dtype must be 'native' or 'bfloat16', got {opts.cache_dtype!r}")
        return replace(opts, window=(float(window[0]), float(window[1])))


class SAM2Model(SlicePatchMixin, Sam2PassesMixin, SliceModelBase):
    """SAM2 video predictor with a per-case image-feature cache.

    Attributes
    ----------
    predictor : SAM2VideoPredictor
        The official model, weights loaded, in eval mode.
    encoder_calls : int
        Image-encoder runs for the current case (reset by :meth:`set_volume`).
    encoder_calls_total : int
        Image-encoder runs since construction.
    peak_memory_bytes : int or None
        Peak accelerator memory allocated during the current case (``None`` on the CPU).
    checkpoint_path, checkpoint_sha256 : str
        The weights file used and its digest.
    """

    def __init__(self, model_name: str = "sam2.1-hiera-tiny", **kwargs: Any) -> None:
        super().__init__()
        import torch

        kwargs = self._take_patch_args(kwargs, "model 'sam2'")
        self.options = Sam2Options.parse(model_name=model_name, **kwargs)
        opts = self.options
        info = get_variant(opts.model_name)
        self.name = opts.model_name
        self.config = opts.config or info.config
        self.device = _device(opts.device)
        self.cache_device = self.device if opts.cache_device is None else _device(opts.cache_device)
        select_cuda_device(self.device)  # before building: sam2 builds tables on the current device

        if opts.checkpoint is not None:
            ckpt = Path(opts.checkpoint).expanduser()
        else:
            ckpt = fetch_checkpoint(info)
        state_dict = load_state_dict(ckpt)
        self.checkpoint_path = str(ckpt)
        self.checkpoint_sha256 = sha256_file(ckpt)

        predictor = build_video_predictor(self.config, opts.image_size)
        check_state_dict(predictor, state_dict, ckpt, self.config)
        predictor.load_state_dict(state_dict, strict=True)
        del state_dict
        if not _has_sam2_extension():
            # Hole filling needs sam2's CUDA extension; without it the official predictor tries,
            # fails, warns and keeps the mask unchanged on every frame. Skipping the attempt
            # gives the same masks without the per-frame warning.
            predictor.fill_hole_area = 0
        self.fill_holes = predictor.fill_hole_area > 0
        self.predictor = predictor.to(self.device).eval()
        self.image_size = int(predictor.image_size)
        self.cache_dtype = None if opts.cache_dtype == "native" else torch.bfloat16

        self.frame_codec = "raw"
        self.encoder_calls_total = 0
        self.peak_memory_bytes: int | None = None
        self._gray: np.ndarray | None = None
        self._frames_in: SliceFrames | None = None
        self._cache: Any = None
        self._state: dict[str, Any] | None = None

    # -- protocol hints --------------------------------------------------------------------
    def configure_protocol(self, **options: Any) -> None:
        """``frame_codec="jpeg"`` (he2024-vista) or ``"raw"``; other hints are ignored."""
        codec = options.get("frame_codec")
        if codec is None:
            return
        if codec not in CODECS:
            raise ConfigError(f"frame_codec must be one of {CODECS}, got {codec!r}")
        if codec != self.frame_codec:
            self.frame_codec = codec
            if self._gray is not None:
                self._new_cache()

    # -- case and object ---------------------------------------------------------------------
    def set_volume(self, volume: np.ndarray, spacing: tuple[float, float, float]) -> None:
        """Window the HU volume ``(Z, Y, X)`` into frames and start an empty feature cache."""
        super().set_volume(volume, spacing)
        v = np.asarray(volume)
        if not np.issubdtype(v.dtype, np.number) or not np.all(np.isfinite(v)):
            raise InputError(None, "volume has non-finite voxels (NaN or inf)")
        self._gray = hu_to_uint8(v, self.options.window)
        self._new_cache()
        if self.device.type == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
            self.peak_memory_bytes = int(torch.cuda.max_memory_allocated(self.device))

    def start_object(self, frames: np.ndarray | None = None) -> None:
        """Forget every prompt; the object's video is ``frames`` (all slices when ``None``)."""
        super().start_object(frames)
        if self._cache is None:
            raise RuntimeError("set_volume must be called before start_object")
        self._state = self._new_state()

    # -- prompts -------------------------------------------------------------------------------
    def add_clicks(
        self, z: int, points: np.ndarray, labels: np.ndarray, replace: bool = False
    ) -> np.ndarray:
        """Clicks ``(K, 2)`` ``(y, x)`` with labels ``(K,)`` on slice ``z``; bool ``(Y, X)``."""
        pts = np.asarray(points, dtype=np.float32).reshape(-1, 2)[:, ::-1].copy()  # -> (x, y)
        lbs = np.asarray(labels, dtype=np.int32).reshape(-1)
        if pts.shape[0] != lbs.shape[0] or pts.shape[0] == 0:
            raise ValueError("points (K, 2) and labels (K,) must be non-empty and agree")
        return self._prompt(z, points=pts, labels=lbs, clear_old_points=bool(replace))

    def add_box(self, z: int, box: tuple[int, int, int, int]) -> np.ndarray:
        """Box ``(y0, x0, y1, x1)`` on slice ``z`` (replaces the slice's prompts)."""
        y0, x0, y1, x1 = (float(v) for v in box)
        return self._prompt(z, box=np.array([x0, y0, x1, y1], dtype=np.float32))

    def add_mask(self, z: int, mask: np.ndarray) -> np.ndarray:
        """Mask prompt bool ``(Y, X)`` on slice ``z``; returns bool ``(Y, X)``."""
        import torch

        state = self._require_state()
        i = self.frame_position(z)
        m = torch.from_numpy(np.asarray(mask, dtype=bool))
        with self._context():
            _, _, logits = self.predictor.add_new_mask(state, i, 1, m)
        return self._to_mask(logits)

    def propagate(self) -> np.ndarray:
        """bool ``(Z, Y, X)``: forward then backward pass from the earliest prompted frame."""
        state = self._require_state()
        assert self.shape is not None
        out = np.zeros(self.shape, dtype=bool)
        with self._context(), _quiet_sam2_progress():
            for reverse in (False, True):
                idx, masks = collect_pass(self.predictor.propagate_in_video(state, reverse=reverse))
                if idx.size:
                    out[self.frames[idx]] = masks
        self._record_memory()
        return out

    # -- bookkeeping ---------------------------------------------------------------------------
    @property
    def encoder_calls(self) -> int:
        return 0 if self._cache is None else self._cache.encoder_calls

    @property
    def cache_bytes(self) -> int:
        """Bytes held by the feature cache of the current case."""
        return 0 if self._cache is None else self._cache.nbytes

    def estimate_memory(self, shape: tuple[int, int, int]) -> int:
        """Bytes this model holds for a case of ``shape`` (Z, Y, X): feature cache, positional
        encodings and tracking state (:func:`annosim.memory.sam2_case_bytes`)."""
        from annosim.memory import sam2_case_bytes, sam2_itemsizes

        sizes = sam2_itemsizes(self.device.type, cache_bfloat16=self.cache_dtype is not None)
        return sam2_case_bytes(shape[0], self.image_size, sizes)

    def release_case(self) -> None:
        """Drop the case's feature cache and tracking state and return the allocator's cached
        blocks, so the next case's memory check sees them free."""
        self._cache = None
        self._state = None
        self._frames_in = None
        self._gray = None
        self._last_low = (None, {})  # predict_slice's low-res logits (sam2_passes)
        release_cached_memory(self.device)

    def describe(self) -> dict[str, Any]:
        opts = asdict(self.options)
        return {
            "name": self.name,
            "config": self.config,
            "checkpoint": self.checkpoint_path,
            "checkpoint_sha256": self.checkpoint_sha256,
            "image_size": self.image_size,
            "device": str(self.device),
            "cache_device": str(self.cache_device),
            "cache_dtype": opts["cache_dtype"],
            "window": list(opts["window"]),
            "frame_codec": self.frame_codec,
            "fill_holes": self.fill_holes,
            "peak_memory_bytes": self.peak_memory_bytes,
            **self.patch_description(),
        }

    # -- internals -------------------------------------------------------------------------------
    def _new_cache(self) -> None:
        from annosim.models.sam2_features import FeatureCache

        assert self._gray is not None
        self._frames_in = SliceFrames(self._gray, self.image_size, self.frame_codec)
        self._cache = FeatureCache(
            self._encode, self.device, self.cache_device, self.cache_dtype
        )
        self._state = None

    def _encode(self, z: int) -> dict[str, Any]:
        import torch

        assert self._frames_in is not None
        image = self._frames_in.tensor(z).to(self.device).float().unsqueeze(0)
        with torch.inference_mode(), self._autocast():
            out = self.predictor.forward_image(image)
        self.encoder_calls_total += 1
        return out

    def _new_state(self) -> dict[str, Any]:
        """An inference state like ``init_state``'s, over this object's frames, features cached."""
        from annosim.models.sam2_features import FrameFeatureView

        assert self._frames_in is not None
        n = int(self.frames.size)
        return {
            "images": _NoImages(n),
            "num_frames": n,
            "offload_video_to_cpu": False,
            "offload_state_to_cpu": False,
            "video_height": self._frames_in.height,
            "video_width": self._frames_in.width,
            "device": self.device,
            "storage_device": self.device,
            "point_inputs_per_obj": {},
            "mask_inputs_per_obj": {},
            "cached_features": FrameFeatureView(self._cache, self.frames),
            "constants": {},
            "obj_id_to_idx": OrderedDict(),
            "obj_idx_to_id": OrderedDict(),
            "obj_ids": [],
            "output_dict_per_obj": {},
            "temp_output_dict_per_obj": {},
            "frames_tracked_per_obj": {},
        }

    def _require_state(self) -> dict[str, Any]:
        if self._state is None:
            raise RuntimeError("start_object must be called before prompting")
        return self._state

    def _prompt(self, z: int, **kwargs: Any) -> np.ndarray:
        state = self._require_state()
        i = self.frame_position(z)
        with self._context():
            _, _, logits = self.predictor.add_new_points_or_box(
                inference_state=state, frame_idx=i, obj_id=1, **kwargs
            )
        return self._to_mask(logits)

    @staticmethod
    def _to_mask(logits: Any) -> np.ndarray:
        return (logits[0, 0] > 0.0).cpu().numpy()

    def _autocast(self) -> Any:
        import torch

        if self.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def _context(self) -> Iterator[None]:
        import torch

        with torch.inference_mode(), self._autocast():
            yield

    def _record_memory(self) -> None:
        if self.device.type == "cuda":
            import torch

            peak = int(torch.cuda.max_memory_allocated(self.device))
            self.peak_memory_bytes = max(self.peak_memory_bytes or 0, peak)


class _NoImages:
    """``inference_state["images"]`` stand-in: frames are read through the feature cache."""

    def __init__(self, n: int) -> None:
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: Any) -> Any:
        raise RuntimeError("SAM2 frames are served by the annosim feature cache")


def _device(name: str | None) -> Any:
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {name!r} (use cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but torch sees no CUDA device")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {name!r} is not supported (use cpu or cuda)")
    return dev


def _has_sam2_extension() -> bool:
    try:
        from sam2 import _C  # noqa: F401
    except ImportError:
        return False
    return True
