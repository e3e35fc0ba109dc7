"""Rules of the published protocols (ma2024-box, shen2024-points/mask, dong2024, zhu2024,
cvpr25, ritm-noc) on synthetic masks where the right prompt is known by hand, driven through a
scripted model; then every protocol end to end on the sample CT with the classical model and a
random-weight SAM2.1 tiny."""

from __future__ import annotations

import numpy as np
import pytest

from annosim.data.case import Case
from annosim.errors import ConfigError
from annosim.protocols.cvpr25 import error_click
from annosim.protocols.prompts import (
    bounding_box,
    deepest_point,
    depth_map,
    largest_component_2d,
    middle_slice,
    quantile_slices,
)
from annosim.protocols.registry import get_protocol, list_protocols
from annosim.protocols.ritm import ritm_click
from annosim.engine.unit import UnitContext, run_unit
from scripted_boxes import ScriptedBoxModel

PUBLISHED = ("ma2024-box", "shen2024-points", "shen2024-mask", "dong2024", "zhu2024", "cvpr25", "ritm-noc")


def run(protocol, model, gt, frames=None, rng=None):
    model.set_volume(np.zeros(gt.shape, np.float32), (1.0, 1.0, 1.0))
    return list(protocol.run_object(model, gt, frames, rng or np.random.default_rng(0)))


def slab(shape, zs, rows, cols):
    """bool volume with the box rows x cols (half-open ranges) on slices zs."""
    gt = np.zeros(shape, bool)
    for z in zs:
        gt[z, rows[0]:rows[1], cols[0]:cols[1]] = True
    return gt


# --- shared prompt rules ----------------------------------------------------------------------
def test_bounding_box_inclusive_and_margin_clipped():
    m = np.zeros((10, 12), bool)
    m[3, 5] = m[7, 2] = m[4, 9] = True
    assert bounding_box(m) == (3, 2, 7, 9)
    assert bounding_box(m, margin=3) == (0, 0, 9, 11)
    with pytest.raises(ValueError):
        bounding_box(np.zeros((4, 4), bool))


def test_middle_slice_of_z_extent_and_snap_to_foreground():
    assert middle_slice(slab((20, 4, 4), range(2, 11), (0, 2), (0, 2))) == 6
    assert middle_slice(slab((20, 4, 4), range(1, 5), (0, 2), (0, 2))) == 2  # 1 + 3 // 2
    # slices 1, 2, 9, 10: position 1 + 9 // 2 = 5 is empty; 2 (distance 3) beats 9 (distance 4)
    assert middle_slice(slab((20, 4, 4), [1, 2, 9, 10], (0, 2), (0, 2))) == 2
    # slices 2 and 8: position 5 is 3 away from both -> the lower one
    assert middle_slice(slab((20, 4, 4), [2, 8], (0, 2), (0, 2))) == 2


def test_quantile_slices_three_and_short_extent_dedupes():
    assert quantile_slices(slab((20, 4, 4), range(2, 11), (0, 2), (0, 2)), (0.25, 0.5, 0.75)) == [4, 6, 8]
    # extent 0..2: positions 0, 1, 1 -> two distinct slices
    assert quantile_slices(slab((5, 4, 4), range(0, 3), (0, 2), (0, 2)), (0.25, 0.5, 0.75)) == [0, 1]


def test_deepest_point_counts_the_array_edge_as_boundary():
    full = np.ones((5, 5), bool)
    assert depth_map(full)[2, 2] == 3.0 and depth_map(full)[0, 0] == 1.0
    assert deepest_point(full) == (2, 2)
    rect = np.zeros((7, 9), bool)
    rect[1:6, 1:8] = True  # depth 3 on row 3, columns 3..5 -> lowest (3, 3)
    assert deepest_point(rect) == (3, 3)
    assert deepest_point(np.zeros((3, 3), bool)) is None


def test_deepest_point_3d_in_voxel_units():
    m = np.zeros((7, 12, 12), bool)
    m[1:6, 2:11, 2:11] = True  # 5 x 9 x 9: z limits the depth to 3, at z = 3 only
    d = depth_map(m)
    assert d.max() == 3.0 and set(np.argwhere(d == 3.0)[:, 0]) == {3}
    assert deepest_point(m) == (3, 4, 4)


