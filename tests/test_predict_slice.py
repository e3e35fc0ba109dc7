"""One-shot 2D prediction (issue 14 model API): ``predict_slice`` leaves the object's prompts alone."""

from __future__ import annotations

import numpy as np

from test_classical import cylinder, disc, model_on, volume_from


def test_classical_predict_slice_box_covers_the_bright_disk():
    """Box (inclusive extents) tight around a disk: the one-shot mask is the disk exactly."""
    masks, d = cylinder(2, 8)
    m = model_on(volume_from(masks))
    ys, xs = np.nonzero(d)
    out = m.predict_slice(4, box=(ys.min(), xs.min(), ys.max(), xs.max()))
    assert out.dtype == bool and out.shape == d.shape
    assert np.array_equal(out, d)


def test_classical_predict_slice_click_gives_the_clicked_tissue():
    masks, d = cylinder(2, 8)
    m = model_on(volume_from(masks))
    assert np.array_equal(m.predict_slice(4, points=np.array([[20, 20]]), labels=np.array([1])), d)


def test_classical_predict_slice_leaves_prompts_and_track_unchanged():
    """A prompted, propagated object: predict_slice (on a prompted and an unprompted slice)
    changes neither propagate() nor the next add_clicks result."""
    masks, d = cylinder(2, 8)
    m = model_on(volume_from(masks))
    m.add_clicks(4, np.array([[20, 20]]), np.array([1]))
    before = m.propagate()
    slices_before = {z: (st.base.copy(), list(st.points)) for z, st in m._slices.items()}
    far = disc(d.shape, 3, 3, 2)
    ys, xs = np.nonzero(far)
    m.predict_slice(4, box=(ys.min(), xs.min(), ys.max(), xs.max()))
    m.predict_slice(6, points=np.array([[20, 20], [3, 3]]), labels=np.array([1, 0]))
    assert set(m._slices) == set(slices_before)
    for z, (base, pts) in slices_before.items():
        assert np.array_equal(m._slices[z].base, base) and m._slices[z].points == pts
    assert np.array_equal(m.propagate(), before)
    assert np.array_equal(m._pred, before)
