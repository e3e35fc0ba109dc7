"""QC images on synthetic volumes: object ranking, slice choice, rendering, saved predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from annosim.errors import InputError
from annosim.report import qc
from annosim.report.results_io import load_predictions, prediction_path


def _objects(best: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"case": [f"c{i}" for i in range(len(best))], "label": 1, "best_dice": best})


def test_pick_worst_median_best():
    picks = qc.pick_objects(_objects([0.9, 0.1, 0.5, 0.7, 0.3]))
    assert [(rank, row["best_dice"]) for rank, row in picks] == [("worst", 0.1), ("median", 0.5), ("best", 0.9)]
    picks = qc.pick_objects(_objects([0.9, 0.1, 0.5, 0.7]))  # lower median
    assert [row["best_dice"] for _, row in picks] == [0.1, 0.5, 0.9]
    picks = qc.pick_objects(_objects([0.6, 0.2]))
    assert [(rank, row["case"]) for rank, row in picks] == [("worst", "c1"), ("best", "c0")]
    assert [rank for rank, _ in qc.pick_objects(_objects([0.4]))] == ["only object"]
    assert qc.pick_objects(_objects([])) == []


def test_slice_choice():
    prompts = [{"round": 1, "z": 4}, {"round": 1, "z": 4}, {"round": 2, "z": 7}, {"round": 2, "z": 2}]
    assert qc._round_slice(prompts, 1) == 4 and qc._round_slice(prompts, 2) == 2
    assert qc._round_slice(prompts, 3) is None
    truth = np.zeros((5, 8, 8), bool)
    truth[1:4, 2:6, 2:6] = True
    pred = truth.copy()
    pred[3, 2:4, 2:6] = False  # 8 wrong voxels on slice 3
    pred[0, 0, 0] = True       # 1 wrong voxel on slice 0
    assert qc._worst_slice(truth, pred) == 3
    assert qc._worst_slice(truth, truth) == 1  # no error: the first slice with the most truth


def test_render_object_png(tmp_path):
    z, y, x = np.mgrid[0:6, 0:40, 0:40]
    image = (np.hypot(y - 20, x - 20) < 12) * 60.0 - 100.0 + z
    truth = np.hypot(y - 20, x - 20) < 8
    pred = np.hypot(y - 21, x - 22) < 7
    rounds = pd.DataFrame({"round": [1, 2, 3], "dice": [0.6, 0.7, 0.72]})
    prompts = [{"round": 1, "kind": "point", "z": 2, "y": 20, "x": 20, "positive": True},
               {"round": 2, "kind": "point", "z": 4, "y": 14, "x": 25, "positive": False},
               {"round": 3, "kind": "box", "z": 1, "y0": 12, "x0": 12, "y1": 28, "x1": 28}]
    obj = qc.QCObject("disc - full - best - case c0", image.astype(np.float32), truth, rounds, prompts,
                      {1: pred, 2: pred, 3: None})
    path = qc.render_object(obj, tmp_path / "q" / "x.png", dpi=80)
    img = Image.open(path)
    assert img.size == (round(max(2.3 * 3, 4.6) * 80), round(2.75 * 80))
    a = np.asarray(img.convert("RGB")).astype(int)
    assert np.any(a < 235, axis=2).mean() > 0.2  # three CT panels
    green = (a[..., 1] > 180) & (a[..., 0] < 90) & (a[..., 2] < 90)
    assert green.sum() > 30  # the truth outline is drawn


def test_saved_predictions_layout(tmp_path):
    mask = np.zeros((3, 4, 5), bool)
    mask[1, 2, 3] = True
    p = prediction_path(tmp_path, "case1", 2, "fg-only", "he2024")
    assert p == tmp_path / "predictions" / "case1" / "he2024__2__fg-only.npz"
    p.parent.mkdir(parents=True)
    np.savez_compressed(p, round_1=mask, round_2=~mask)
    got = load_predictions(tmp_path, "case1", 2, "fg-only", "he2024")
    assert sorted(got) == [1, 2] and np.array_equal(got[1], mask) and np.array_equal(got[2], ~mask)
    assert load_predictions(tmp_path, "case1", 2, "full", "he2024") == {}
    p.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="unreadable predictions"):
        load_predictions(tmp_path, "case1", 2, "fg-only", "he2024")