def test_largest_component_2d_is_8_connected():
    m = np.zeros((8, 8), bool)
    m[0, 0] = m[1, 1] = m[2, 2] = True  # diagonal chain: one component of 3
    m[5:7, 5:7] = True  # 4 pixels
    assert largest_component_2d(m).sum() == 4
    m[3, 3] = m[4, 4] = True  # chain now reaches the square: 9 pixels
    assert largest_component_2d(m).sum() == 9


# --- registry and parameters ------------------------------------------------------------------
def test_every_published_protocol_is_registered_with_its_oracle():
    infos = {i.name: i for i in list_protocols()}
    for name in PUBLISHED:
        assert name in infos and infos[name].uses_gt and infos[name].source
        assert get_protocol(name).name == name
    assert "z-extent crop" in infos["cvpr25"].uses_gt


def test_string_parameters_are_converted_and_checked():
    p = get_protocol("dong2024", prompt="box", slices="3")
    assert p.params.slices == "3" and p.requires == ("add_box", "propagate")
    assert get_protocol("ritm-noc", target="0.85", max_clicks="7").params.max_clicks == 7
    assert get_protocol("zhu2024", probability="0.5").params.probability == 0.5
    assert get_protocol("cvpr25", crop_z="false").params.crop_z is False
    for name, bad in (("dong2024", {"slices": "2"}), ("dong2024", {"prompt": "scribble"}),
                      ("zhu2024", {"probability": "1.5"}), ("ritm-noc", {"target": "0"}),
                      ("ma2024-box", {"margin": "-1"}), ("shen2024-mask", {"clicks": "5"})):
        with pytest.raises(ConfigError):
            get_protocol(name, **bad)


def test_protocols_command_lists_names_summaries_and_oracles():
    import json

    from click.testing import CliRunner

    from annosim.cli import cli

    text = CliRunner().invoke(cli, ["protocols"])
    assert text.exit_code == 0
    for name in ("he2024",) + PUBLISHED:
        assert any(line.startswith(name + " ") for line in text.output.splitlines())
    assert "uses truth: z-extent crop, GT box, GT clicks (3D error components)" in text.output
    assert "parameters: prompt=point, slices=1" in text.output
    rows = [json.loads(line) for line in CliRunner().invoke(cli, ["protocols", "--json"]).output.splitlines()]
    by_name = {r["name"]: r for r in rows}
    assert by_name["ritm-noc"]["params"] == {"target": 0.9, "max_clicks": 20, "select_from": "gt"}
    assert by_name["zhu2024"]["uses_gt"] == "GT boxes or points on randomly drawn GT slices"


# --- ma2024-box -------------------------------------------------------------------------------
def test_ma2024_box_on_middle_slice_one_propagation():
    gt = slab((10, 30, 30), range(2, 7), (8, 12), (8, 12))
    gt[4, 5:15, 8:21] = True  # the middle slice (2 + 4 // 2 = 4) is larger
    model = ScriptedBoxModel(volume_fn=lambda m: np.ones(m.shape, bool))
    out = run(get_protocol("ma2024-box"), model, gt)
    assert model.kinds() == ["start_object", "add_box", "propagate"]
    assert model.calls[1] == ("add_box", 4, (5, 8, 14, 20))
    assert len(out) == 1 and out[0].round == 1
    assert (out[0].annotated_slices, out[0].clicks) == (1, 0)
    assert out[0].prompts[0].to_record() == {"kind": "box", "z": 4, "y0": 5, "x0": 8, "y1": 14, "x1": 20}


def test_ma2024_box_middle_of_truth_within_frames_and_margin():
    gt = slab((10, 30, 30), range(2, 7), (8, 12), (8, 12))
    model = ScriptedBoxModel(volume_fn=lambda m: np.ones(m.shape, bool))
    out = run(get_protocol("ma2024-box", margin=2), model, gt, frames=np.arange(0, 5))
    assert model.calls[0] == ("start_object", (0, 1, 2, 3, 4))
    assert model.calls[1] == ("add_box", 3, (6, 6, 13, 13))  # extent 2..4 within the frames
    assert out[0].prediction.any(axis=(1, 2)).nonzero()[0].tolist() == [0, 1, 2, 3, 4]


