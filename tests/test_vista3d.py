"""VISTA3D adapter: grid mapping, label map, checkpoint loading, prompt conversion checked on the
network's inputs, and he2024 end to end in the three modes (random weights, reduced patch)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("monai")

from annosim.errors import ConfigError, InputError  # noqa: E402
from annosim.models.native3d_grid import RASGrid, resampled_size  # noqa: E402
from annosim.models.vista3d_model import (  # noqa: E402
    HU_WINDOW,
    VISTA3DModel,
    name_key,
    parse_label_map,
)
from annosim.models.vista3d_weights import load_vista3d  # noqa: E402

SPLEEN = 1  # totalseg-abdomen label value


class NotWeights:
    """An arbitrary object: weights_only loading must refuse a checkpoint holding it."""


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Small 3D convolutions run ~10x faster on one thread on a shared 2-core runner."""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight VISTA3D (encoder width 8) saved as a plain state dict, as the bundle's."""
    from monai.networks.nets import vista3d132

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vista3d") / "model.pt"
    torch.save(vista3d132(encoder_embed_dim=8).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def case(shared_data: Path):
    """totalseg-abdomen cropped around the spleen: (30, 64, 64) voxels of 3 mm."""
    from annosim.data.layouts import open_dataset

    folder = shared_data / "totalseg-abdomen"
    full = open_dataset(f"{folder / 'ct.nii.gz'} {folder / 'seg.nii.gz'}").cases[0].load()
    crop = (slice(None), slice(32, 96), slice(58, 122))
    return dataclasses.replace(full, image=full.image[crop].copy(), label=full.label[crop].copy())


def make_model(checkpoint: Path, **kw) -> VISTA3DModel:
    kw = {"patch_size": 32, "target_spacing": "none", "device": "cpu", **kw}
    return VISTA3DModel(checkpoint=str(checkpoint), **kw)


class CallRecorder:
    """Forward pre-hook recording the keyword inputs of every network call."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.calls: list[dict] = []
        self.handle = net.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        rec = {k: v for k, v in kwargs.items() if k != "transpose"}
        rec["input_images"] = (args[0] if args else kwargs["input_images"]).detach().clone()
        if len(args) > 1:  # sliding_window_inference passes patch coordinates positionally
            rec["patch_coords"] = args[1]
        self.calls.append(rec)


# -- grid ------------------------------------------------------------------------------------------
def test_ras_grid_maps_voxels_and_points_consistently():
    vol = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)  # (Z, Y, X)
    grid = RASGrid((2, 3, 4), (2.0, 1.0, 1.0))
    ras = grid.to_ras(vol)
    assert ras.shape == (4, 3, 2)
    # (z, y, x) = (1, 0, 3) -> (X-1-x, Y-1-y, z) = (0, 2, 1)
    assert grid.points_to_net(np.array([[1, 0, 3]])).tolist() == [[0, 2, 1]]
    assert ras[0, 2, 1] == vol[1, 0, 3]
    np.testing.assert_array_equal(grid.from_ras(ras), vol)
    net = grid.volume_to_net(vol)
    assert tuple(net.shape) == (1, 1, 4, 3, 2)
    np.testing.assert_array_equal(grid.net_to_volume(net[0, 0]).numpy(), vol)


def test_ras_grid_resampling_sizes_and_point_scaling():
    assert resampled_size(30, 3.0, 1.5) == 60
    assert resampled_size(5, 1.0, None) == 5
    grid = RASGrid((30, 101, 122), (3.0, 3.0, 3.0), target_spacing=1.5)
    assert grid.net_shape == (244, 202, 60)
    # x = 100 -> RAS i = 21 -> 21 * 243 / 121 = 42.17 -> 42; y = 0 -> j = 100 -> 201; z = 29 -> 59
    assert grid.points_to_net(np.array([[29, 0, 100]])).tolist() == [[42, 201, 59]]
    # trilinear resampling on corner-aligned grids keeps a linear ramp: there and back is exact
    z, y, x = np.meshgrid(np.arange(30), np.arange(101), np.arange(122), indexing="ij")
    vol = (3.0 * z - 2.0 * y + 0.5 * x).astype(np.float32)
    net = grid.volume_to_net(vol)
    assert tuple(net.shape) == (1, 1, 244, 202, 60)
    assert net[0, 0, 0, 0, 0].item() == vol[0, 100, 121]  # RAS corner (0, 0, 0) = (z 0, y 100, x 121)
    back = grid.net_to_volume(net[0, 0]).numpy()
    np.testing.assert_allclose(back, vol, atol=1e-3)


# -- label map -------------------------------------------------------------------------------------
def test_label_map_defaults_names_and_overrides(tmp_path: Path):
    assert name_key("kidney_right") == name_key("Right Kidney")
    m = parse_label_map(None)
    assert m[name_key("spleen")] == 3 and m[name_key("liver")] == 1
    assert m[name_key("right kidney")] == 5 and m[name_key("kidney_left")] == 14
    m = parse_label_map("spleen=99, my organ=7")
    assert m[name_key("spleen")] == 99 and m[name_key("organ my")] == 7 and m[name_key("liver")] == 1
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"tumour": 26}))
    assert parse_label_map(str(path))[name_key("tumour")] == 26
    with pytest.raises(ConfigError, match="name=class_id"):
        parse_label_map("spleen")
    with pytest.raises(ConfigError, match="integer"):
        parse_label_map({"spleen": "three"})


# -- checkpoints -----------------------------------------------------------------------------------
def test_checkpoint_loads_plain_wrapped_and_prefixed(checkpoint: Path, tmp_path: Path):
    state = torch.load(checkpoint, weights_only=True)
    net = load_vista3d(checkpoint)
    key = "image_encoder.encoder.conv_init.weight"
    assert net.image_encoder.encoder.conv_init.weight.shape[0] == 8
    torch.testing.assert_close(net.state_dict()[key], state[key])
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, wrapped)
    torch.testing.assert_close(load_vista3d(wrapped).state_dict()[key], state[key])


def test_checkpoint_errors_name_the_file(tmp_path: Path, checkpoint: Path):
    with pytest.raises(InputError, match="not found"):
        load_vista3d(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(3)}, other)
    with pytest.raises(InputError, match="not a VISTA3D state dict"):
        load_vista3d(other)
    partial = tmp_path / "partial.pt"
    state = torch.load(checkpoint, weights_only=True)
    torch.save({k: v for k, v in state.items() if not k.startswith("class_head")}, partial)
    with pytest.raises(InputError, match="lacks"):
        load_vista3d(partial)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"obj": NotWeights()}, unsafe)  # unpickling it would import and build a class
    with pytest.raises(InputError, match="not a loadable checkpoint .*weights_only=True"):
        load_vista3d(unsafe)


def test_without_checkpoint_offline_error_says_how(monkeypatch, tmp_path: Path):
    import monai.bundle

    def offline(**kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(monai.bundle, "download", offline)
    monkeypatch.setenv("ANNOSIM_CACHE", str(tmp_path))
    with pytest.raises(ConfigError) as err:
        VISTA3DModel(device="cpu")
    msg = str(err.value)
    assert "\n" not in msg and "--checkpoint PATH" in msg and "name resolution" in msg


def test_bad_mode_and_patch_size(checkpoint: Path):
    with pytest.raises(ConfigError, match="mode"):
        make_model(checkpoint, mode="box")
    with pytest.raises(ConfigError, match="multiples of 16"):
        make_model(checkpoint, patch_size="30")


# -- prompt conversion -----------------------------------------------------------------------------
def test_click_reaches_network_at_the_right_voxel(checkpoint: Path, case):
    model = make_model(checkpoint)
    rec = CallRecorder(model.network)
    model.set_volume(case.image, case.spacing)
    model.set_target(SPLEEN, "spleen")
    model.start_object()
    z, y, x = 12, 20, 45
    out = model.add_clicks(z, np.array([[y, x]]), np.array([1]))
    assert out.shape == (64, 64) and out.dtype == bool
    assert len(rec.calls) == 1  # one window, centred on the click
    call = rec.calls[0]
    # RAS (X-1-x, Y-1-y, z) = (18, 43, 12); the 30 slices are padded by 1 on each side to 32
    assert call["point_coords"].tolist() == [[[18.0, 43.0, 13.0]]]
    assert call["point_labels"].tolist() == [[1]]
    window = call["patch_coords"][0][2:]
    local = [int(c) - s.start for c, s in zip(call["point_coords"][0, 0], window)]
    lo, hi = HU_WINDOW
    expected = np.clip((case.image[z, y, x] - lo) / (hi - lo), 0, 1)
    assert call["input_images"].shape == (1, 1, 32, 32, 32)
    assert call["input_images"][0, 0, local[0], local[1], local[2]].item() == pytest.approx(expected, abs=1e-6)
    # a negative click: label 0, appended after the first; only the new click opens a window
    model.add_clicks(z, np.array([[30, 10]]), np.array([0]))
    assert len(rec.calls) == 2
    assert rec.calls[1]["point_coords"].tolist() == [[[18.0, 43.0, 13.0], [53.0, 33.0, 13.0]]]
    assert rec.calls[1]["point_labels"].tolist() == [[1, 0]]
    assert rec.calls[1]["class_vector"] is None  # point mode: no class head
    rec.handle.remove()


def test_replace_drops_earlier_clicks_on_that_slice(checkpoint: Path, case):
    model = make_model(checkpoint)
    rec = CallRecorder(model.network)
    model.set_volume(case.image, case.spacing)
    model.start_object()
    model.add_clicks(3, np.array([[20, 45]]), np.array([1]))
    model.add_clicks(12, np.array([[20, 45]]), np.array([1]))
    model.add_clicks(12, np.array([[30, 10]]), np.array([0]), replace=True)
    last = rec.calls[-2:]  # replace reruns both remaining clicks from scratch
    assert [c["point_coords"].tolist() for c in last] == [[[[18.0, 43.0, 4.0], [53.0, 33.0, 13.0]]]] * 2
    assert [c["point_labels"].tolist() for c in last] == [[[1, 0]]] * 2
    rec.handle.remove()


def test_frames_outside_are_empty(checkpoint: Path, case):
    model = make_model(checkpoint, mode="auto")
    model.set_volume(case.image, case.spacing)
    model.set_target(SPLEEN, "spleen")
    model.start_object(np.arange(10, 20))
    pred = model.propagate()
    assert pred.shape == case.image.shape
    assert not pred[:10].any() and not pred[20:].any()


def test_auto_mode_needs_a_class(checkpoint: Path, case):
    model = make_model(checkpoint, mode="auto")
    model.set_volume(case.image, case.spacing)
    model.set_target(98, "rib_left_7")
    with pytest.raises(ConfigError, match="label_map"):
        model.start_object()


# -- end to end --------------------------------------------------------------------------------------
def _check_rows(rows, case, settings=("full", "fg-only")):
    assert {r["setting"] for r in rows} == set(settings)
    for setting in settings:
        rs = [r for r in rows if r["setting"] == setting]
        assert [r["round"] for r in rs] == list(range(1, len(rs) + 1))
        assert all(r["case"] == case.case_id and r["label"] == SPLEEN and r["label_name"] == "spleen" for r in rs)
        assert all(0.0 <= r["dice"] <= 1.0 and r["model_seconds"] > 0 for r in rs)
        assert all(r["gt_slices"] == 30 for r in rs)  # the spleen spans all 30 slices


def test_he2024_point_mode_end_to_end(checkpoint: Path, case):
    from annosim.engine.case import evaluate_case

    model = make_model(checkpoint)
    rec = CallRecorder(model.network)
    seen = []
    res = evaluate_case(
        case, model, "he2024", settings=("full", "fg-only"), labels=[SPLEEN], seed=0,
        on_round=lambda label, setting, outcome: seen.append((setting, outcome.prediction.shape, outcome.clicks)),
    )
    assert res.errors == []
    _check_rows(res.rows, case)
    assert all(shape == case.image.shape for _, shape, _ in seen)
    full = [r for r in res.rows if r["setting"] == "full"]
    assert full[0]["clicks"] >= 1 and full[0]["annotated_slices"] == 1
    assert all(b["clicks"] > a["clicks"] for a, b in zip(full, full[1:]))
    # every click of prompts.jsonl reached the network, converted to RAS (X-1-x, Y-1-y, z+1 pad)
    clicks = [(p["z"], p["y"], p["x"]) for p in res.prompts if p["setting"] == "full" and p["kind"] == "point"]
    sent = {tuple(c) for call in rec.calls for c in call["point_coords"][0].int().tolist()}
    assert {(63 - x, 63 - y, z + 1) for z, y, x in clicks} <= sent
    rec.handle.remove()


def test_he2024_auto_and_auto_point_modes(checkpoint: Path, case):
    from annosim.engine.case import evaluate_case

    auto = make_model(checkpoint, mode="auto")
    assert auto.prompt_free
    rec = CallRecorder(auto.network)
    res = evaluate_case(case, auto, "he2024", settings=("full", "fg-only"), labels=[SPLEEN], seed=0)
    assert res.errors == [] and res.prompts == []
    _check_rows(res.rows, case)
    assert [(r["round"], r["clicks"], r["annotated_slices"]) for r in res.rows] == [(1, 0, 0), (1, 0, 0)]
    # the class head ran once per case (cached across settings), prompted with spleen = class 3
    n_windows = len(rec.calls)
    assert n_windows == 9  # 3 x 3 x 1 windows of 32 over 64 x 64 x 30 at overlap 0.25
    assert all(c["class_vector"].tolist() == [[3]] and c["point_coords"] is None for c in rec.calls)
    rec.handle.remove()

    both = make_model(checkpoint, mode="auto+point")
    assert not both.prompt_free
    rec = CallRecorder(both.network)
    res = evaluate_case(case, both, "he2024", settings=("full",), labels=[SPLEEN], seed=0)
    assert res.errors == []
    _check_rows(res.rows, case, settings=("full",))
    assert res.rows[0]["clicks"] >= 1
    point_calls = [c for c in rec.calls if c.get("point_coords") is not None]
    assert point_calls and all(c["class_vector"].tolist() == [[3]] for c in point_calls)
    assert len(rec.calls) - len(point_calls) == 9  # the automatic start, computed once
    rec.handle.remove()
