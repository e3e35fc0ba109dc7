"""Mapping between annosim's canonical ``(Z, Y, X)`` grid and a 3D network's own grid.

annosim's canonical volume (README, Data) has axis 0 running inferior -> superior, axis 1
anterior -> posterior and axis 2 from the patient's right to left: its axis codes are
``("S", "P", "L")``. Networks trained with MONAI's ``Orientationd(axcodes="RAS")`` expect axis 0
running left -> right, axis 1 posterior -> anterior and axis 2 inferior -> superior. The
permutation-and-flip between the two is

    ras[i, j, k] = canonical[k, Y - 1 - j, X - 1 - i]          (i < X, j < Y, k < Z)

so a voxel ``(z, y, x)`` sits at ``(X - 1 - x, Y - 1 - y, z)`` in the RAS array. On top of that the
RAS array may be resampled to another voxel size with trilinear interpolation on corner-aligned
grids (``align_corners=True``, as MONAI ``Spacingd(align_corners=True)``): an axis of ``n`` voxels
of size ``s`` becomes ``n' = max(1, round(n * s / t))`` voxels of size about ``t``, and index ``i``
maps to ``i * (n' - 1) / (n - 1)``.

The way back (network logits -> case grid, :class:`NetToCase`) is the same trilinear map written
as three 1D linear interpolations, one axis after the other (canonical z = RAS D first, then y,
then x), each ``a[lo] * w_lo + a[hi] * w_hi`` with separate multiply and add operations. Every
output voxel is computed by the same operations from the same inputs whether one slice or the
whole volume is asked for, so a slice equals that slice of the volume bit for bit. The 1D
weights are torch's (float32 positions ``o * scale``), so it agrees with
``F.interpolate(mode="trilinear", align_corners=True)`` to float rounding: only the order of the
products and sums differs (about 3e-7 relative on random values).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: Axis codes of annosim's canonical (Z, Y, X) volume (direction each index increases toward).
CANONICAL_AXCODES = ("S", "P", "L")


def resampled_size(n: int, spacing: float, target: float | None) -> int:
    """Voxels along an axis of ``n`` voxels of ``spacing`` mm resampled to ``target`` mm.

    ``target=None`` keeps the axis: ``n``.

    >>> resampled_size(30, 3.0, 1.5), resampled_size(101, 3.0, None)
    (60, 101)
    """
    if target is None:
        return int(n)
    return max(1, int(round(n * float(spacing) / float(target))))


@dataclass(frozen=True)
class RASGrid:
    """The canonical -> RAS (-> resampled) mapping of one case.

    Attributes
    ----------
    shape : tuple of 3 ints
        Canonical volume shape ``(Z, Y, X)``.
    spacing : tuple of 3 floats
        Canonical voxel size ``(sz, sy, sx)`` in mm.
    target_spacing : float or None
        Isotropic voxel size of the network grid in mm; ``None`` keeps the case's voxels.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    target_spacing: float | None = None

    @property
    def ras_shape(self) -> tuple[int, int, int]:
        """Shape of the RAS array before resampling: ``(X, Y, Z)``."""
        z, y, x = self.shape
        return (x, y, z)

    @property
    def ras_spacing(self) -> tuple[float, float, float]:
        """Voxel size of the RAS array before resampling: ``(sx, sy, sz)`` mm."""
        sz, sy, sx = self.spacing
        return (sx, sy, sz)

    @property
    def net_shape(self) -> tuple[int, int, int]:
        """Shape of the network grid (RAS, resampled)."""
        return tuple(  # type: ignore[return-value]
            resampled_size(n, s, self.target_spacing) for n, s in zip(self.ras_shape, self.ras_spacing)
        )

    # -- arrays ----------------------------------------------------------------------------------
    def to_ras(self, volume: np.ndarray) -> np.ndarray:
        """Canonical ``(Z, Y, X)`` array -> RAS ``(X, Y, Z)`` array (a view, not resampled)."""
        if tuple(volume.shape) != tuple(self.shape):
            raise ValueError(f"volume shape {volume.shape} != grid shape {self.shape}")
        return volume.transpose(2, 1, 0)[::-1, ::-1, :]

    def from_ras(self, ras: np.ndarray) -> np.ndarray:
        """RAS ``(X, Y, Z)`` array -> canonical ``(Z, Y, X)`` array (inverse of :meth:`to_ras`)."""
        return ras[::-1, ::-1, :].transpose(2, 1, 0)

    def volume_to_net(self, volume: np.ndarray) -> torch.Tensor:
        """Canonical float volume -> float32 tensor ``(1, 1, *net_shape)`` (trilinear resampling)."""
        ras = np.ascontiguousarray(self.to_ras(volume), dtype=np.float32)
        t = torch.from_numpy(ras)[None, None]
        if self.net_shape != self.ras_shape:
            t = F.interpolate(t, size=self.net_shape, mode="trilinear", align_corners=True)
        return t

    def net_to_case(self, device: torch.device | str = "cpu") -> "NetToCase":
        """The network -> canonical resampler of this grid, its tables on ``device``."""
        z, y, x = self.shape
        h, w, d = self.net_shape
        return NetToCase(
            (z, y, x),
            (
                AxisLerp.build(d, z, False, device),
                AxisLerp.build(w, y, True, device),  # canonical y = Y - 1 - RAS j
                AxisLerp.build(h, x, True, device),  # canonical x = X - 1 - RAS i
            ),
        )

    def net_to_volume(self, net: torch.Tensor) -> torch.Tensor:
        """Network-grid float tensor ``(*net_shape)`` -> canonical ``(Z, Y, X)`` float32 tensor
        (:class:`NetToCase`; its tables are built on each call, a model keeps one instead)."""
        return self.net_to_case(net.device).volume(net)

    # -- points ----------------------------------------------------------------------------------
    def points_to_net(self, zyx: np.ndarray) -> np.ndarray:
        """Canonical voxel indices ``(K, 3)`` ``(z, y, x)`` -> network-grid indices ``(K, 3)``.

        Indices are rounded to the nearest network voxel (int64).
        """
        zyx = np.asarray(zyx, dtype=np.float64).reshape(-1, 3)
        z, y, x = self.shape
        ras = np.stack([x - 1 - zyx[:, 2], y - 1 - zyx[:, 1], zyx[:, 0]], axis=1)
        scale = np.array(
            [(m - 1) / (n - 1) if n > 1 else 0.0 for n, m in zip(self.ras_shape, self.net_shape)]
        )
        return np.rint(ras * scale).astype(np.int64)


