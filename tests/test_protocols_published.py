"""Rules of the published protocols (ma2024-box, shen2024-points/mask, dong2024, zhu2024,
cvpr25, ritm-noc) on synthetic masks where the right prompt is known by hand, driven through a
scripted model; then every protocol end to end on the sample CT with the classical model and a
random-weight SAM2.1 tiny."""

from __future__ import annotations

import numpy as np
import pytest

from annosim.data.case import Case
from annosim.errors import ConfigError
from annosim.protocols.cvpr25 import upper_median_slice
from annosim.protocols.prompts import (
    bounding_box,
    deepest_point,
    depth_map,
    largest_component_2d,
    middle_slice,
    quantile_slices,
)
from annosim.protocols.registry import get_protocol, list_protocols
from annosim.protocols.shen_rules import conditioning_frame, select_video
from annosim.engine.unit import UnitContext, run_unit
from scripted_boxes import ScriptedBoxModel

PUBLISHED = ("ma2024-box", "ma2024-flare22", "shen2024-points", "shen2024-mask", "dong2024", "zhu2024", "cvpr25", "ritm-noc")


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
    p = get_protocol("dong2024", prompt="box", bidirectional="true")
    assert p.params.bidirectional is True and p.requires == ("add_box", "propagate")
    assert get_protocol("ritm-noc", target="0.85", max_clicks="7").params.max_clicks == 7
    assert get_protocol("zhu2024", prompt_freq="3").params.prompt_freq == 3
    assert get_protocol("cvpr25", crop_z="false").params.crop_z is False
    for name, bad in (("dong2024", {"frame": "2"}), ("dong2024", {"prompt": "scribble"}),
                      ("zhu2024", {"fraction": "0"}), ("ritm-noc", {"target": "0"}),
                      ("ma2024-box", {"margin": "-1"}), ("shen2024-mask", {"clicks": "5"}),
                      ("shen2024-points", {"threshold": "-1"})):
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
    assert "parameters: prompt=point, frame=median, bidirectional=False" in text.output
    rows = [json.loads(line) for line in CliRunner().invoke(cli, ["protocols", "--json"]).output.splitlines()]
    by_name = {r["name"]: r for r in rows}
    assert by_name["ritm-noc"]["params"] == {"target": 0.9, "max_clicks": 20, "select_from": "gt"}
    assert by_name["zhu2024"]["uses_gt"] .startswith("GT z-slab")


# --- ma2024-box -------------------------------------------------------------------------------
def test_ma2024_box_prompt_box_variant_keeps_the_source_video_slice_and_passes():
    """``prompt=box`` (not the source): the box goes to add_box, in the source's two passes with a
    reset between (A L215-223) on slice z_min + n // 2 (2 + 5 // 2 = 4), box = the 3D box's extent."""
    gt = slab((10, 30, 30), range(2, 7), (8, 12), (8, 12))
    gt[4, 5:15, 8:21] = True
    model = ScriptedBoxModel(volume_fn=lambda m: np.ones(m.shape, bool))
    out = run(get_protocol("ma2024-box", prompt="box"), model, gt)
    assert model.kinds() == ["start_object", "add_box", "propagate", "start_object", "add_box", "propagate"]
    assert model.calls[1] == ("add_box", 4, (5, 8, 14, 20))
    assert len(out) == 1 and out[0].round == 1
    assert (out[0].annotated_slices, out[0].clicks) == (1, 0)
    assert out[0].prompts[0].to_record() == {"kind": "box", "z": 4, "y0": 5, "x0": 8, "y1": 14, "x1": 20}
    assert out[0].prediction.any(axis=(1, 2)).nonzero()[0].tolist() == [2, 3, 4, 5, 6]  # the z extent only
    assert get_protocol("ma2024-box", prompt="box").requires == ("add_box", "propagate")
    assert get_protocol("ma2024-box").requires == ("predict_slice", "add_mask", "propagate")


def test_ma2024_box_extent_within_frames_and_margin():
    gt = slab((10, 30, 30), range(2, 7), (8, 12), (8, 12))
    model = ScriptedBoxModel(volume_fn=lambda m: np.ones(m.shape, bool))
    out = run(get_protocol("ma2024-box", margin=2, prompt="box"), model, gt, frames=np.arange(0, 5))
    assert model.calls[0] == ("start_object", (2, 3, 4))  # the GT extent within the frames
    assert model.calls[1] == ("add_box", 3, (6, 6, 13, 13))  # 2 + 3 // 2
    assert out[0].prediction.any(axis=(1, 2)).nonzero()[0].tolist() == [2, 3, 4]


# --- shen2024 ---------------------------------------------------------------------------------
def _top_heavy():
    """Slices 0-2 large (20x20), slices 3-8 tiny (2x2): centroid slice 1, middle slice 4."""
    gt = slab((10, 40, 40), range(0, 3), (10, 30), (10, 30))
    gt[3:9, 18:20, 18:20] = True
    return gt


