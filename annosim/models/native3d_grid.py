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

    def net_to_volume(self, net: torch.Tensor) -> torch.Tensor:
        """Network-grid float tensor ``(*net_shape)`` -> canonical ``(Z, Y, X)`` float tensor."""
        t = net.float()
        if tuple(t.shape) != self.ras_shape:
            t = F.interpolate(t[None, None], size=self.ras_shape, mode="trilinear", align_corners=True)[0, 0]
        return t.flip(0, 1).permute(2, 1, 0)

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
