"""``ma2024-flare22`` (bowang-lab/MedSAM branch MedSAM2 @6abb0ad, infer_sam2_flare22.py = C;
protocol-sources.md section 1b) on hand-built masks: which slice starts, which box each slice
gets, where the walk stops; then end to end with ``classical`` on a synthetic case."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from annosim.cli import main
from annosim.models.base import SliceModelBase
from annosim.protocols.ma_flare22 import grid_box, margin_box, seed_box, start_slice
from annosim.protocols.prompts import nearest_index
from annosim.protocols.registry import get_protocol
from results_helpers import manifest_run_args


class SliceScript(SliceModelBase):
    """Records ``predict_slice(z, box)``; answers with ``answers[z]`` (empty when absent)."""

    name = "slice-script"

    def __init__(self, answers=None):
        super().__init__()
        self.answers = answers or {}
        self.calls = []

    def start_object(self, frames=None):
        super().start_object(frames)
        self.calls.append(("start_object", None if frames is None else [int(f) for f in frames]))

    def add_clicks(self, z, points, labels, replace=False):
        raise AssertionError("ma2024-flare22 gives no clicks")

    def propagate(self):
        raise AssertionError("ma2024-flare22 does not propagate")

    def predict_slice(self, z, points=None, labels=None, box=None):
        self.calls.append(("predict_slice", int(z), tuple(box)))
        return self.answers.get(int(z), np.zeros(self.shape[1:], bool))


def run(model, gt, frames=None, **params):
    model.set_volume(np.zeros(gt.shape, np.float32), (1.0, 1.0, 1.0))
    return list(get_protocol("ma2024-flare22", **params).run_object(model, gt, frames, np.random.default_rng(0)))


def square(shape2d, rows, cols):
    m = np.zeros(shape2d, bool)
    m[rows[0]:rows[1], cols[0]:cols[1]] = True
    return m


def test_margin_box_clips_to_the_width_not_the_last_column():
    """C L128-139: tight box +-5, clipped to [0, W] and [0, H]."""
    m = square((20, 30), (2, 4), (20, 28))              # rows 2..3, cols 20..27
    assert margin_box(m, 5) == (0, 15, 8, 30)             # x1 = 27 + 5 clipped to W = 30
    assert margin_box(m, 0) == (2, 20, 3, 27)


def test_seed_is_the_largest_margin_box_first_on_ties_and_the_start_the_lower_middle():
    """C L265-271: seed = argmax of (x1-x0)(y1-y0) over the slice boxes (first maximum);
    start slice int((z_max - z_min) / 2 + z_min), not the slice the seed came from."""
    gt = np.zeros((10, 40, 40), bool)
    gt[2, 10:12, 10:12] = True
    gt[3, 10:20, 10:30] = True                           # box 10+-5..19+-5 x 10+-5..29+-5: 19*29
    gt[4, 20:30, 5:25] = True                            # the same area (rows 15..34, cols 0..29: 19*29)
    gt[5, 10:12, 10:12] = True
    assert seed_box(gt, 5) == (3, (5, 5, 24, 34))        # first of the two maxima
    assert start_slice(gt) == 3                          # (5 - 2) / 2 + 2 = 3.5 -> 3 (ma2024-box: 4)
    assert margin_box(gt[4], 5) == (15, 0, 34, 29)       # x0 clipped: area 19 * 29, the same


def test_nearest_resize_and_grid_box_on_1024():
    """C L290-293: cv2.resize(INTER_NEAREST) to 1024 (source index floor(i * W / 1024)), box
    +-5 there, clipped to [0, 1024], mapped back to slice pixels."""
    assert nearest_index(32, 1024)[[0, 31, 32, 1023]].tolist() == [0, 0, 1, 31]
    m = square((32, 32), (10, 11), (4, 7))               # row 10, cols 4..6
    # 1024 grid: rows 320..351, cols 128..223; +-5 -> (315, 123, 356, 228); / 32
    assert grid_box(m, 5, 1024) == (315 / 32, 123 / 32, 356 / 32, 228 / 32)
    assert grid_box(m, 5, 0) == (5.0, 0.0, 15.0, 11.0)   # grid=0: +-5 on the slice itself
    edge = square((32, 32), (0, 1), (31, 32))
    assert grid_box(edge, 5, 1024) == (0.0, 987 / 32, 36 / 32, 32.0)  # clipped to 0 and to 1024


def test_walk_up_from_the_start_then_down_each_slice_from_its_neighbours_prediction():
    """C L274-321: start slice with the seed box; above it the box of the slice below's
    prediction, below it the slice above's; an empty prediction gives the seed box again;
    nothing outside z_min..z_max (there is no other stop)."""
    gt = np.zeros((9, 32, 32), bool)
    gt[1:7, 8:12, 8:12] = True
    gt[2, 4:20, 4:20] = True                              # the seed slice: box (0, 0, 24, 24)
    a = square((32, 32), (10, 11), (4, 7))                # on the start slice 3
    b = square((32, 32), (0, 1), (31, 32))                # on slice 4; slice 5 predicts nothing
    model = SliceScript({3: a, 4: b, 0: np.ones((32, 32), bool), 8: np.ones((32, 32), bool)})
    out = run(model, gt)
    seed = (0.0, 0.0, 24.0, 24.0)
    assert model.calls[0] == ("start_object", [1, 2, 3, 4, 5, 6])
    assert [c[1] for c in model.calls[1:]] == [3, 4, 5, 6, 2, 1]   # (6 - 1) / 2 + 1 = 3.5 -> 3
    boxes = {c[1]: c[2] for c in model.calls[1:]}
    assert boxes[3] == seed
    assert boxes[4] == grid_box(a, 5, 1024) == (315 / 32, 123 / 32, 356 / 32, 228 / 32)
    assert boxes[5] == grid_box(b, 5, 1024)
    assert boxes[6] == seed                               # slice 5 predicted nothing
    assert boxes[2] == grid_box(a, 5, 1024)               # down from the start slice's prediction
    assert boxes[1] == seed                               # slice 2 predicted nothing
    (o,) = out
    assert (o.round, o.annotated_slices, o.clicks) == (1, 6, 0)
    assert o.prediction.any(axis=(1, 2)).nonzero()[0].tolist() == [3, 4]
    assert [p.to_record()["z"] for p in o.prompts] == [3, 4, 5, 6, 2, 1]
    assert o.prompts[1].to_record() == {"kind": "box", "z": 4, "y0": 9, "x0": 3, "y1": 12, "x1": 8}  # outwards


def test_full_visits_gap_slices_fg_only_skips_them():
    """C walks every slice of z_min..z_max, truth or not; in fg-only only the setting's frames,
    and the start slice moves to the first frame above it."""
    gt = np.zeros((8, 16, 16), bool)
    gt[[1, 2, 5], 4:8, 4:8] = True                         # slices 3, 4 empty; start (5-1)/2+1 = 3
    full = SliceScript()
    run(full, gt)
    assert [c[1] for c in full.calls[1:]] == [3, 4, 5, 2, 1]
    fg = SliceScript()
    run(fg, gt, frames=np.array([1, 2, 5]))
    assert fg.calls[0] == ("start_object", [1, 2, 5])
    assert [c[1] for c in fg.calls[1:]] == [5, 2, 1]


def test_parameters_and_what_the_protocol_needs():
    p = get_protocol("ma2024-flare22")
    assert (p.params.margin, p.params.grid) == (5, 1024)
    assert p.requires == ("predict_slice", "propagate")
    assert p.native_metrics == ("ma_dsc", "ma_nsd")
    with pytest.raises(Exception, match="margin"):
        get_protocol("ma2024-flare22", margin="-1")


def test_end_to_end_with_classical_on_a_synthetic_case(synthetic_manifest, tmp_path):
    out = tmp_path / "run"
    args = manifest_run_args(synthetic_manifest, out, "--protocol", "ma2024-flare22", "--limit", "1",
                             model="classical")
    assert main(args) == 0
    with open(out / "rounds.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["case"], r["label"]) for r in rows} == {("syn6", "1"), ("syn6", "2")}
    for r in rows:
        assert r["protocol"] == "ma2024-flare22" and r["round"] == "1" and r["clicks"] == "0"
        assert 0.0 <= float(r["ma_dsc"]) <= 1.0 and 0.0 <= float(r["ma_nsd"]) <= 1.0
        assert float(r["ma_dsc"]) == round(float(r["dice"]), 4)   # whole-volume DSC = annosim's here