# --- shen2024 ---------------------------------------------------------------------------------
def test_shen2024_points_is_the_initial_slice_rule_then_one_round():
    gt = slab((5, 40, 40), range(1, 4), (10, 30), (10, 30))
    model = ScriptedBoxModel()  # predicts nothing: all 5 clicks are used, prediction stays bad
    out = run(get_protocol("shen2024-points"), model, gt)
    calls = model.click_calls()
    assert calls[0] == ("add_clicks", 2, [(19, 19, 1)], False)  # he2024 first click
    assert len(calls) == 5 and {c[1] for c in calls} == {2}
    assert model.n_propagate == 1
    assert [(o.round, o.clicks, o.annotated_slices) for o in out] == [(1, 5, 1)]
    out3 = run(get_protocol("shen2024-points", clicks=3), ScriptedBoxModel(), gt)
    assert out3[0].clicks == 3


def _top_heavy():
    """Slices 0-2 large (20x20), slices 3-8 tiny (2x2): centroid slice 1, middle slice 4."""
    gt = slab((10, 40, 40), range(0, 3), (10, 30), (10, 30))
    gt[3:9, 18:20, 18:20] = True
    return gt


def test_shen2024_mask_gives_the_truth_of_the_centroid_slice():
    gt = _top_heavy()
    model = ScriptedBoxModel(volume_fn=lambda m: gt)
    out = run(get_protocol("shen2024-mask"), model, gt)
    assert model.kinds() == ["start_object", "add_mask", "propagate"]
    _, z, mask = model.calls[1]
    assert z == 1 and np.array_equal(mask, gt[1])
    assert (out[0].round, out[0].clicks, out[0].annotated_slices) == (1, 0, 1)
    assert out[0].prompts[0].to_record() == {"kind": "mask", "z": 1}
    # ma2024 on the same object uses the middle of the z extent instead
    box_model = ScriptedBoxModel()
    run(get_protocol("ma2024-box"), box_model, gt)
    assert box_model.calls[1] == ("add_box", 4, (18, 18, 19, 19))


# --- dong2024 ---------------------------------------------------------------------------------
def _two_components(shape=(12, 32, 32), zs=range(2, 11)):
    """Per slice: a long 5 x 28 bar (140 px, depth 3, deepest (4, 4)) and a 9 x 9 square
    (81 px, depth 5 at (16, 16)): the largest component is not the deepest one."""
    gt = slab(shape, zs, (2, 7), (2, 30))
    for z in zs:
        gt[z, 12:21, 12:21] = True
    return gt


def test_dong2024_point_at_deepest_pixel_of_largest_2d_component():
    gt = _two_components()
    model = ScriptedBoxModel()
    out = run(get_protocol("dong2024"), model, gt)
    assert model.kinds() == ["start_object", "add_clicks", "propagate"]
    assert model.click_calls() == [("add_clicks", 6, [(4, 4, 1)], False)]
    assert (out[0].round, out[0].clicks, out[0].annotated_slices) == (1, 1, 1)


def test_dong2024_three_slices_box_covers_the_whole_slice_truth():
    gt = _two_components()
    model = ScriptedBoxModel()
    out = run(get_protocol("dong2024", prompt="box", slices="3"), model, gt)
    assert model.calls_of("add_box") == [("add_box", z, (2, 2, 20, 29)) for z in (4, 6, 8)]
    assert model.n_propagate == 1
    assert (out[0].clicks, out[0].annotated_slices) == (0, 3)


def test_dong2024_points_on_three_slices():
    gt = _two_components()
    model = ScriptedBoxModel()
    out = run(get_protocol("dong2024", slices="3"), model, gt)
    assert [c[1:3] for c in model.click_calls()] == [(4, [(4, 4, 1)]), (6, [(4, 4, 1)]), (8, [(4, 4, 1)])]
    assert (out[0].clicks, out[0].annotated_slices) == (3, 3)


