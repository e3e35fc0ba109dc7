"""Ma et al. 2024's native metrics (bowang-lab/MedSAM branch MedSAM2 @6abb0ad,
metrics/compute_metrics_flare22.py = M, metrics/SurfaceDice.py = S): the DeepMind surfel-area
NSD on hand-built shapes whose surfel areas and distances are known by hand, against MONAI's
surface Dice (``use_subvoxels=True`` agrees, the default border-voxel NSD does not), and the
``ma_dsc`` / ``ma_nsd`` registry entries of ``ma2024-box``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from annosim.metrics.functions import nsd as border_voxel_nsd
from annosim.metrics.registry import MetricSet
from annosim.metrics.surfel import surfel_area_table, surfel_nsd

SQ3, SQ2 = math.sqrt(3.0), math.sqrt(2.0)


def voxels(shape, *points):
    m = np.zeros(shape, bool)
    for p in points:
        m[p] = True
    return m


def test_surfel_areas_of_hand_computed_codes():
    """S L313-327: a code's area is its marching-cubes triangles' area in mm (bit 7 - (4a+2b+c)
    for the voxel at offset (a, b, c))."""
    t = surfel_area_table((2.0, 3.0, 5.0))
    assert t[0] == t[255] == 0.0
    assert t[15] == pytest.approx(3.0 * 5.0, abs=1e-12)           # the high half in axis 0: a square
    assert t[1] == pytest.approx(math.sqrt((3 * 5) ** 2 + (2 * 5) ** 2 + (2 * 3) ** 2) / 8, abs=1e-12)  # 19/8
    assert t[3] == pytest.approx(5.0 * 0.5 * math.sqrt(2.0 ** 2 + 3.0 ** 2), abs=1e-12)  # 2 along axis 2
    codes = np.arange(256)
    assert np.array_equal(t[codes], t[255 - codes])                # a code and its complement


def test_single_voxels_three_apart_half_the_corners_within_two():
    """S L391-408, L469-478: surfels sit on voxel corners. Two voxels 3 apart along x: each cube's
    4 near corners are 2 from the other's, the 4 far ones 3, so NSD@2 = 0.5 (all 8 corners of a
    single voxel have the same area). Border-voxel NSD (centres 3 apart) says 0."""
    g = voxels((3, 3, 7), (1, 1, 1))
    p = voxels((3, 3, 7), (1, 1, 4))
    assert surfel_nsd(g, p, (1.0, 1.0, 1.0), 2.0) == 0.5
    assert border_voxel_nsd(p, g, (1.0, 1.0, 1.0), 2.0) == 0.0
    near = voxels((3, 3, 7), (1, 1, 3))                             # 2 apart: every corner within 2
    assert surfel_nsd(g, near, (1.0, 1.0, 1.0), 2.0) == 1.0


def test_spacing_scales_the_distances():
    """S L393, L398: the EDT is in mm. One voxel apart along z with sz = 3 mm: near corners 0,
    far corners 3 mm from the other surface, so NSD@2 mm = 0.5; with 1 mm slices it is 1."""
    g = voxels((4, 3, 3), (1, 1, 1))
    p = voxels((4, 3, 3), (2, 1, 1))
    assert surfel_nsd(g, p, (3.0, 1.0, 1.0), 2.0) == 0.5
    assert surfel_nsd(g, p, (1.0, 1.0, 1.0), 2.0) == 1.0


def test_areas_weight_the_surfels():
    """A one-voxel truth inside a two-voxel prediction, tolerance 0.5: the truth's 8 corners
    (sqrt3/8 each) coincide with prediction corners; of the prediction's 8 end corners
    (sqrt3/8) and 4 middle ones (two voxels: sqrt2/2 each) only the 4 far end corners are 1 away."""
    g = voxels((3, 3, 4), (1, 1, 1))
    p = voxels((3, 3, 4), (1, 1, 1), (1, 1, 2))
    want = (SQ3 + SQ3 / 2 + 2 * SQ2) / (SQ3 + SQ3 + 2 * SQ2)
    assert surfel_nsd(g, p, (1.0, 1.0, 1.0), 0.5) == pytest.approx(want, abs=1e-12)


def test_empty_masks():
    """S: an empty mask has no surfels (its distance map is inf), so NSD is 0; both empty 0/0."""
    g = voxels((3, 3, 3), (1, 1, 1))
    assert surfel_nsd(g, np.zeros_like(g), (1.0, 1.0, 1.0), 2.0) == 0.0
    assert math.isnan(surfel_nsd(np.zeros_like(g), np.zeros_like(g), (1.0, 1.0, 1.0), 2.0))


def test_agrees_with_monai_subvoxel_surface_dice_and_not_with_its_default():
    """MONAI's ``use_subvoxels=True`` carries the DeepMind table (float32): same areas for all
    256 codes and the same NSD; its default (border voxels) is annosim's common NSD instead."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("monai")
    from monai.metrics import compute_surface_dice
    from monai.metrics.utils import create_table_neighbour_code_to_surface_area

    for sp in ((1.0, 1.0, 1.0), (2.0, 3.0, 5.0), (0.7, 1.3, 2.9)):
        monai_table = create_table_neighbour_code_to_surface_area(sp)[0].numpy().astype(np.float64)
        np.testing.assert_allclose(surfel_area_table(sp), monai_table, rtol=1e-6, atol=1e-6)
    from scipy import ndimage
    rng = np.random.default_rng(2)
    g = ndimage.binary_opening(rng.random((9, 10, 11)) > 0.5)
    p = np.roll(g, 1, axis=2) | (rng.random(g.shape) > 0.95)
    sp = (2.5, 0.8, 0.8)

    def monai(sub):
        t = [torch.as_tensor(m[None, None].astype(np.float32)) for m in (p, g)]
        return compute_surface_dice(*t, [2.0], include_background=True, spacing=sp, use_subvoxels=sub).item()

    ours = surfel_nsd(g, p, sp, 2.0)
    assert ours == pytest.approx(monai(True), abs=1e-6)
    assert border_voxel_nsd(p, g, sp, 2.0) == pytest.approx(monai(False), abs=1e-6)
    assert abs(ours - monai(False)) > 0.05                          # the two definitions differ here


