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


# -- canonical view, protocol in the title, wrapped rows (issue 13) -------------------------------

def _disc_object(n_rounds: int, protocol: str = "ritm-noc") -> qc.QCObject:
    z, y, x = np.mgrid[0:4, 0:30, 0:30]
    image = (np.hypot(y - 15, x - 15) < 10) * 60.0 - 100.0
    truth = np.hypot(y - 15, x - 15) < 6
    rounds = pd.DataFrame({"round": np.arange(1, n_rounds + 1), "dice": np.linspace(0.5, 0.9, n_rounds)})
    prompts = [{"round": k, "kind": "point", "z": 2, "y": 15, "x": 15, "positive": True} for k in range(1, n_rounds + 1)]
    return qc.QCObject("disc - full - best - case c0", image.astype(np.float32), truth, rounds, prompts,
                       {}, protocol=protocol)


def test_many_rounds_wrap_into_rows(tmp_path):
    """Rule: 20 rounds (ritm-noc) make 4 rows of 5 panels, each panel 2.3 x 2.75 in."""
    assert qc.grid_shape(20) == (4, 5) and qc.grid_shape(3) == (1, 3) and qc.grid_shape(6) == (2, 5)
    path = qc.render_object(_disc_object(20), tmp_path / "many.png", dpi=50)
    assert Image.open(path).size == (round(2.3 * 5 * 50), round(2.75 * 4 * 50))


def test_protocol_in_title():
    """Rule: every QC image's title names the protocol."""
    assert qc.image_title(_disc_object(2, "he2024-vista")) == "disc - full - best - case c0 - protocol he2024-vista"


def test_as_stored_drawn_as_canonical(tmp_path):
    """Rule: an as-stored run is turned to the canonical view for display: its QC image equals the
    canonical run's image of the same object (stored axes flipped and transposed by the affine)."""
    from annosim.data.orientation import orient

    rng = np.random.default_rng(3)
    shape = (24, 20, 5)  # stored (I, J, K); axis k is the slice axis of as-stored
    data = rng.normal(0, 80, shape).astype(np.float32)
    ii, jj = np.mgrid[0:24, 0:20]
    truth = np.zeros(shape, bool)
    truth[..., 1:4] = ((ii - 9) ** 2 / 25 + (jj - 12) ** 2 / 9 < 1)[..., None]  # asymmetric ellipse
    data[truth] += 150
    affine = np.diag([0.8, 0.8, -2.5, 1.0])  # i -> R, j -> A, k -> I: canonical flips all three
    stored_points = [(10, 12, 2, True), (7, 11, 2, False), (9, 13, 3, True)]  # (i, j, k, positive)

    def where(orientation: str, i: int, j: int, k: int) -> tuple[int, int, int]:
        marker = np.zeros(shape, bool)
        marker[i, j, k] = True
        return tuple(int(v) for v in np.argwhere(orient(marker, affine, orientation)[0])[0])

    objs = {}
    for orientation in ("as-stored", "canonical"):
        image, geometry = orient(data, affine, orientation)
        mask = orient(truth, affine, orientation)[0]
        prompts = []
        for r, (i, j, k, pos) in enumerate(stored_points, 1):
            z, y, x = where(orientation, i, j, k)
            prompts.append({"round": r, "kind": "point", "z": z, "y": y, "x": x, "positive": pos})
        b0, b1 = where(orientation, 5, 9, 2), where(orientation, 14, 16, 2)
        prompts.append({"round": 3, "kind": "box", "z": b0[0], "y0": min(b0[1], b1[1]), "x0": min(b0[2], b1[2]),
                        "y1": max(b0[1], b1[1]), "x1": max(b0[2], b1[2])})
        rounds = pd.DataFrame({"round": [1, 2, 3], "dice": [0.5, 0.6, 0.7]})
        pred = orient(np.roll(truth, 2, axis=0), affine, orientation)[0]  # a shifted prediction
        objs[orientation] = qc.QCObject("ellipse", image, mask, rounds, prompts, {1: pred, 2: pred, 3: None},
                                        protocol="he2024-vista", geometry=geometry)
    assert objs["as-stored"].image.shape == (5, 24, 20) and objs["canonical"].image.shape == (5, 20, 24)
    turned = qc.to_canonical(objs["as-stored"])
    np.testing.assert_array_equal(turned.image, objs["canonical"].image)
    np.testing.assert_array_equal(turned.truth, objs["canonical"].truth)
    np.testing.assert_array_equal(turned.predictions[1], objs["canonical"].predictions[1])
    assert turned.prompts == objs["canonical"].prompts
    pngs = {o: np.asarray(Image.open(qc.render_object(obj, tmp_path / f"{o}.png", dpi=60)).convert("RGB"))
            for o, obj in objs.items()}
    title_rows = round(0.3 * 60) + 2  # the titles differ ("as-stored run, shown in the canonical view")
    np.testing.assert_array_equal(pngs["as-stored"][title_rows:], pngs["canonical"][title_rows:])
    assert not np.array_equal(pngs["as-stored"][:title_rows], pngs["canonical"][:title_rows])