def test_dong2024_mask_on_every_foreground_slice_of_the_frames():
    gt = _two_components(zs=[1, 2, 3, 7, 8])
    model = ScriptedBoxModel()
    frames = np.array([0, 1, 2, 3, 4, 5, 6, 7])
    out = run(get_protocol("dong2024", prompt="mask", slices="all"), model, gt, frames=frames)
    masks = model.calls_of("add_mask")
    assert [c[1] for c in masks] == [1, 2, 3, 7]  # slice 8 is outside the frames
    assert all(np.array_equal(m, gt[z]) for _, z, m in masks)
    assert (out[0].round, out[0].clicks, out[0].annotated_slices) == (1, 0, 4)


# --- zhu2024 ----------------------------------------------------------------------------------
def test_zhu2024_seeded_selection_is_a_bernoulli_draw_per_foreground_slice():
    gt = slab((40, 20, 20), range(3, 37), (5, 9), (6, 11))  # 34 foreground slices
    model = ScriptedBoxModel()
    out = run(get_protocol("zhu2024"), model, gt, rng=np.random.default_rng(11))
    expected = np.arange(3, 37)[np.random.default_rng(11).random(34) < 0.25]
    assert expected.size > 0
    assert model.calls_of("add_box") == [("add_box", int(z), (5, 6, 8, 10)) for z in expected]
    assert out[0].annotated_slices == expected.size and out[0].clicks == 0
    again = ScriptedBoxModel()
    run(get_protocol("zhu2024"), again, gt, rng=np.random.default_rng(11))
    assert again.calls == model.calls
    other = ScriptedBoxModel()
    run(get_protocol("zhu2024"), other, gt, rng=np.random.default_rng(12))
    assert other.calls != model.calls


def test_zhu2024_probability_structure():
    gt = slab((4000, 3, 3), range(0, 4000), (0, 2), (0, 2))
    zs = [c[1] for c in _zhu_calls(gt, 0.25, seed=1)]
    assert 0.23 < len(zs) / 4000 < 0.27  # 1000 expected, sd 27
    assert len(_zhu_calls(gt[:50], 1.0, seed=1)) == 50
    # probability 0: the fallback prompts the middle slice alone
    assert [c[1] for c in _zhu_calls(gt[:50], 0.0, seed=1)] == [24]


def _zhu_calls(gt, probability, seed):
    model = ScriptedBoxModel()
    run(get_protocol("zhu2024", probability=probability), model, gt, rng=np.random.default_rng(seed))
    return model.calls_of("add_box")


def test_zhu2024_point_is_a_seeded_uniform_truth_pixel():
    gt = slab((12, 20, 20), range(2, 10), (4, 9), (3, 15))
    gt[5, 15, 15] = True
    model = ScriptedBoxModel()
    out = run(get_protocol("zhu2024", prompt="point", probability=0.5), model, gt,
              rng=np.random.default_rng(4))
    rng = np.random.default_rng(4)
    chosen = np.arange(2, 10)[rng.random(8) < 0.5]
    expected = []
    for z in chosen:
        coords = np.argwhere(gt[z])
        y, x = coords[int(rng.integers(coords.shape[0]))]
        expected.append(("add_clicks", int(z), [(int(y), int(x), 1)], False))
    assert model.click_calls() == expected and len(expected) > 1
    assert out[0].clicks == len(expected) == out[0].annotated_slices


# --- cvpr25 -----------------------------------------------------------------------------------
def _cvpr_volume(model):
    gt = _cvpr_gt()
    pred = gt.copy()
    if model.n_propagate == 1:
        pred[3:8, 5:15, 5:10] = False  # FN block 5 x 10 x 5: deepest voxel (5, 7, 7), depth 3
    elif model.n_propagate == 2:
        pred[5:8, 20:27, 20:27] = True  # FP block 3 x 7 x 7: deepest voxel (6, 21, 21), depth 2
    pred[0] = True  # outside the z extent: removed by the crop
    return pred


def _cvpr_gt():
    return slab((12, 30, 30), range(3, 8), (5, 15), (5, 15))


