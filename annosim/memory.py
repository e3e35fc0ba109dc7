"""Memory needed by one case, estimated before it runs, and a refusal when it would not fit.

The estimate (bytes) adds four parts for a volume of ``n = Z * Y * X`` voxels:

``volume``  reading and orienting the image: ``n * (b + 8)`` — the stored array (``b`` bytes per
            voxel on disk), its float32 HU copy and the reoriented float32 copy.
``labels``  the label map: ``n * l`` (``l`` its bytes per voxel on disk, at least 1).
``masks``   per-object boolean masks alive at once: ``n * (MASK_COPIES + R)`` — truth, prediction,
            previous prediction and metric scratch, plus ``R`` kept predictions when
            ``--save-predictions`` is on (``R`` = the protocols' largest ``rounds``).
``model``   the model's own state for this case: ``model.estimate_memory(shape)`` when the model
            has that method (``shape`` = ``(Z, Y, X)``), else :func:`default_model_bytes`.

For SAM2 models, :func:`sam2_case_bytes` applies; it follows the dtypes. SAM2's feature cache
keeps the image encoder's three FPN levels of every slice at input size ``S`` (1024 by default):
``32*(S/4)**2``, ``64*(S/8)**2`` and ``256*(S/16)**2`` values (the levels of sam2 1.1.0's configs,
tiny to large alike: ``scalp: 1``, ``conv_s0``/``conv_s1`` project the two high-resolution
levels to 32 and 64 channels, ``d_model: 256``), plus one positional encoding of ``256`` channels
at each of the three resolutions (``21*S**2`` values) shared by all slices, plus per tracked
frame a memory (``64*(S/16)**2`` values, bfloat16: sam2 casts it) and a low-resolution mask
(``(S/4)**2`` float32 values): ``0.75*S**2`` bytes. Bytes a value (:func:`sam2_itemsizes`): on the
CPU everything is float32; under CUDA bf16 autocast (the reference's) the two high-resolution
levels and their encodings are bfloat16 and the third level is float32 (the FPN's top-down add);
``cache_dtype=bfloat16`` stores all three levels as bfloat16. At S=1024 (computed here, not
measured): 10 MiB a slice of features on CUDA (16 MiB on the CPU, 8 MiB with
``cache_dtype=bfloat16``), 44 MiB of encodings once (84 MiB on the CPU) and 0.75 MiB a frame of
tracking state; a 512x512x200 CT with SAM2 on CUDA thus needs about 2.14 GiB:
``200 * (10 + 0.75) MiB + 44 MiB``.

The model part is checked against the accelerator's free memory when the model keeps its state
on a CUDA device (its ``cache_device``, else ``device`` attribute), against host memory otherwise.
Host memory available is ``MemAvailable`` of ``/proc/meminfo`` (``psutil`` elsewhere); when
neither is known the check passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

#: Boolean (Z, Y, X) masks alive at once while one object runs (truth, prediction, previous
#: prediction, metric scratch).
MASK_COPIES = 4
#: Without ``estimate_memory``, a model is assumed to hold this many float32 copies of the volume.
DEFAULT_MODEL_VOLUME_COPIES = 2
_GIB = float(1 << 30)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one case needs, by part (see the module docstring for the formulas)."""

    shape: tuple[int, int, int]
    volume: int
    labels: int
    masks: int
    model: int
    model_device: str = "host"

    @property
    def host(self) -> int:
        """Bytes needed in host memory."""
        return self.volume + self.labels + self.masks + (0 if self.on_accelerator else self.model)

    @property
    def on_accelerator(self) -> bool:
        return self.model_device.startswith("cuda")

    @property
    def total(self) -> int:
        return self.volume + self.labels + self.masks + self.model

    def parts(self) -> str:
        """``volume 0.10 GiB, labels ..., model ... (cuda:0)`` for messages."""
        where = f" on {self.model_device}" if self.on_accelerator else ""
        return (
            f"volume {gib(self.volume)}, labels {gib(self.labels)}, masks {gib(self.masks)}, "
            f"model {gib(self.model)}{where}"
        )


def gib(n: float) -> str:
    """Bytes as ``1.23 GiB``."""
    return f"{n / _GIB:.2f} GiB"


# -- sizes of the parts ---------------------------------------------------------------------------
#: (channels, stride) of the three FPN levels SAM2's feature cache keeps a slice (sam2 1.1.0).
SAM2_FPN_LEVELS: tuple[tuple[int, int], ...] = ((32, 4), (64, 8), (256, 16))
#: Channels of SAM2's positional encoding at each of those resolutions.
SAM2_ENCODING_CHANNELS = 256


@dataclass(frozen=True)
class Sam2Itemsizes:
    """Bytes a value of SAM2's three cached FPN levels and of their three positional encodings."""

    features: tuple[int, int, int] = (4, 4, 4)
    encodings: tuple[int, int, int] = (4, 4, 4)


