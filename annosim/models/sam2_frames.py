"""CT slices as SAM2 video frames, built in memory.

The path reproduces what SAM2's JPEG-folder reader (``sam2.utils.misc.load_video_frames``,
sam2 1.1.0) does with a folder of frames, without writing any file:

1. HU -> uint8: ``(hu - lo) / (hi - lo) * 255`` in float32, clipped to [0, 255] and truncated
   (the reference's ``ScaleIntensityRange`` followed by ``astype(np.uint8)``); window
   ``(lo, hi) = (-1000, 1000)`` by default.
2. Codec ``"raw"``: the grey slice becomes an RGB image with three equal channels.
   Codec ``"jpeg"`` (variant ``he2024-vista``): the grey slice is encoded as a JPEG with
   Pillow's default quality and decoded again, as the reference wrote and SAM2 read its frames.
3. SAM2's own reading: ``PIL.Image.convert("RGB").resize((S, S))`` (Pillow's default filter),
   ``/ 255.0`` (float64), cast to float32, minus ``img_mean`` and divided by ``img_std``.

Every step uses the same operations in the same precision, so a frame tensor is bitwise equal to
the one SAM2 builds when it reads the same pixels from a folder.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

#: SAM2's normalisation constants (``load_video_frames`` defaults).
IMG_MEAN = (0.485, 0.456, 0.406)
IMG_STD = (0.229, 0.224, 0.225)
#: Frame codecs: ``raw`` (lossless, in memory) and ``jpeg`` (the reference's lossy round trip).
CODECS = ("raw", "jpeg")


def hu_to_uint8(volume: np.ndarray, window: tuple[float, float] = (-1000.0, 1000.0)) -> np.ndarray:
    """Window HU to uint8 grey levels.

    Parameters
    ----------
    volume : ndarray, shape (Z, Y, X)
        Hounsfield units (any real dtype; computed in float32).
    window : (lo, hi)
        HU mapped to 0 and 255; values outside are clipped.

    Returns
    -------
    ndarray of uint8, shape (Z, Y, X)
        ``trunc(clip((hu - lo) / (hi - lo) * 255, 0, 255))``.

    >>> hu_to_uint8(np.array([[[-2000.0, -1000.0, 0.0, 1.0, 999.0, 1000.0, 3000.0]]])).tolist()
    [[[0, 0, 127, 127, 254, 255, 255]]]
    """
    lo, hi = float(window[0]), float(window[1])
    if not hi > lo:
        raise ValueError(f"window must satisfy lo < hi, got {window}")
    v = np.asarray(volume, dtype=np.float32)
    scaled = (v - np.float32(lo)) / np.float32(hi - lo) * np.float32(255.0)
    return np.clip(scaled, 0.0, 255.0).astype(np.uint8)


def jpeg_round_trip(frame: np.ndarray) -> np.ndarray:
    """Encode a grey uint8 slice ``(Y, X)`` as JPEG (Pillow's default quality) and decode it.

    Returns the decoded grey ``(Y, X)`` uint8 slice, as Pillow reads the file back.
    """
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8)).save(buf, format="JPEG")
    buf.seek(0)
    with Image.open(buf) as img:
        return np.array(img.convert("L"))


def sam2_input(gray: np.ndarray, image_size: int) -> "torch.Tensor":  # noqa: F821
    """SAM2's reading of one grey uint8 slice ``(Y, X)``: a float32 tensor ``(3, S, S)``.

    Resized with Pillow's default filter from the RGB image, scaled by 1/255 and normalised with
    SAM2's ``img_mean``/``img_std``, exactly as ``load_video_frames`` does for a JPEG folder.
    """
    import torch
    from PIL import Image

    rgb = Image.fromarray(np.ascontiguousarray(gray, dtype=np.uint8)).convert("RGB")
    arr = np.array(rgb.resize((image_size, image_size))) / 255.0  # float64, as SAM2
    img = torch.from_numpy(arr).permute(2, 0, 1).to(torch.float32)
    img -= torch.tensor(IMG_MEAN, dtype=torch.float32)[:, None, None]
    img /= torch.tensor(IMG_STD, dtype=torch.float32)[:, None, None]
    return img


@dataclass
class SliceFrames:
    """The frames of one case: grey uint8 slices and how SAM2 sees them.

    Attributes
    ----------
    gray : ndarray of uint8, shape (Z, Y, X)
        Windowed slices (before any codec).
    image_size : int
        SAM2's square input size S.
    codec : str
        ``"raw"`` or ``"jpeg"``.
    """

    gray: np.ndarray
    image_size: int
    codec: str = "raw"

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"frame codec must be one of {CODECS}, got {self.codec!r}")
        if self.gray.ndim != 3 or self.gray.dtype != np.uint8:
            raise ValueError("gray must be a uint8 (Z, Y, X) array")

    @classmethod
    def from_hu(
        cls,
        volume: np.ndarray,
        image_size: int,
        codec: str = "raw",
        window: tuple[float, float] = (-1000.0, 1000.0),
    ) -> "SliceFrames":
        """Frames of a HU volume ``(Z, Y, X)``."""
        return cls(hu_to_uint8(volume, window), int(image_size), codec)

    @property
    def num_slices(self) -> int:
        return int(self.gray.shape[0])

    @property
    def height(self) -> int:
        return int(self.gray.shape[1])

    @property
    def width(self) -> int:
        return int(self.gray.shape[2])

    def pixels(self, z: int) -> np.ndarray:
        """Grey uint8 ``(Y, X)`` pixels of slice ``z`` as SAM2 reads them (after the codec)."""
        g = self.gray[z]
        return jpeg_round_trip(g) if self.codec == "jpeg" else g

    def tensor(self, z: int) -> "torch.Tensor":  # noqa: F821
        """Normalised float32 input ``(3, S, S)`` of slice ``z``."""
        return sam2_input(self.pixels(z), self.image_size)