def test_cvpr25_box_then_clicks_at_deepest_error_voxel_labelled_by_truth():
    gt = _cvpr_gt()
    model = ScriptedBoxModel(volume_fn=_cvpr_volume)
    out = run(get_protocol("cvpr25"), model, gt)
    assert model.calls[0] == ("start_object", (3, 4, 5, 6, 7))  # the z extent crop
    assert model.calls[1] == ("add_box", 5, (5, 5, 14, 14))
    assert model.click_calls() == [
        ("add_clicks", 5, [(7, 7, 1)], False),  # inside the FN block: positive
        ("add_clicks", 6, [(21, 21, 0)], False),  # inside the FP block: negative
    ]
    # round 3 is perfect: no error left, no 4th round
    assert [(o.round, o.clicks, o.annotated_slices) for o in out] == [(1, 0, 1), (2, 1, 1), (3, 2, 2)]
    assert not any(o.prediction[0].any() for o in out)
    assert out[1].prompts[0].to_record() == {"kind": "point", "z": 5, "y": 7, "x": 7, "positive": True}


def test_cvpr25_six_rounds_at_most_and_no_crop_option():
    gt = _cvpr_gt()
    model = ScriptedBoxModel()  # always empty: an error remains every round
    out = run(get_protocol("cvpr25"), model, gt)
    assert [o.round for o in out] == [1, 2, 3, 4, 5, 6] and [o.clicks for o in out] == [0, 1, 2, 3, 4, 5]
    assert model.n_propagate == 6
    model = ScriptedBoxModel(volume_fn=lambda m: np.ones(m.shape, bool))
    out = run(get_protocol("cvpr25", crop_z=False, clicks=1), model, gt)
    assert model.calls[0] == ("start_object", None) and out[0].prediction[0].all()
    assert len(out) == 2


def test_cvpr25_largest_component_beats_a_deeper_one():
    gt = np.zeros((8, 30, 30), bool)
    gt[0, 5:25, 5:25] = True  # FN plate: 400 voxels, depth 1
    pred = np.zeros_like(gt)
    pred[3:8, 0:5, 25:30] = True  # FP cube: 125 voxels, depth 3 at (5, 2, 27) (edges count)
    assert error_click(pred, gt) == (0, 5, 5, True)
    assert error_click(pred, np.zeros_like(gt)) == (5, 2, 27, False)
    assert error_click(gt, gt) is None


# --- ritm-noc ---------------------------------------------------------------------------------
def test_ritm_click_larger_depth_wins_and_ties_go_negative():
    gt = np.zeros((30, 30), bool)
    gt[10:15, 10:15] = True  # FN 5x5: depth 3 at (12, 12)
    pred = np.zeros_like(gt)
    pred[20:23, 20:23] = True  # FP 3x3: depth 2 at (21, 21)
    assert ritm_click(pred, gt) == (12, 12, True)
    clicked = np.zeros_like(gt)
    clicked[12, 12] = True  # FN's best left: depth 2 = FP's -> negative
    assert ritm_click(pred, gt, clicked) == (21, 21, False)
    assert ritm_click(gt, gt) is None


def _ritm_gt():
    return slab((5, 30, 30), range(0, 5), (10, 20), (10, 20))  # 5 slices of 10x10


def _ritm_volume(model):
    gt = _ritm_gt()
    pred = gt.copy()
    if model.n_propagate == 1:
        pred[3:] = False  # Dice 600/800 = 0.75
    elif model.n_propagate == 2:
        pred[4] = False  # Dice 800/900 = 0.889
    return pred


@pytest.mark.parametrize("target, rounds", [(0.90, 3), (0.85, 2), (0.70, 1)])
def test_ritm_stops_at_the_target_dice(target, rounds):
    gt = _ritm_gt()
    model = ScriptedBoxModel(volume_fn=_ritm_volume)
    out = run(get_protocol("ritm-noc", target=target), model, gt)
    # empty start: all slices Dice 0 with 100 errors -> slice 0; then the worst slice 3, then 4
    expected = [("add_clicks", z, [(14, 14, 1)], False) for z in (0, 3, 4)][:rounds]
    assert model.click_calls() == expected
    assert [(o.round, o.clicks, o.annotated_slices) for o in out] == [(k, k, k) for k in range(1, rounds + 1)]


