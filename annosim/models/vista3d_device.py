"""VISTA3D's per-click steps kept on the network's device.

MONAI 1.6.1's ``monai.apps.vista3d.inferer.point_based_window_inferer`` stitches the windows on
the CPU (``stitched_output`` is allocated with ``device="cpu"``, every window output and the
whole previous mask are moved there), and ``monai.transforms.utils.keep_components_with_positive_points``
labels components with scikit-image on a numpy copy. On a GPU that is two volume-sized round trips
per click. :func:`point_window_logits` and :func:`keep_positive_components` do the same
computations on the tensors' own device:

- windows: the input and the previous logits are zero-padded up to the ROI (half before, the rest
  after), one ROI-sized window per new click (``center_only=True``): ``[0, roi)`` when
  ``p - roi // 2 < 0``, ``[s - roi, s)`` when ``p + roi // 2 > s``, else
  ``[p - roi // 2, p + roi // 2)``; window outputs are *summed* where windows overlap and the
  stitch is divided by a 0/1 coverage mask (MONAI sets the mask to 1, it does not count), so
  unreached voxels are NaN, then take the previous logits where there are some.
- components: the voxels with logit > 0 in the 26-connected components that hold a positive click
  (label 1 or 3) are kept; the other foreground voxels get the mean logit of all non-NaN voxels
  outside the kept components. On a CPU tensor MONAI's function itself runs (scikit-image); on
  other devices the kept components are grown from the clicked voxels by repeated 3x3x3 dilation
  inside the foreground until nothing changes, which selects the same voxels.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

#: Devices on which :func:`keep_positive_components` calls MONAI's scikit-image labelling (the
#: tensor is already on the host there, so no copy is made).
HOST_LABELLING_DEVICES: tuple[str, ...] = ("cpu",)

#: Dilation steps between two convergence checks (each check is one scalar device->host sync).
DILATIONS_PER_CHECK = 8


def _roi_pad(shape: Sequence[int], roi: Sequence[int]) -> list[int]:
    """``F.pad`` widths (last axis first) that bring the 3 spatial ``shape`` up to ``roi``."""
    pad: list[int] = []
    for n, r in zip(reversed(list(shape)), reversed(list(roi))):
        diff = max(int(r) - int(n), 0)
        pad.extend([diff // 2, diff - diff // 2])
    return pad


def _window(p: int, roi: int, size: int) -> slice:
    """The ROI window along one axis for a click at index ``p`` of an axis of ``size`` voxels."""
    if p - roi // 2 < 0:
        return slice(0, roi)
    if p + roi // 2 > size:
        return slice(size - roi, size)
    return slice(p - roi // 2, p + roi // 2)


def point_window_logits(
    image: torch.Tensor,
    roi_size: Sequence[int],
    predictor: torch.nn.Module,
    point_coords: torch.Tensor,
    point_labels: torch.Tensor,
    points_host: np.ndarray,
    class_vector: torch.Tensor | None = None,
    prompt_class: torch.Tensor | None = None,
    prev_mask: torch.Tensor | None = None,
    point_start: int = 0,
) -> torch.Tensor:
    """Logits ``(1, 1, H, W, D)`` float32 on ``image``'s device from windows centred on clicks
    ``point_start..`` (as MONAI's ``point_based_window_inferer``, ``center_only=True``).

    ``image`` is ``(1, 1, H, W, D)``; ``point_coords`` ``(1, N, 3)`` and ``point_labels`` ``(1, N)``
    are on the device, ``points_host`` ``(N, 3)`` int holds the same coordinates on the host (the
    window positions are computed from it, so no device value is read back). Voxels that no
    window reached and ``prev_mask`` does not cover are NaN.
    """
    spatial = tuple(int(s) for s in image.shape[-3:])
    pad = _roi_pad(spatial, roi_size)
    padded = F.pad(image, pad, mode="constant", value=0) if any(pad) else image
    offset = (pad[4], pad[2], pad[0])
    coords = point_coords + torch.tensor(offset, device=point_coords.device)
    prev = None
    if prev_mask is not None:
        prev = F.pad(prev_mask, pad, mode="constant", value=0) if any(pad) else prev_mask
    full = tuple(int(s) for s in padded.shape[-3:])
    stitched: torch.Tensor | None = None
    covered: torch.Tensor | None = None
    for p in np.asarray(points_host, dtype=np.int64).reshape(-1, 3)[point_start:]:
        window = tuple(_window(int(c) + o, int(r), s) for c, o, r, s in zip(p, offset, roi_size, full))
        index = (slice(None), slice(None), *window)
        out = predictor(
            padded[index],
            point_coords=coords,
            point_labels=point_labels,
            class_vector=class_vector,
            prompt_class=prompt_class,
            patch_coords=[index],
            prev_mask=prev,
            transpose=True,
        )
        if stitched is None:
            stitched = torch.zeros((1, out.shape[1], *full), device=image.device)
            covered = torch.zeros((1, out.shape[1], *full), device=image.device)
        stitched[index] += out
        covered[index] = 1  # type: ignore[index]
    if stitched is None or covered is None:
        raise ValueError("no click from point_start on: no window to run")
    stitched = stitched / covered
    crop = (
        slice(None),
        slice(None),
        slice(pad[4], full[0] - pad[5]),
        slice(pad[2], full[1] - pad[3]),
        slice(pad[0], full[2] - pad[1]),
    )
    stitched, covered = stitched[crop], covered[crop]
    if prev is not None:
        prev = prev[crop]
        unreached = covered < 1
        stitched[unreached] = prev[unreached].to(stitched.dtype)
    return stitched.as_subclass(torch.Tensor)


def positive_component_mask(foreground: torch.Tensor, seeds: np.ndarray) -> torch.Tensor:
    """bool mask of the 26-connected components of ``foreground`` (bool ``(H, W, D)``) that hold
    a voxel of ``seeds`` (``(K, 3)`` int indices); grown on ``foreground``'s device."""
    grown = torch.zeros_like(foreground)
    if len(seeds):
        idx = torch.as_tensor(np.asarray(seeds, dtype=np.int64).T, device=foreground.device)
        grown[idx[0], idx[1], idx[2]] = foreground[idx[0], idx[1], idx[2]]
    fg = foreground[None, None].to(torch.float32)
    g = grown[None, None].to(torch.float32)
    while True:
        before = g
        for _ in range(DILATIONS_PER_CHECK):
            g = F.max_pool3d(g, kernel_size=3, stride=1, padding=1) * fg
        if torch.equal(g, before):
            return g[0, 0] > 0


def keep_positive_components(
    logits: torch.Tensor, point_coords: np.ndarray, point_labels: np.ndarray
) -> torch.Tensor:
    """``logits`` ``(1, 1, H, W, D)`` with foreground not connected to a positive click (label 1
    or 3) set to the mean non-NaN logit outside the kept components (MONAI's
    ``keep_components_with_positive_points``, one object); a new tensor on ``logits``' device.

    ``point_coords`` ``(N, 3)`` network-grid indices and ``point_labels`` ``(N,)`` (after
    ``convert_point_label``) are host arrays.
    """
    coords = np.asarray(point_coords, dtype=np.float64).reshape(-1, 3)
    labels = np.asarray(point_labels, dtype=np.int64).reshape(-1)
    if logits.device.type in HOST_LABELLING_DEVICES:
        from monai.transforms.utils import keep_components_with_positive_points

        return keep_components_with_positive_points(
            logits.clone(), torch.as_tensor(coords[None]), torch.as_tensor(labels[None])
        )
    out = logits.clone()
    positive = (labels == 3) | (labels == 1)
    if not positive.any():
        return out
    img = out[0, 0]
    seeds = np.rint(np.concatenate([coords[labels == 3], coords[labels == 1]])).astype(np.int64)
    foreground = img > 0
    kept = positive_component_mask(foreground, seeds)
    fill = img[~kept & ~torch.isnan(img)].mean()
    img[foreground & ~kept] = fill
    return out


def as_device_tensor(value: Any, device: torch.device) -> torch.Tensor:
    """A plain float32 tensor on ``device`` (a MONAI MetaTensor loses its metadata)."""
    return torch.as_tensor(value).as_subclass(torch.Tensor).to(device=device, dtype=torch.float32)
