"""Dong et al. 2024's frame modes and multi-component prompt modes
(mazurowski-lab/segment-anything2-medical-evaluation @1d72cc1, prompt_funcs.py = P,
eval_sam2_3d.py = E3, eval_sam2_2d.py = E2; protocol-sources.md section 3) on hand-built masks."""

from __future__ import annotations

import numpy as np
import pytest

from annosim.errors import ConfigError
from annosim.protocols.dong2024 import dong_frames, spread_frames
from annosim.protocols.registry import get_protocol
from test_protocol_dong_zhu import Recorder, run


def _slices(z_count, occupied, areas=None):
    g = np.zeros((z_count, 9, 9), bool)
    for i, z in enumerate(occupied):
        side = 2 if areas is None else areas[i]
        g[z, 1:1 + side, 1:1 + side] = True
    return g


def test_frame_first_and_largest_first_maximum():
    """P L34-40 (mode 3: count > running max, so the first largest slice) and L47-51 (mode 1)."""
    g = _slices(8, [2, 3, 4, 6], areas=[2, 4, 3, 4])
    assert dong_frames(g, "first") == [2]
    assert dong_frames(g, "largest") == [3]              # slices 3 and 6 tie at 16 px
    assert dong_frames(g, "median") == [4]               # occupied[4 // 2]


def test_frame_spread_step_and_trim():
    """P L57-65, frame_num 3: step = max(1, n // 4) over the occupied slices; more than 4
    picked -> elements 1..3, else the first 3."""
    occupied = [1, 2, 3, 5, 6, 7, 8, 9, 10]               # n = 9: step 2 -> 1, 3, 6, 8, 10 -> 3, 6, 8
    assert dong_frames(_slices(12, occupied), "spread") == [3, 6, 8]
    assert spread_frames(np.arange(12)) == [0, 3, 6]      # step 3 -> 0, 3, 6, 9: 4 picked, first 3
    assert spread_frames(np.array([4, 7])) == [4, 7]      # fewer slices than frames: all of them
    assert spread_frames(np.array([5])) == [5]


def test_spread_prompts_every_frame_and_propagates_forward_from_frame_0():
    """E3 L112-127, L157: every selected frame gets its prompt, then one forward pass from 0."""
    g = _slices(12, [1, 2, 3, 5, 6, 7, 8, 9, 10])
    m = Recorder()
    (out,) = run(get_protocol("dong2024", prompt="box", frame="spread"), m, g)
    assert m.calls == [("start_object",), ("add_box", 3, (1, 1, 2, 2)), ("add_box", 6, (1, 1, 2, 2)),
                       ("add_box", 8, (1, 1, 2, 2)), ("propagate_pass", 0, False)]
    assert out.annotated_slices == 3 and out.clicks == 0
    assert out.scored_frames.tolist() == [2.0] * 12


def test_spread_bidirectional_reverse_from_the_second_frame_forward_after_the_last():
    """E3 L134-155: with frame mode 4 the reverse pass starts at the second selected frame; after
    reset_state every prompt again and the forward pass starts after the last one (pidx left at
    the last by the re-adding loop): frames 7 and 8 are never yielded, so never scored; the list
    doubled twice counts 0..6 four times and 9.. twice."""
    g = _slices(12, [1, 2, 3, 5, 6, 7, 8, 9, 10])
    m = Recorder()
    (out,) = run(get_protocol("dong2024", prompt="box", frame="spread", bidirectional="true"), m, g)
    boxes = [("add_box", z, (1, 1, 2, 2)) for z in (3, 6, 8)]
    assert m.calls == [("start_object",), *boxes, ("propagate_pass", 6, True),
                       ("start_object",), *boxes, ("propagate_pass", 8, False)]
    assert np.flatnonzero(out.prediction.any(axis=(1, 2))).tolist() == [0, 1, 2, 3, 4, 5, 6, 9, 10, 11]
    assert out.scored_frames.tolist() == [4.0] * 7 + [0.0, 0.0] + [2.0] * 3


def _three_components():
    """Slice with components of 9 px (3x3, depth 2 at its centre), two of 4 px (equal: the
    higher label first) and a stray pixel."""
    sl = np.zeros((12, 12), bool)
    sl[0:2, 0:2] = True            # label 1: 4 px
    sl[4:7, 4:7] = True            # label 2: 9 px, deepest pixel (5, 5)
    sl[9:11, 0:2] = True           # label 3: 4 px
    sl[11, 11] = True              # label 4: 1 px
    return sl


