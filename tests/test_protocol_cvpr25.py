"""cvpr25: each rule of the CVPR 2025 challenge's evaluation code (JunMa11/CVPR-MedSegFMCompetition
@748e862; ../shared/reference/protocol-sources.md section 5: B = get_boxes.py, I =
CVPR25_iter_eval.py) on hand-built masks where the right slice, box or click is known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from annosim.protocols.cvpr25 import (
    challenge_box,
    component_edt,
    error_click,
    seeded_argmax,
    upper_median_slice,
)
from annosim.protocols.registry import get_protocol
from scripted_boxes import ScriptedBoxModel


def run(protocol, model, gt, frames=None, rng=None):
    model.set_volume(np.zeros(gt.shape, np.float32), (1.0, 1.0, 1.0))
    return list(protocol.run_object(model, gt, frames, rng or np.random.default_rng(0)))


def slab(shape, zs, rows, cols):
    gt = np.zeros(shape, bool)
    for z in zs:
        gt[z, rows[0]:rows[1], cols[0]:cols[1]] = True
    return gt


def test_box_slice_is_the_upper_median_of_occupied_slices_for_even_n():
    """B L66-72: z_mid = sorted distinct occupied z [n // 2]; with n even the upper one."""
    gt = np.zeros((12, 4, 4), bool)
    gt[[2, 3, 7, 8], 1, 1] = True  # 4 occupied slices: upper median 7 (not 3, nor 2 + 6 // 2 = 5)
    gt[3, :, :] = True             # a heavy slice does not move it (distinct slices, not voxels)
    assert upper_median_slice(gt) == 7
    gt[9, 0, 0] = True             # n = 5: the median, 7
    assert upper_median_slice(gt) == 7
    gt[10, 0, 0] = True            # n = 6: index 3 -> 8
    assert upper_median_slice(gt) == 8


def test_box_margin_is_the_draw_times_size_over_256_clipped():
    """B L44-63: margins int(s * H / 256) rows and int(s * W / 256) columns, clipped to the slice."""
    m = np.zeros((300, 700), bool)
    m[2:101, 600:690] = True                         # tight box (2, 600, 100, 689)
    # s = 3: int(3 * 300 / 256) = 3 rows, int(3 * 700 / 256) = 8 columns
    assert challenge_box(m, 3) == (0, 592, 103, 697)  # y0 clipped
    assert challenge_box(m, 0) == (2, 600, 100, 689)
    assert challenge_box(m, 5) == (0, 587, 105, 699)  # 5 rows, 13 columns: y0 and x1 clipped


def test_box_margin_draw_comes_from_the_objects_generator():
    """B L51: one draw s = randint(0, 6) per object; here the run's generator's integers(0, 6)."""
    gt = slab((6, 256, 512), range(1, 5), (100, 120), (200, 230))
    for seed in range(6):
        model = ScriptedBoxModel()
        run(get_protocol("cvpr25", clicks=0), model, gt, rng=np.random.default_rng(seed))
        s = int(np.random.default_rng(seed).integers(0, 6))
        # on 256 x 512: s rows and 2 s columns
        assert model.calls_of("add_box") == [("add_box", 3, (100 - s, 200 - 2 * s, 119 + s, 229 + 2 * s))]
    model = ScriptedBoxModel()
    run(get_protocol("cvpr25", clicks=0, max_shift=0), model, gt)
    assert model.calls_of("add_box") == [("add_box", 3, (100, 200, 119, 229))]


def _cvpr_gt():
    return slab((12, 30, 30), range(3, 8), (5, 15), (5, 15))


def test_exactly_six_rounds_without_early_stop():
    """I L354-373, L474-486: 1 box run + exactly 5 click runs; a round without error adds no click
    and its prediction is the previous one (recorded as rounds 1-6)."""
    gt = _cvpr_gt()

    def vol(model):
        pred = gt.copy()
        if model.n_propagate == 1:
            pred[3:8, 5:15, 5:10] = False  # FN block 5 x 10 x 5: deepest voxels at depth 3
        return pred

    model = ScriptedBoxModel(volume_fn=vol)
    out = run(get_protocol("cvpr25", max_shift=0), model, gt)
    assert [o.round for o in out] == [1, 2, 3, 4, 5, 6]
    assert [o.clicks for o in out] == [0, 1, 1, 1, 1, 1]
    assert [len(o.prompts) for o in out] == [1, 1, 0, 0, 0, 0]
    assert model.n_propagate == 2 and all((o.prediction == gt).all() for o in out[1:])
    assert get_protocol("cvpr25").max_rounds == 6


def test_click_at_deepest_voxel_of_the_largest_error_component_labelled_by_truth():
    """I L377-426: largest 26-connected error component, voxel-unit EDT, label from the truth."""
    gt = _cvpr_gt()

    def vol(model):
        pred = gt.copy()
        if model.n_propagate == 1:
            pred[3:8, 5:15, 5:10] = False   # FN 5 x 10 x 5 (250 voxels)
        elif model.n_propagate == 2:
            pred[5:8, 20:27, 20:27] = True  # FP 3 x 7 x 7 (147): depth 2 only at (6, 21..25, 21..25)
        pred[0] = True                      # outside the z extent: removed by the crop
        return pred

    model = ScriptedBoxModel(volume_fn=vol)
    out = run(get_protocol("cvpr25", max_shift=0), model, gt)
    assert model.calls[0] == ("start_object", (3, 4, 5, 6, 7))
    assert model.calls[1] == ("add_box", 5, (5, 5, 14, 14))  # n = 5 occupied slices: the 3rd
    clicks = model.click_calls()
    # FN block: depth 3 at z 5, y 7..12, x 7 (6 voxels in C order); RandomState(42).choice(6) = 3
    assert clicks[0] == ("add_clicks", 5, [(10, 7, 1)], False)
    # FP block: depth 2 at z 6, y 21..25, x 21..25 (25 voxels); RandomState(42).choice(25) = 6 -> (22, 22)
    assert clicks[1] == ("add_clicks", 6, [(22, 22, 0)], False)
    assert len(clicks) == 2 and len(out) == 6 and model.n_propagate == 3
    assert not any(o.prediction[0].any() for o in out)


def test_equal_maxima_choice_is_the_sources_seeded_draw_every_click():
    """I L164-175: np.random.seed(42); np.random.choice(n) over np.argwhere's C order, before every
    click: a local RandomState(42).choice(n) (= randint(0, n)) gives the same index."""
    line = np.zeros((3, 3, 12), bool)
    line[1, 1, 1:11] = True            # 10 voxels, every one at depth 1
    assert seeded_argmax(component_edt(line)) == (1, 1, 1 + 6)  # RandomState(42).choice(10) = 6
    assert error_click(line, np.zeros_like(line)) == (1, 1, 7, False)
    assert error_click(line, np.zeros_like(line)) == (1, 1, 7, False)  # reseeded: same draw
    assert np.random.RandomState(42).choice(10) == 6 == np.random.RandomState(42).randint(0, 10)
    two = np.zeros((1, 1, 3), bool)
    two[0, 0, :2] = True
    assert seeded_argmax(component_edt(two)) == (0, 0, 0)        # choice(2) = 0
    assert seeded_argmax(component_edt(np.ones((1, 1, 3), bool))) == (0, 0, 2)  # choice(3) = 2


def test_edt_is_padded_voxel_units_and_the_volume_edge_is_background():
    """I L178-244: exact EDT of the component alone on its zero-padded box, voxel units."""
    comp = np.zeros((5, 9, 9), bool)
    comp[0:5, 0:5, 0:9] = True          # touches the volume's edges on every axis but y's end
    d = component_edt(comp)
    assert d[0, 0, 0] == 1.0 and d[2, 2, 4] == 3.0 and d.max() == 3.0
    assert (d[~comp] == 0).all()


def test_largest_component_tie_goes_to_the_first_in_c_order_as_cc3d_numbers_it():
    """I L387-399: argmax over cc3d's component sizes, the lowest label winning a tie."""
    err = np.zeros((4, 10, 10), bool)
    err[3, 0, 0:3] = True  # 3 voxels, later in C order
    err[0, 8, 7:10] = True  # 3 voxels, first in C order
    # the first component in C order wins; its 3 voxels all at depth 1: choice(3) = 2 -> x 9
    assert error_click(err, np.zeros_like(err)) == (0, 8, 9, False)
    cc3d = pytest.importorskip("cc3d")
    labels = cc3d.connected_components(err.astype(np.uint8), connectivity=26)
    assert labels[0, 8, 7] == 1 and labels[3, 0, 0] == 2


def test_largest_component_beats_a_deeper_one():
    gt = np.zeros((8, 30, 30), bool)
    gt[0, 5:25, 5:25] = True  # FN plate: 400 voxels, depth 1 everywhere
    pred = np.zeros_like(gt)
    pred[3:8, 0:5, 25:30] = True  # FP cube: 125 voxels, depth 3 at (5, 2, 27) only
    z, y, x, positive = error_click(pred, gt)
    assert (z, positive) == (0, True) and gt[z, y, x]
    assert error_click(pred, np.zeros_like(gt)) == (5, 2, 27, False)
    assert error_click(gt, gt) is None


def test_protocols_command_names_the_object_level_native_metrics():
    from annosim.commands.protocols import protocol_table

    rows = {r["name"]: r for r in protocol_table()}
    assert rows["cvpr25"]["native_object_metrics"] == ["cvpr25_dsc_auc", "cvpr25_nsd_auc", "cvpr25_dsc_final",
                                                       "cvpr25_nsd_final"]
    assert rows["cvpr25"]["params"] == {"clicks": 5, "crop_z": True, "max_shift": 5}
    assert rows["ritm-noc"]["native_metrics"] == ["iou"]
    assert rows["ritm-noc"]["native_object_metrics"][:3] == ["ritm_noc80", "ritm_noc85", "ritm_noc90"]


def test_component_choice_and_edt_agree_with_cc3d_and_a_plain_edt_on_random_masks():
    """I L387-406 on 30 random sparse masks (many equal-size components): the component is the one
    cc3d's argmax picks on the C-ordered mask, and the padded-crop EDT equals the EDT of the
    component in the whole volume with a one-voxel zero border (the padding never changes a
    distance; it only keeps the transform small)."""
    cc3d = pytest.importorskip("cc3d")
    from scipy import ndimage

    from annosim.protocols.clicks import largest_component

    rng = np.random.default_rng(7)
    for _ in range(30):
        err = rng.random((6, 9, 11)) < 0.08
        if not err.any():
            continue
        labels = cc3d.connected_components(err.astype(np.uint8), connectivity=26)
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        comp = labels == int(np.argmax(sizes))
        assert (largest_component(err) == comp).all()
        plain = ndimage.distance_transform_edt(np.pad(comp, 1))[1:-1, 1:-1, 1:-1]
        assert np.array_equal(component_edt(comp), plain * comp)


def test_large_roi_edt_is_max_pooled_then_repeated(monkeypatch):
    """I L207-225: above 60,000,000 padded voxels the crop is 2x2x2 max-pooled, transformed and
    repeated back (threshold lowered here). An 8-voxel cube padded by 2: exactly, depth 4 at its
    central 2x2x2 (8 voxels, choice(8) = 6 -> (5, 5, 4)); pooled, the 4-block cube has depth 2 on
    its central 2x2x2 blocks = voxels 3..6 (64, choice(64) = 38 -> (3 + 2, 3 + 1, 3 + 2))."""
    import annosim.protocols.cvpr25 as cvpr25

    comp = np.zeros((10, 10, 10), bool)
    comp[1:9, 1:9, 1:9] = True
    exact = component_edt(comp)
    assert exact.max() == 4.0 and (exact == 4.0).sum() == 8 and seeded_argmax(exact) == (5, 5, 4)
    monkeypatch.setattr(cvpr25, "LARGE_ROI_VOXELS", 0)
    pooled = component_edt(comp)
    assert pooled.max() == 2.0 and (pooled == 2.0).sum() == 64 and seeded_argmax(pooled) == (5, 4, 5)