def test_ma2024_box_takes_the_3d_box_extent_not_the_slice_box():
    """A L202: box[[0, 1, 3, 4]] of the 3D box; on a top-heavy object (slices 0-2 large, 3-8 tiny)
    the box slice 0 + 9 // 2 = 4 gets the large slices' extent."""
    gt = _top_heavy()
    box_model = ScriptedBoxModel()
    run(get_protocol("ma2024-box", prompt="box"), box_model, gt)
    assert box_model.calls[1] == ("add_box", 4, (10, 10, 29, 29))


# --- dong2024, dong2024-2d, zhu2024: tests/test_protocol_dong_zhu.py ---------------------------


# --- cvpr25, ritm-noc: tests/test_protocol_cvpr25.py, tests/test_protocol_ritm.py --------------


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
    # Shen skips an object without a >256-pixel video (or <= 100 px on its frame), as the source
    labels = {k[1] for k in units}
    for name in protocol_names:
        got = {(k[1], k[2]) for k in units if k[0] == name}
        if name.startswith("shen2024"):
            want = set()
            for label in labels:
                v = select_video(case.label == label)
                if v.size and (name == "shen2024-mask" or (case.label[conditioning_frame(v)] == label).sum() > 100):
                    want |= {(label, "full"), (label, "fg-only")}
            assert got == want, name
        else:
            assert got, name
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
        if name != "ma2024-flare22":  # its walk visits every slice of the extent
            assert {p["z"] for p in ps} <= fg  # every prompt lies on a truth slice
        if name == "ma2024-box":  # A L202-206: the 3D box's extent on z_min + n // 2
            zs = np.flatnonzero(gt.any(axis=(1, 2)))
            z = int(zs[0] + (zs[-1] - zs[0] + 1) // 2)
            box = ps[0]
            assert rounds == [1] and (box["kind"], box["z"]) == ("box", z)
            assert (box["y0"], box["x0"], box["y1"], box["x1"]) == bounding_box(gt.any(axis=0))
            assert [p["kind"] for p in ps[1:]] in ([], ["mask"])
        elif name == "ma2024-flare22":  # C L253-321: one box on every slice of the extent
            zs = np.flatnonzero(gt.any(axis=(1, 2)))
            extent = set(range(int(zs[0]), int(zs[-1]) + 1)) & (fg if setting == "fg-only" else set(range(gt.shape[0])))
            assert rounds == [1] and clicks == [0] and all(p["kind"] == "box" for p in ps)
            assert sorted(p["z"] for p in ps) == sorted(extent) and rows[0]["annotated_slices"] == len(ps)
            assert ps[0]["z"] == int((zs[-1] - zs[0]) / 2 + zs[0]) or setting == "fg-only"
        elif name in ("shen2024-points", "shen2024-mask"):  # Shen: N // 2 of the >256-pixel video
            video = select_video(gt)
            assert rounds == [1]
            if video.size:
                assert {p["z"] for p in ps} == {conditioning_frame(video)}
                assert [p["kind"] for p in ps] == (["mask"] if name == "shen2024-mask" else ["point"] * clicks[0])
        elif name == "dong2024":
            assert rounds == [1] and clicks == [1] and ps[0]["z"] == middle_slice(gt) and ps[0]["positive"]
        elif name == "zhu2024":
            assert rounds == [1] and all(p["kind"] == "box" for p in ps)
            assert rows[0]["annotated_slices"] == len(ps) >= 1
        elif name == "cvpr25":  # always every round; a round without error adds no click
            assert len(rows) == cvpr_clicks + 1 and clicks[0] == 0
            assert all(b - a in (0, 1) for a, b in zip(clicks, clicks[1:]))
            assert ps[0]["kind"] == "box" and ps[0]["z"] == upper_median_slice(gt)
            assert [p["kind"] for p in ps[1:]] == ["point"] * clicks[-1]
            lo, hi = min(fg), max(fg)
            assert all(r["fp_slices"] <= (hi - lo + 1) - len(fg) for r in rows)  # z-extent crop
        elif name == "ritm-noc":
            assert len(rows) <= max_clicks and clicks == rounds
            iou = [r["dice"] / (2.0 - r["dice"]) for r in rows]
            assert all(v < target for v in iou[:-1])  # stops once the target IoU is reached
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

    extra = {"ritm-noc": {"max_clicks": 3}}
    protocols = [get_protocol(n, **extra.get(n, {})) for n in PUBLISHED]
    result = evaluate_case(abdomen_case, random_sam2, protocols, labels=["vertebrae_T11"],
                           settings=["fg-only"], surface_metrics=False)
    check_rows(result, abdomen_case, PUBLISHED, max_clicks=3)
    full = evaluate_case(abdomen_case, random_sam2, [get_protocol("cvpr25", clicks=2)],
                         labels=["vertebrae_T11"], settings=["full"], surface_metrics=False)
    check_rows(full, abdomen_case, ["cvpr25"], cvpr_clicks=2)
    assert random_sam2.encoder_calls == 3  # only the object's slices were ever encoded
