"""A re-enactment of the he2024 reference script's click loop, written from DESIGN section 5
("Variant he2024-vista") for tests: it works as the reference does — on the object's truth in the
reference's axis order ``(Y, X, Z)``, with torch tensors, MONAI's ``compute_dice`` and
``get_largest_connected_component_mask``, scipy's ``binary_erosion`` — and drives an annosim
model through the calls the reference makes to SAM2 (reset, all clicks again, propagate).

It shares no code with ``annosim.protocols``: a test runs it beside annosim's ``he2024-vista``
and compares every click. The one random click per round cannot be matched across programs;
``pick_random`` decides it (the test hands over annosim's pick after checking it lies in the set
the reference would draw from, with the label the reference would give).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from monai.metrics import compute_dice
from monai.transforms.utils import get_largest_connected_component_mask
from scipy.ndimage import binary_erosion

#: ``pick_random(round_index, candidates (N, 2) int64 (y, x), label) -> (y, x)``.
RandomPick = Callable[[int, np.ndarray, int], tuple[int, int]]


@dataclass
class Session:
    """What the re-enactment did for one object: per round (index 0 = the initial slice) the
    clicks that reached the model, as ``(z, y, x, label)`` with ``z`` a volume slice index, and
    the float32 volume Dice after each propagation."""

    clicks: list[list[tuple[int, int, int, int]]] = field(default_factory=list)
    dice: list[float] = field(default_factory=list)


def _nearest_to_mean(points: torch.Tensor, per_axis: bool) -> torch.Tensor:
    mean = points.float().mean(0) if per_axis else points.float().mean()
    _, order = torch.sort(((points - mean) ** 2).sum(-1))
    return points[order[0]]


def _eroded(mask: torch.Tensor) -> torch.Tensor:
    out = binary_erosion(mask.numpy(), structure=np.ones((3, 3), np.uint8)).astype(np.uint8)
    return torch.nonzero(torch.from_numpy(out))


def _false_points(pred: torch.Tensor, gt: torch.Tensor, three: bool, rnd: int,
                  pick_random: RandomPick) -> list[tuple[int, int, int]]:
    """The reference's points from the errors of one slice, as ``(y, x, label)``."""
    negatives = _eroded(torch.logical_and(torch.logical_not(gt), pred))   # eroded FP
    positives = _eroded(torch.logical_and(torch.logical_not(pred), gt))   # eroded FN
    larger, lab = (positives, 1) if len(positives) > len(negatives) else (negatives, 0)
    out: list[tuple[int, int, int]] = []
    if not three:
        if len(larger):
            y, x = _nearest_to_mean(larger, per_axis=False).tolist()
            out.append((y, x, lab))
        return out
    if len(positives):
        y, x = _nearest_to_mean(positives, per_axis=False).tolist()
        out.append((y, x, 1))
    if len(negatives):
        y, x = _nearest_to_mean(negatives, per_axis=False).tolist()
        out.append((y, x, 0))
    if len(larger):
        y, x = pick_random(rnd, larger.numpy(), lab)
        out.append((int(y), int(x), lab))
    return out


def run_reference(model, truth_zyx: np.ndarray, fg_only: bool, pick_random: RandomPick,
                  max_iters: int = 8) -> Session:
    """Drive ``model`` (``set_volume`` done) on one object as the reference script does.

    ``truth_zyx`` is the bool ``(Z, Y, X)`` truth of an ``as-stored`` case (``volume[z, y, x] =
    data[y, x, z]``); the reference's array is its transpose ``(Y, X, Z)``.
    """
    label = torch.from_numpy(np.ascontiguousarray(truth_zyx.transpose(1, 2, 0)).astype(np.uint8))
    frames = np.arange(label.shape[-1])
    if fg_only:
        keep = (label.sum(0).sum(0) > 0).numpy()
        label = label[:, :, torch.from_numpy(keep)]
        frames = np.flatnonzero(keep)
    video = None if not fg_only else frames
    session = Session()
    pred = None
    worst = 0
    for it in range(max_iters):
        if it == 0:
            comp = get_largest_connected_component_mask(label == 1)
            y0, x0, z0 = _nearest_to_mean(torch.nonzero(comp), per_axis=True).tolist()
            points, labels = [(y0, x0)], [1]
            frame = z0
            for _ in range(4):
                model.start_object(video)
                slice_pred = model.add_clicks(int(frames[frame]), np.array(points), np.array(labels))
                new = _false_points(torch.from_numpy(np.asarray(slice_pred, bool)),
                                    label[:, :, frame].bool(), False, it, pick_random)
                sent = [(int(frames[frame]), y, x, lab) for (y, x), lab in zip(points, labels)]
                if not new:
                    break
                points.append(new[0][:2])
                labels.append(new[0][2])
            session.clicks.append(sent)
        else:
            frame = worst
            new = _false_points(pred[:, :, frame].bool(), label[:, :, frame].bool(), True, it,
                                pick_random)
            if not new:
                break
            model.add_clicks(int(frames[frame]), np.array([p[:2] for p in new]),
                             np.array([p[2] for p in new]), replace=True)
            session.clicks.append([(int(frames[frame]), y, x, lab) for y, x, lab in new])
        volume = np.asarray(model.propagate(), dtype=bool)
        pred = torch.from_numpy(np.ascontiguousarray(volume[frames].transpose(1, 2, 0))).to(torch.uint8)
        lowest, max_error = 1000.0, 0
        for d in range(pred.shape[-1]):
            if torch.sum(label[..., d]) > 0:
                dsc = compute_dice(y_pred=pred[..., d][None, None], y=label[..., d][None, None],
                                   include_background=False)
                if dsc < lowest:
                    worst, lowest = d, dsc
                    max_error = torch.abs(pred[..., d] - label[..., d]).sum()
                elif dsc == lowest:
                    err = torch.abs(pred[..., d] - label[..., d]).sum()
                    if max_error < err:
                        worst, max_error = d, err
        session.dice.append(float(compute_dice(y_pred=pred[None, None], y=label[None, None],
                                                include_background=False)))
    return session