def test_points_one_deepest_pixel_on_each_of_the_three_largest_components():
    """P L84-89, L146-208 (prompt mode 2, 'largest_3'): sorted by (area, label) reversed, one
    point each, sent together as positive clicks."""
    g = np.zeros((3, 12, 12), bool)
    g[1] = _three_components()
    m = Recorder()
    (out,) = run(get_protocol("dong2024", prompt="points"), m, g)
    (name, z, pts, labels), = [c for c in m.calls if c[0] == "add_clicks"]
    assert z == 1 and labels == [1, 1, 1]
    assert pts[0] == [5, 5]                              # the 9-px square's centre
    assert pts[1] in ([9, 0], [9, 1], [10, 0], [10, 1])  # label 3 before label 1 (equal areas)
    assert pts[2] in ([0, 0], [0, 1], [1, 0], [1, 1])
    assert out.clicks == 3 and out.annotated_slices == 1


def test_boxes_are_2d_only_and_their_predictions_are_or_ed():
    """P L93-95, L222-278 (mode 4: boxes of the up to 3 largest components, padded by repeating
    the last); E2 L150-160: one prediction per box, summed (union). E3 has no mode-4 branch."""
    g = np.zeros((3, 12, 12), bool)
    g[1] = _three_components()

    class Box2D(Recorder):
        def predict_slice(self, z, points=None, labels=None, box=None):
            self.calls.append(("predict_slice", z, box))
            out = np.zeros(self.shape[1:], bool)
            out[box[0], box[1]] = True                  # marks the box's first corner
            return out

    m = Box2D()
    (out,) = run(get_protocol("dong2024-2d", prompt="boxes"), m, g)
    assert m.calls[1:] == [("predict_slice", 1, (4, 4, 6, 6)), ("predict_slice", 1, (9, 0, 10, 1)),
                           ("predict_slice", 1, (0, 0, 1, 1))]
    assert np.argwhere(out.prediction[1]).tolist() == [[0, 0], [4, 4], [9, 0]]
    assert [p.to_record()["y0"] for p in out.prompts] == [4, 9, 0]
    with pytest.raises(ConfigError, match="eval_sam2_3d.py"):
        get_protocol("dong2024", prompt="boxes")


def _float32_steps(weight, n):
    s = np.float32(0.0)
    for _ in range(n):
        s = np.float32(s + np.float32(weight))
    return s


def test_chamfer_is_cv2s_float32_scan_so_ten_diagonals_lose_the_tie_with_fourteen_axial_steps():
    """P L192-199: cv2.distanceTransform(DIST_L2, 5) sums its weights in float32 along its scans:
    ten diagonal steps give 13.999998 < 14. In this 33 x 28 block (holes at (2, 5) and (28, 23))
    pixel (18, 13) is 14 axial steps from the left edge and ten diagonal steps from the hole at
    (28, 23): by the exact chamfer length (10 x 1.4 = 14) it ties for the deepest, in cv2's
    float32 it does not; (17, 13) is 14 from the edge either way."""
    from annosim.protocols.dong_rules import chamfer_distance, deepest_candidates

    m = np.ones((33, 28), bool)
    m[2, 5] = m[28, 23] = False
    dt = chamfer_distance(m)
    assert dt.dtype == np.float32
    assert dt[18, 13] == _float32_steps(1.4, 10) == np.float32(13.999998)
    assert dt[17, 13] == dt.max() == 14.0
    cand = deepest_candidates(m).tolist()
    assert [17, 13] in cand and [18, 13] not in cand and len(cand) == 9


def test_chamfer_bit_identical_to_cv2_where_it_is_installed():
    cv2 = pytest.importorskip("cv2")
    from scipy import ndimage

    from annosim.protocols.dong_rules import chamfer_distance

    rng = np.random.default_rng(11)
    for i in range(60):
        shape = tuple(int(v) for v in rng.integers(3, 50, 2))
        m = ndimage.binary_opening(rng.random(shape) > rng.uniform(0.1, 0.6)) if i % 2 else rng.random(shape) > 0.3
        ref = cv2.distanceTransform(np.pad(m.astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
        assert np.array_equal(chamfer_distance(m), ref)
