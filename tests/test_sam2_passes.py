"""SAM2 ``predict_slice`` (image-mode heads on cached features) and ``propagate_pass`` (one
``propagate_in_video`` call), random-weight Hiera-tiny at image_size 256 on a hand-built volume.

Sources: sam2 1.1.0 ``SAM2ImagePredictor.set_image`` / ``_predict`` (the heads Ma et al.'s
``infer_SAM2_3D_npz.py`` calls with ``multimask_output=False``) and
``SAM2VideoPredictor.propagate_in_video(start_frame_idx, reverse)``
(protocol-sources.md sections 0 and 1).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from test_sam2_model import checkpoint, model  # noqa: E402,F401  (fixtures)

FRAMES = np.arange(1, 7)  # the object's video: slices 1..6 of 8


def disk_volume() -> tuple[np.ndarray, np.ndarray]:
    """(8, 48, 48) float32 HU: a bright disk (r 9) on slices 1..6, fat elsewhere; its (48, 48) mask."""
    yy, xx = np.ogrid[:48, :48]
    d = (yy - 24) ** 2 + (xx - 22) ** 2 <= 81
    vol = np.full((8, 48, 48), -100.0, np.float32)
    vol[1:7][:, d] = 60.0
    return vol, d


@pytest.fixture()
def disk_model(model):  # noqa: F811
    vol, d = disk_volume()
    model.set_volume(vol, (1.0, 1.0, 1.0))
    model.configure_protocol(frame_codec="raw")
    return model, d


def direct_heads(model, z: int, box_xyxy: np.ndarray) -> np.ndarray:
    """sam2's prompt encoder + mask decoder called by hand on the cached features of ``z``."""
    import torch.nn.functional as F

    sam = model.predictor
    with torch.inference_mode():
        _, feats, _, sizes = sam._prepare_backbone_features(model._cache.get(z))
        if sam.directly_add_no_mem_embed:
            feats[-1] = feats[-1] + sam.no_mem_embed
        maps = [f.permute(1, 2, 0).view(1, -1, *s) for f, s in zip(feats, sizes)]
        h, w = model.shape[1:]
        scale = torch.tensor([sam.image_size / w, sam.image_size / h])
        coords = (torch.from_numpy(box_xyxy).reshape(1, 2, 2) * scale).float()
        sparse, dense = sam.sam_prompt_encoder(
            points=(coords, torch.tensor([[2, 3]], dtype=torch.int)), boxes=None, masks=None
        )
        low, _, _, _ = sam.sam_mask_decoder(
            image_embeddings=maps[-1], image_pe=sam.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=False, repeat_image=False, high_res_features=maps[:-1],
        )
        up = F.interpolate(low, (h, w), mode="bilinear", align_corners=False)
    return (up[0, 0] > 0).numpy()


def test_predict_slice_is_the_image_heads_on_the_cached_features(disk_model):
    """Ma A L209-213: SAM2ImagePredictor.predict(box, multimask_output=False), logits > 0; the
    inclusive (y0, x0, y1, x1) box reaches sam2 as (x0, y0, x1, y1)."""
    m, d = disk_model
    m.start_object(FRAMES)
    ys, xs = np.nonzero(d)
    box = (int(ys.min()), int(xs.min()), int(ys.max()), int(xs.max()))
    calls = m.encoder_calls
    got = m.predict_slice(3, box=box)
    assert got.shape == d.shape and got.dtype == bool
    assert m.encoder_calls == calls + 1  # slice 3 encoded once, into the shared cache
    want = direct_heads(m, 3, np.array([box[1], box[0], box[3], box[2]], np.float32))
    assert np.array_equal(got, want)
    assert m.encoder_calls == calls + 1


def test_predict_slice_leaves_the_video_state_bitwise_unchanged(disk_model):
    """predict_slice neither adds prompts nor outputs: propagate() with and without it agree."""
    m, d = disk_model
    m.start_object(FRAMES)
    m.add_mask(3, d)
    ref = m.propagate()
    m.start_object(FRAMES)
    m.add_mask(3, d)
    m.predict_slice(3, box=(10, 10, 30, 30))
    m.predict_slice(5, points=np.array([[24, 22], [2, 2]]), labels=np.array([1, 0]))
    m.predict_slice(0, points=np.array([[24, 22]]), labels=np.array([1]))  # not a frame: allowed
    assert list(m._state["point_inputs_per_obj"][0]) == []
    assert np.array_equal(m.propagate(), ref)


def test_predict_slice_masked_sends_the_last_low_res_logits(disk_model, monkeypatch):
    """RadioActive model/SAM2.py L184-205, L410-431: a re-inferred slice gets its previous
    low-res logits as the prompt encoder's mask input; a mask that is not this model's last
    prediction of the slice goes in as 0/1 resized to the low resolution."""
    import torch.nn.functional as F

    m, d = disk_model
    m.start_object(FRAMES)
    enc = m.predictor.sam_prompt_encoder
    seen = []
    real = enc.forward
    monkeypatch.setattr(enc, "forward", lambda points, boxes, masks: seen.append(masks) or real(points, boxes, masks))
    pts, labs = np.array([[24, 22]]), np.array([1])
    first = m.predict_slice(3, pts, labs)
    low = m._last_low[1][3]
    assert seen[-1] is None and low.shape[-2:] == tuple(enc.mask_input_size)
    m.predict_slice_masked(3, first, pts, labs)
    assert torch.equal(seen[-1].cpu(), low)
    other = np.zeros_like(d)
    other[10:20, 10:20] = True
    m.predict_slice_masked(5, other, pts, labs)
    want = F.interpolate(torch.from_numpy(other.astype(np.float32))[None, None], tuple(enc.mask_input_size),
                         mode="bilinear", align_corners=False)
    assert torch.equal(seen[-1].cpu(), want)
    assert not m._state["point_inputs_per_obj"].get(0)   # one-shot: the video state untouched
    m.release_case()
    assert m._last_low == (None, {})


def test_radioactive_protocol_runs_on_sam2(disk_model):
    """radioactive-box-interpolation with a random-weight SAM2: one-shot boxes, then refinements
    through predict_slice_masked; rounds and predictions of the right shape."""
    from annosim.protocols.registry import get_protocol

    m, d = disk_model
    gt = np.zeros((8, 48, 48), bool)
    gt[1:7] = d
    out = list(get_protocol("radioactive-box-interpolation", refinements=2).run_object(
        m, gt, None, np.random.default_rng(0)))
    assert 1 <= len(out) <= 3 and all(o.prediction.shape == gt.shape for o in out)
    assert out[0].annotated_slices == 6 and out[0].clicks == 0