def sam2_itemsizes(device_type: str, cache_bfloat16: bool = False) -> Sam2Itemsizes:
    """The dtypes SAM2 gives its cache: float32 on the CPU; under CUDA bf16 autocast bfloat16 for
    the two high-resolution levels and their encodings, float32 for the third;
    ``cache_bfloat16`` stores all three levels as bfloat16 (the encodings keep the encoder's)."""
    native = (2, 2, 4) if device_type == "cuda" else (4, 4, 4)
    return Sam2Itemsizes((2, 2, 2) if cache_bfloat16 else native, native)


def sam2_slice_bytes(image_size: int = 1024, itemsizes: Sam2Itemsizes = Sam2Itemsizes()) -> int:
    """Bytes of one slice's cached FPN levels at input size ``image_size``."""
    s = int(image_size)
    return sum(c * (s // k) ** 2 * b for (c, k), b in zip(SAM2_FPN_LEVELS, itemsizes.features))


def sam2_encoding_bytes(image_size: int = 1024, itemsizes: Sam2Itemsizes = Sam2Itemsizes()) -> int:
    """Bytes of the positional encodings shared by all slices."""
    s = int(image_size)
    return sum(SAM2_ENCODING_CHANNELS * (s // k) ** 2 * b for (_, k), b in zip(SAM2_FPN_LEVELS, itemsizes.encodings))


def sam2_tracking_bytes(image_size: int = 1024) -> int:
    """Bytes of tracking state a frame: a bfloat16 memory ``64*(S/16)**2`` and a float32 mask
    ``(S/4)**2``."""
    s = int(image_size)
    return 64 * (s // 16) ** 2 * 2 + (s // 4) ** 2 * 4


def sam2_case_bytes(n_slices: int, image_size: int = 1024, itemsizes: Sam2Itemsizes = Sam2Itemsizes()) -> int:
    """SAM2 memory for one case of ``n_slices`` slices at input size ``image_size``: per slice
    its features and tracking state, plus the encodings once (see the module docstring)."""
    per_slice = sam2_slice_bytes(image_size, itemsizes) + sam2_tracking_bytes(image_size)
    return int(n_slices) * per_slice + sam2_encoding_bytes(image_size, itemsizes)


def default_model_bytes(shape: Sequence[int]) -> int:
    """Model state assumed for a model without ``estimate_memory``: two float32 volume copies."""
    return DEFAULT_MODEL_VOLUME_COPIES * 4 * int(np.prod(shape, dtype=np.int64))


def _device_name(model: Any) -> str:
    for attr in ("cache_device", "device"):
        dev = getattr(model, attr, None)
        if dev is not None:
            return str(dev)
    return "host"


def model_bytes(model: Any, shape: tuple[int, int, int]) -> int:
    """The model part: its ``estimate_memory(shape)``, or the default."""
    own = getattr(model, "estimate_memory", None)
    value = own(tuple(int(s) for s in shape)) if callable(own) else None  # a failure: a model error
    return default_model_bytes(shape) if value is None else int(value)


def estimate_case(
    shape: Sequence[int],
    model: Any,
    *,
    image_itemsize: int = 4,
    label_itemsize: int = 1,
    kept_predictions: int = 0,
    loaded: bool = False,
) -> MemoryEstimate:
    """Estimate for a case of ``shape`` ``(Z, Y, X)``; ``loaded``: the volume and labels are in
    memory already (their parts count 0)."""
    shp = tuple(int(s) for s in shape)
    if len(shp) != 3:
        raise ValueError(f"shape must have 3 axes, got {shp}")
    n = int(np.prod(shp, dtype=np.int64))
    return MemoryEstimate(
        shape=shp,  # type: ignore[arg-type]
        volume=0 if loaded else n * (int(image_itemsize) + 8),
        labels=0 if loaded else n * max(1, int(label_itemsize)),
        masks=n * (MASK_COPIES + int(kept_predictions)),
        model=model_bytes(model, shp),  # type: ignore[arg-type]
        model_device=_device_name(model),
    )


# -- what is available ------------------------------------------------------------------------------
def available_host_memory(meminfo: str | Path = "/proc/meminfo") -> int | None:
    """Bytes of host memory available to a new allocation (``MemAvailable``), ``None`` if unknown."""
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil  # type: ignore[import-not-found]
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def available_device_memory(device: str) -> int | None:
    """Free bytes on a CUDA device (``torch.cuda.mem_get_info``), ``None`` if unknown."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    except Exception:  # no torch, no such device, driver errors: no check
        return None


def refusal(
    estimate: MemoryEstimate,
    host_available: int | None,
    device_available: int | None = None,
    hint: str = "",
) -> str | None:
    """Why the case would not fit (one line), or ``None`` when it fits or nothing is known."""
    if host_available is not None and estimate.host > host_available:
        msg = (
            f"needs about {gib(estimate.host)} of host memory ({estimate.parts()}) "
            f"but {gib(host_available)} is available"
        )
    elif estimate.on_accelerator and device_available is not None and estimate.model > device_available:
        msg = (
            f"the model needs about {gib(estimate.model)} on {estimate.model_device} "
            f"but {gib(device_available)} is free there"
        )
    else:
        return None
    return f"{msg}; not run{'; ' + hint if hint else ''}"


def offload_hint(model: Any, estimate: MemoryEstimate) -> str:
    """What the user can do: SAM2-style cache options when the model has them, else general advice."""
    if hasattr(model, "cache_device"):
        if estimate.on_accelerator:
            return "offload the feature cache with --model-arg cache_device=cpu or halve it with --model-arg cache_dtype=bfloat16"
        return "halve the feature cache with --model-arg cache_dtype=bfloat16, or run fewer --workers"
    return "free memory or run fewer --workers (each worker holds one case)"


# -- header peeking ----------------------------------------------------------------------------------
def peek_image(path: str | Path) -> tuple[tuple[int, int, int], int] | None:
    """Shape and bytes per voxel from a file header without reading voxels; ``None`` when unknown
    (DICOM folders, unreadable or non-3D files: the readers report those properly)."""
    p = Path(path)
    try:
        if not p.is_file():
            return None
        if p.name.lower().endswith((".nii", ".nii.gz")):
            import nibabel as nib

            img = nib.load(str(p))
            shape = tuple(int(s) for s in img.shape)
            itemsize = int(np.dtype(img.get_data_dtype()).itemsize)
        else:
            import SimpleITK as sitk

            reader = sitk.ImageFileReader()
            reader.SetFileName(str(p))
            reader.ReadImageInformation()
            shape = tuple(int(s) for s in reader.GetSize())
            itemsize = _sitk_itemsize(reader.GetPixelID()) * int(reader.GetNumberOfComponents())
    except Exception:  # any header problem: the reader gives the proper message later
        return None
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        return None
    return shape, itemsize  # type: ignore[return-value]


def _sitk_itemsize(pixel_id: int) -> int:
    import SimpleITK as sitk

    sizes = {
        sitk.sitkUInt8: 1, sitk.sitkInt8: 1, sitk.sitkUInt16: 2, sitk.sitkInt16: 2,
        sitk.sitkUInt32: 4, sitk.sitkInt32: 4, sitk.sitkUInt64: 8, sitk.sitkInt64: 8,
        sitk.sitkFloat32: 4, sitk.sitkFloat64: 8,
    }
    return sizes.get(pixel_id, 8)


def header_grid_problem(image: str | Path, labels: Sequence[str | Path]) -> str | None:
    """Why the label files cannot lie on the image's grid, judged from the headers alone (no
    voxel read), or ``None`` (also when a header cannot be peeked: the readers judge then).

    A label's stored shape must equal the image's; a ``.seg.nrrd`` (3D Slicer crops segments) may
    be smaller in every axis, never larger.
    """
    from annosim.data.readers import is_seg_nrrd

    img = peek_image(image)
    if img is None:
        return None
    for label in labels:
        lab = peek_image(label)
        if lab is None or lab[0] == img[0]:
            continue
        if is_seg_nrrd(label) and all(a <= b for a, b in zip(lab[0], img[0])):
            continue
        return (f"{label}: label grid does not match image {image}: its header declares "
                f"{'x'.join(map(str, lab[0]))} voxels vs {'x'.join(map(str, img[0]))}; not read")
    return None


def estimate_from_header(
    image: str | Path, label: str | Path | None, model: Any, *, kept_predictions: int = 0
) -> MemoryEstimate | None:
    """Estimate for a case not read yet, from its files' headers; ``None`` when a header is unknown.

    The stored shape ``(I, J, K)`` is taken reversed as ``(Z, Y, X)``: NIfTI, NRRD and MHA files
    as converters write them keep the axial slices on ``K``.
    """
    peeked = peek_image(image)
    if peeked is None:
        return None
    lab = peek_image(label) if label else None
    return estimate_case(
        peeked[0][::-1],
        model,
        image_itemsize=peeked[1],
        label_itemsize=lab[1] if lab is not None else 1,
        kept_predictions=kept_predictions,
    )


def memory_refusal(
    image: str | Path,
    estimate: MemoryEstimate,
    model: Any,
    *,
    host_available: int | None = None,
    device_available: int | None = None,
) -> str | None:
    """One line naming ``image`` when ``estimate`` does not fit, else ``None``.

    Available memory is measured now when not given (host: :func:`available_host_memory`;
    the model's CUDA device: :func:`available_device_memory`).
    """
    if host_available is None:
        host_available = available_host_memory()
    if device_available is None and estimate.on_accelerator:
        device_available = available_device_memory(estimate.model_device)
    why = refusal(estimate, host_available, device_available, offload_hint(model, estimate))
    return None if why is None else f"{image}: {why}"