@dataclass(frozen=True)
class AxisLerp:
    """Linear interpolation along one axis on corner-aligned grids: output index ``o`` reads
    input indices ``lo[o]``, ``hi[o]`` with weights ``w_lo[o]``, ``w_hi[o]`` (tensors ``(n_out,)``
    on one device; weights ``None`` when the axis keeps its size: a plain gather)."""

    lo: torch.Tensor
    hi: torch.Tensor
    w_lo: torch.Tensor | None
    w_hi: torch.Tensor | None

    @classmethod
    def build(cls, n_in: int, n_out: int, reverse: bool, device: torch.device | str) -> "AxisLerp":
        """Tables for ``n_in`` -> ``n_out`` voxels (``align_corners=True``: output ``o`` sits at
        input position ``o * (n_in - 1) / (n_out - 1)``, 0 when ``n_out == 1``, computed in float32
        as torch's upsample kernels do); ``reverse`` flips the output axis."""
        f32 = np.float32
        scale = f32(n_in - 1) / f32(n_out - 1) if n_out > 1 else f32(0.0)
        pos = np.arange(n_out, dtype=f32) * scale  # float32, as torch's upsample kernels
        lo = np.minimum(np.floor(pos).astype(np.int64), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        frac = np.clip(pos - lo.astype(f32), f32(0.0), f32(1.0))
        if reverse:
            lo, hi, frac = lo[::-1], hi[::-1], frac[::-1]
        as_dev = lambda a, dt: torch.as_tensor(a.copy(), dtype=dt, device=device)  # noqa: E731
        if n_in == n_out:
            return cls(as_dev(lo, torch.int64), as_dev(hi, torch.int64), None, None)
        return cls(as_dev(lo, torch.int64), as_dev(hi, torch.int64),
                   as_dev(f32(1.0) - frac, torch.float32), as_dev(frac, torch.float32))

    def apply(self, t: torch.Tensor, axis: int, part: slice = slice(None)) -> torch.Tensor:
        """``t`` interpolated along ``axis`` to the output indices ``part`` of this axis."""
        a = t.index_select(axis, self.lo[part])
        if self.w_lo is None or self.w_hi is None:
            return a
        shape = [1] * t.dim()
        shape[axis] = -1
        b = t.index_select(axis, self.hi[part])
        return a * self.w_lo[part].view(shape) + b * self.w_hi[part].view(shape)


@dataclass(frozen=True)
class NetToCase:
    """Network-grid RAS tensor ``(H, W, D)`` -> canonical ``(Z, Y, X)`` float32 (module
    docstring), built by :meth:`RASGrid.net_to_case`: :meth:`slice` and :meth:`volume` agree bit
    for bit."""

    shape: tuple[int, int, int]
    axes: tuple[AxisLerp, AxisLerp, AxisLerp]  # canonical z, y, x

    def _resample(self, net: torch.Tensor, z: slice) -> torch.Tensor:
        t = net.float().permute(2, 1, 0)  # (D, W, H): canonical axis order, y and x reversed
        t = self.axes[0].apply(t, 0, z)
        t = self.axes[1].apply(t, 1)
        return self.axes[2].apply(t, 2)

    def volume(self, net: torch.Tensor) -> torch.Tensor:
        """The whole canonical volume ``(Z, Y, X)`` float32 on ``net``'s device."""
        return self._resample(net, slice(None))

    def slice(self, net: torch.Tensor, z: int) -> torch.Tensor:
        """Canonical slice ``z`` ``(Y, X)`` float32 on ``net``'s device (only its two network
        slices along D are read)."""
        return self._resample(net, slice(int(z), int(z) + 1))[0]