def test_ritm_twenty_click_cap_never_repeats_a_pixel():
    gt = _ritm_gt()
    model = ScriptedBoxModel()  # never improves
    out = run(get_protocol("ritm-noc"), model, gt)
    assert [o.clicks for o in out] == list(range(1, 21))
    pts = [(c[1], *c[2][0][:2]) for c in model.click_calls()]
    assert len(set(pts)) == 20 and {p[0] for p in pts} == {0}
    assert pts[:2] == [(0, 14, 14), (0, 14, 15)]  # depth 5 at rows/cols 14-15, lowest first


def test_ritm_negative_click_on_overtracking_of_a_truth_slice():
    gt = _ritm_gt()
    def vol(model):
        pred = gt.copy()
        pred[2, 0:7, 0:30] = True  # FP band on slice 2 (depth 4 at row 3)
        return pred
    model = ScriptedBoxModel(volume_fn=vol)
    out = run(get_protocol("ritm-noc", target=0.99), model, gt)
    assert model.click_calls()[1] == ("add_clicks", 2, [(3, 3, 0)], False)
    assert len(out) == 20  # the scripted prediction ignores the negative clicks


def test_ritm_rows_give_noc_through_run_unit():
    gt = _ritm_gt()
    case = Case("c1", np.zeros(gt.shape, np.float32), gt.astype(np.uint8), (1.0, 1.0, 1.0), {1: "obj"})
    model = ScriptedBoxModel(volume_fn=_ritm_volume)
    model.set_volume(case.image, case.spacing)
    unit = run_unit(case, model, get_protocol("ritm-noc"), 1, "full", UnitContext(surface_metrics=False))
    rows = [(r["round"], r["clicks"], r["dice"]) for r in unit.rows]
    assert rows == [(1, 1, 0.75), (2, 2, pytest.approx(800 / 900)), (3, 3, 1.0)]
    noc = {t: next(r[1] for r in rows if r[2] >= t) for t in (0.85, 0.90)}
    assert noc == {0.85: 2, 0.90: 3}
    assert [p["kind"] for p in unit.prompts] == ["point"] * 3


# --- end to end on the sample CT --------------------------------------------------------------
@pytest.fixture(scope="module")
def abdomen_case(shared_data):
    from annosim.data.layouts import open_dataset

    folder = shared_data / "totalseg-abdomen"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found: sample CT needed for this test")
    dataset = open_dataset(f"{folder / 'ct.nii.gz'} {folder / 'seg.nii.gz'}")
    return next(iter(dataset)).load()