def test_ma_native_metrics_as_the_metric_script_scores():
    """M L27-63, L131-133: both empty -> 1, truth empty but prediction not -> 0, else DSC and
    surfel NSD at 2 mm (not --nsd-tolerance) with the case's spacing, rounded to 4 decimals."""
    metrics = MetricSet.with_user(native=["ma_dsc", "ma_nsd"])
    assert metrics.native_names == ["ma_dsc", "ma_nsd"]
    on = ("ma_dsc", "ma_nsd")
    g = voxels((3, 3, 7), (1, 1, 1), (1, 1, 2))
    p = voxels((3, 3, 7), (1, 1, 2), (1, 1, 5))                     # DSC 2/4; 1 voxel 3 from the truth
    row = metrics.compute(p, g, (1.0, 1.0, 1.0), nsd_tolerance=0.5, native=on)
    assert row["ma_dsc"] == 0.5
    assert row["ma_nsd"] == round(surfel_nsd(g, p, (1.0, 1.0, 1.0), 2.0), 4) != round(row["nsd"], 4)
    p3 = voxels((3, 3, 7), (1, 1, 1), (1, 1, 2), (1, 1, 3))
    assert metrics.compute(p3, g, (1.0, 1.0, 1.0), native=on)["ma_dsc"] == 0.8
    one = voxels((3, 3, 7), (1, 1, 1))
    assert metrics.compute(one, g, (1.0, 1.0, 1.0), native=on)["ma_dsc"] == 0.6667  # 2/3, rounded
    empty = np.zeros_like(g)
    assert [metrics.compute(empty, empty, (1.0,) * 3, native=on)[k] for k in on] == [1.0, 1.0]
    assert [metrics.compute(p, empty, (1.0,) * 3, native=on)[k] for k in on] == [0.0, 0.0]
    assert [metrics.compute(empty, g, (1.0,) * 3, native=on)[k] for k in on] == [0.0, 0.0]
    assert all(math.isnan(metrics.compute(p, g, (1.0,) * 3)[k]) for k in on)  # other protocols' rows


def test_ma2024_box_lists_its_native_metrics():
    from annosim.commands.protocols import protocol_table
    from annosim.protocols.registry import get_protocol

    proto = get_protocol("ma2024-box")
    assert proto.native_metrics == ("ma_dsc", "ma_nsd") and proto.native_headline == "ma_dsc"
    row = next(r for r in protocol_table() if r["name"] == "ma2024-box")
    assert row["native_metrics"] == ["ma_dsc", "ma_nsd"]


def test_cvpr25_and_sammed3d_nsd_are_the_surfel_nsd_of_their_sources():
    """CVPR25_iter_eval.py with SurfaceDice.py S L280-478 (2 mm) and SAM-Med3D utils/metric_utils.py
    (``compute_surface_dice_at_tolerance(..., 1.0)``): both score DeepMind's surfel-area NSD. Two
    voxels 3 voxels apart: half of each cube's corners lie 2 voxels from the other's, half 3, so
    the surfel NSD is 0.5 where the border-voxel NSD (distance 3 voxels) is 0."""
    g = voxels((3, 3, 6), (1, 1, 1))
    p = voxels((3, 3, 6), (1, 1, 4))
    ms = MetricSet.with_user(native=("cvpr25_nsd", "sammed3d_nsd"))
    at_1mm = ms.compute(p, g, (1.0, 1.0, 1.0), native=("cvpr25_nsd",))
    assert at_1mm["cvpr25_nsd"] == 0.5                       # 2 mm tolerance, 1 mm voxels
    assert border_voxel_nsd(p, g, (1.0, 1.0, 1.0), 2.0) == 0.0
    at_half = ms.compute(p, g, (0.5, 0.5, 0.5), native=("sammed3d_nsd",))
    assert at_half["sammed3d_nsd"] == 0.5                    # 1 mm tolerance, 0.5 mm voxels
    assert border_voxel_nsd(p, g, (0.5, 0.5, 0.5), 1.0) == 0.0
    empty = np.zeros_like(g)
    assert ms.compute(empty, g, (1.0, 1.0, 1.0), native=("cvpr25_nsd",))["cvpr25_nsd"] == 0.0
