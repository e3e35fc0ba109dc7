"""The click arithmetic of He et al.'s reference script, computation for computation.

``he2024-vista`` (README, Protocols) reproduces Project-MONAI/VISTA
``vista3d/scripts/validation/val_multigpu_sam2_point_iterative.py`` click for click. Where
several pixels are (nearly) equally good, which one that script picks is decided by float32
rounding and by the order ``torch.sort`` (not a stable sort) returns, not by a tie rule; these
functions therefore do the same computations with the same libraries:

- :func:`reference_first_click` is ``get_points_from_label``: MONAI's largest connected
  component of the array in the reference's axis order ``(Y, X, Z)``, the per-axis float32 mean
  of its voxel indices, float32 squared distances, index 0 of ``torch.sort``.
- :func:`reference_center` is ``get_center_points``: the same on a slice, the mean being one
  scalar over all coordinates of all pixels.
- :func:`reference_slice_scores` is the worst-slice loop's per-slice score: Dice in float32 as
  MONAI's ``compute_dice`` returns it, and the tie-break ``torch.abs(pred - label).sum()`` on
  uint8 masks, where a missed pixel wraps around to 255 and an extra pixel counts 1.

torch is needed (as it is by SAM2, the model this variant is meant for); without it the
protocol is refused before a run starts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from annosim.errors import ConfigError
from annosim.metrics.functions import per_slice_counts

#: What a missed pixel adds to the reference's error count (``0 - 1`` in uint8).
UINT8_WRAP = 255


def require_torch() -> Any:
    """The ``torch`` module, or :class:`ConfigError` saying why the variant needs it."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is installed wherever tests run
        raise ConfigError(
            "he2024-vista reproduces the reference script's torch arithmetic (float32 means, "
            "torch.sort): install torch, e.g. pip install torch"
        ) from exc
    return torch


def check_torch_installed() -> None:
    """:class:`ConfigError` when torch cannot be imported (checked before a run, without
    importing it)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:  # pragma: no cover - torch is installed in tests
        require_torch()


def nearest_to_mean(coords: np.ndarray, scalar: bool) -> int:
    """Row of int ``coords`` (N, D) the reference picks as nearest to their mean.

    The mean is per axis (``scalar=False``) or one number over all coordinates
    (``scalar=True``), in float32; distances are float32 sums of squares; the answer is
    index 0 of ``torch.sort`` of the distances.
    """
    torch = require_torch()
    pts = torch.from_numpy(np.ascontiguousarray(coords, dtype=np.int64))
    mean = pts.float().mean() if scalar else pts.float().mean(0)
    dist = ((pts - mean) ** 2).sum(-1)
    _, order = torch.sort(dist)
    return int(order[0])


def monai_largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest fully connected component of a bool mask as MONAI's
    ``get_largest_connected_component_mask`` computes it on the CPU.

    scikit-image labels the components in raster order of ``mask`` as given; the largest is
    ``argsort(counts)[::-1][0]`` (numpy's default, unstable sort), which decides between
    equal sizes. A mask with at most one component is returned as it is.
    """
    from skimage import measure

    features, n = measure.label(mask, connectivity=mask.ndim, return_num=True)
    if n <= 1:
        return np.asarray(mask, dtype=bool)
    counts = np.bincount(features.reshape(-1))
    counts[0] = 0
    keep = np.zeros(counts.shape[0], dtype=bool)
    keep[np.argsort(counts)[::-1][:1]] = True
    return keep[features]


def reference_first_click(gt: np.ndarray) -> tuple[int, int, int]:
    """``get_points_from_label`` on a bool ``(Z, Y, X)`` truth; returns ``(z, y, x)``.

    ``gt`` is the object's video as the reference builds it: in ``fg-only`` the slices that
    hold foreground, stacked, so ``z`` indexes that stack. The computation runs on the array
    transposed to the reference's ``(Y, X, Z)`` order, as that order decides ties.
    """
    yxz = np.ascontiguousarray(np.asarray(gt, dtype=bool).transpose(1, 2, 0))
    coords = np.argwhere(monai_largest_component(yxz))  # the order of torch.nonzero
    if coords.shape[0] == 0:
        raise ValueError("empty ground truth: no first click")
    y, x, z = coords[nearest_to_mean(coords, scalar=False)]
    return int(z), int(y), int(x)


def reference_center(region: np.ndarray) -> tuple[int, int] | None:
    """``get_center_points`` on a bool ``(Y, X)`` region; ``None`` when it is empty."""
    coords = np.argwhere(region)
    if coords.shape[0] == 0:
        return None
    y, x = coords[nearest_to_mean(coords, scalar=True)]
    return int(y), int(x)


def reference_slice_scores(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-slice score of the reference's worst-slice loop for bool ``(Z, Y, X)`` masks.

    Returns ``(dice, errors)``: float32 ``(Z,)`` Dice ``2|P∧G| / (|P| + |G|)`` (1 where both
    are empty; the reference only looks at slices with truth) and int64 ``(Z,)``
    ``255·|G∧¬P| + |P∧¬G|``.

    >>> p = np.zeros((2, 4, 4), bool); g = p.copy()
    >>> g[0, :2, :2] = True; p[0, :2, :1] = True         # slice 0: 2 missed pixels
    >>> g[1, :1, :2] = True; p[1, :1, :2] = p[1, 1, 0] = True   # slice 1: 1 extra pixel
    >>> d, e = reference_slice_scores(p, g); d.dtype.name, [round(float(v), 4) for v in d], e.tolist()
    ('float32', [0.6667, 0.8], [510, 1])
    """
    sp, sg, si = per_slice_counts(pred, gt)
    total = sp + sg
    dice = np.ones(total.shape[0], dtype=np.float32)
    nz = total > 0
    dice[nz] = (2 * si[nz]).astype(np.float32) / total[nz].astype(np.float32)
    errors = UINT8_WRAP * (sg - si) + (sp - si)
    return dice, errors.astype(np.int64)