def check_rows(result, case, protocol_names, target=0.90, max_clicks=20, cvpr_clicks=5):
    """The row/prompt structure every protocol promises, on real data."""
    from annosim.protocols.clicks import first_click

    assert result.errors == []
    units: dict[tuple, list[dict]] = {}
    for row in result.rows:
        units.setdefault((row["protocol"], row["label"], row["setting"]), []).append(row)
    prompts: dict[tuple, list[dict]] = {}
    for p in result.prompts:
        prompts.setdefault((p["protocol"], p["label"], p["setting"]), []).append(p)
    assert {k[0] for k in units} == set(protocol_names)
    for (name, label, setting), rows in units.items():
        gt = case.label == label
        fg = set(np.flatnonzero(gt.any(axis=(1, 2))).tolist())
        rounds = [r["round"] for r in rows]
        clicks = [r["clicks"] for r in rows]
        assert rounds == list(range(1, len(rows) + 1))
        assert all(0.0 <= r["dice"] <= 1.0 for r in rows)
        if setting == "fg-only":
            assert all(r["fp_slices"] == 0 for r in rows)
        ps = prompts[(name, label, setting)]
        assert {p["z"] for p in ps} <= fg  # every prompt lies on a truth slice
        if name == "ma2024-box":
            z = middle_slice(gt)
            boxes = [(p["kind"], p["z"], p["y0"], p["x0"], p["y1"], p["x1"]) for p in ps]
            assert rounds == [1] and boxes == [("box", z, *bounding_box(gt[z]))]
        elif name == "shen2024-points":
            assert rounds == [1] and 1 <= clicks[0] <= 5 and len(ps) == clicks[0]
            assert {p["z"] for p in ps} == {first_click(gt)[0]}
        elif name == "shen2024-mask":
            assert rounds == [1] and [(p["kind"], p["z"]) for p in ps] == [("mask", first_click(gt)[0])]
        elif name == "dong2024":
            assert rounds == [1] and clicks == [1] and ps[0]["z"] == middle_slice(gt) and ps[0]["positive"]
        elif name == "zhu2024":
            assert rounds == [1] and all(p["kind"] == "box" for p in ps)
            assert rows[0]["annotated_slices"] == len(ps) >= 1
        elif name == "cvpr25":
            assert 1 <= len(rows) <= cvpr_clicks + 1 and clicks == [k - 1 for k in rounds]
            assert ps[0]["kind"] == "box" and ps[0]["z"] == middle_slice(gt)
            assert [p["kind"] for p in ps[1:]] == ["point"] * (len(rows) - 1)
            lo, hi = min(fg), max(fg)
            assert all(r["fp_slices"] <= (hi - lo + 1) - len(fg) for r in rows)  # z-extent crop
        elif name == "ritm-noc":
            assert len(rows) <= max_clicks and clicks == rounds
            assert all(r["dice"] < target for r in rows[:-1])  # stops once the target is reached
            assert all(p["kind"] == "point" for p in ps) and len(ps) == len(rows)


def test_every_protocol_end_to_end_with_the_classical_model(abdomen_case):
    from annosim.models.classical import ClassicalModel
    from annosim.engine.case import evaluate_case

    protocols = [get_protocol(name) for name in PUBLISHED]
    result = evaluate_case(abdomen_case, ClassicalModel(), protocols,
                           labels=["gallbladder", "kidney_left"], surface_metrics=False)
    assert len({(r["label"], r["setting"]) for r in result.rows}) == 4
    check_rows(result, abdomen_case, PUBLISHED)


@pytest.fixture(scope="module")
def random_sam2(tmp_path_factory):
    """SAM2.1 tiny with seeded random weights at input size 256 (no download)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from annosim.models.registry import load_model
    from annosim.models.sam2_checkpoints import build_video_predictor, get_variant

    torch.manual_seed(0)
    net = build_video_predictor(get_variant("sam2.1-hiera-tiny").config, 256)
    path = tmp_path_factory.mktemp("sam2") / "random_tiny.pt"
    torch.save({"model": net.state_dict()}, path)
    del net
    return load_model("sam2.1-hiera-tiny", {"checkpoint": str(path), "image_size": "256", "device": "cpu"})


@pytest.mark.slow  # 20-40 s on 2 shared CPU cores: ~20 SAM2 propagations of 3 frames on the CPU
def test_every_protocol_end_to_end_with_random_sam2(abdomen_case, random_sam2):
    """All protocols through the SAM2 adapter (boxes, masks, clicks, frames) on the smallest
    sample structure (vertebrae_T11: 3 slices) so that the CPU run stays short; ``full`` is
    exercised by cvpr25, whose z-extent crop keeps its video at 3 frames."""
    from annosim.engine.case import evaluate_case

    protocols = [get_protocol(n, **({"max_clicks": 3} if n == "ritm-noc" else {})) for n in PUBLISHED]
    result = evaluate_case(abdomen_case, random_sam2, protocols, labels=["vertebrae_T11"],
                           settings=["fg-only"], surface_metrics=False)
    check_rows(result, abdomen_case, PUBLISHED, max_clicks=3)
    full = evaluate_case(abdomen_case, random_sam2, [get_protocol("cvpr25", clicks=2)],
                         labels=["vertebrae_T11"], settings=["full"], surface_metrics=False)
    check_rows(full, abdomen_case, ["cvpr25"], cvpr_clicks=2)
    assert random_sam2.encoder_calls == 3  # only the object's slices were ever encoded
